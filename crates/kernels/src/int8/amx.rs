//! AMX-INT8 tile kernel (`tdpbusd`) for the int8 product: 16 activation rows x 64 output rows at
//! a time, 64 inputs per step. One `tdpbusd` multiplies a 16 x 64 u8 tile by a 64 x 16 s8 tile
//! (16,384 products, four-byte groups summed into i32 lanes without saturation, as `vpdpbusd`),
//! so the same integer sums come out, exactly, as from the VNNI and portable kernels.
//!
//! The packed panel `[groups][64 rows][4]` is already the tile layout AMX wants for the weights
//! (a tile row is one group of 4 inputs for 16 output rows): the four 16-row slices of a panel
//! are loaded with a row stride of 256 bytes, no repacking.
//!
//! Rust has no stable AMX intrinsics, so the instructions are written with `asm!`; tile
//! registers are never used by compiled code, so they keep their values between the blocks.

use std::arch::asm;
use std::sync::OnceLock;

use super::NR;

/// Whether AMX-INT8 tiles can run here: CPUID (AMX-TILE, AMX-INT8), AVX-512 VNNI (the kernel
/// hands tails to it), and, on Linux, the kernel's permission to use the tile data state
/// (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, asked once for the process). Other
/// systems: not used.
pub(crate) fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
        let (tile, int8) = (leaf7.edx >> 24 & 1 == 1, leaf7.edx >> 25 & 1 == 1);
        tile && int8
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
            && request_tile_state()
    })
}

#[cfg(target_os = "linux")]
fn request_tile_state() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: u64 = 0x1023;
    const XFEATURE_XTILEDATA: u64 = 18;
    let ret: i64;
    // SAFETY: a plain system call; it only changes which register state the process may use.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret == 0
}

#[cfg(not(target_os = "linux"))]
fn request_tile_state() -> bool {
    false
}

/// Rows of activations per call.
pub(super) const MR: usize = 16;
/// Groups (of 4 inputs) per `tdpbusd` step.
pub(super) const GS: usize = 16;

/// The tile configuration: palette 1; tmm0 the activations (16 rows x 64 bytes), tmm1 and tmm2
/// weight slices (16 groups x 64 bytes), tmm4..tmm7 the i32 accumulators (16 x 16).
#[repr(C, align(64))]
struct Config([u8; 64]);

const CONFIG: Config = {
    let mut c = [0u8; 64];
    c[0] = 1;
    let mut t = 0;
    while t < 8 {
        if t != 3 {
            c[16 + 2 * t] = 64; // bytes per row
            c[48 + t] = 16; // rows
        }
        t += 1;
    }
    Config(c)
};

/// `tile[i][0..64] += sum_g x[i][4g..4g+4] . w[g][0..64][4]` for rows `i < 16`, groups
/// `g0..g1` (`g1 - g0` a multiple of 16). `tile` is `[16][64]` i32 rows.
///
/// # Safety
/// [`available`] must be true.
pub(super) unsafe fn tiles(
    x: &[u8],
    stride: usize,
    w: &[i8],
    g0: usize,
    g1: usize,
    tile: &mut [i32],
) {
    assert!((g1 - g0).is_multiple_of(GS) && g0 <= g1);
    assert!((MR - 1) * stride + 4 * g1 <= x.len() && 4 * g1 <= stride);
    assert!(g1 * 4 * NR <= w.len() && MR * NR <= tile.len());
    let (xp, wp, tp) = (x.as_ptr(), w.as_ptr(), tile.as_mut_ptr());
    let row = 4 * NR; // bytes per tile row of the weights and of the accumulators
    // SAFETY: the asserts bound every tile access: activation rows `i < 16` at `i * stride`,
    // bytes `4g .. 4g + 64` with `g + 16 <= g1`; weight rows `g .. g + 16` of 256 bytes;
    // accumulator rows `i < 16` of 64 i32. The configuration is loaded first.
    unsafe {
        asm!("ldtilecfg [{}]", in(reg) CONFIG.0.as_ptr(), options(nostack, readonly));
        asm!("tileloadd tmm4, [{p} + {s}*1]", p = in(reg) tp, s = in(reg) row, options(nostack, readonly));
        asm!("tileloadd tmm5, [{p} + {s}*1]", p = in(reg) tp.add(16), s = in(reg) row, options(nostack, readonly));
        asm!("tileloadd tmm6, [{p} + {s}*1]", p = in(reg) tp.add(32), s = in(reg) row, options(nostack, readonly));
        asm!("tileloadd tmm7, [{p} + {s}*1]", p = in(reg) tp.add(48), s = in(reg) row, options(nostack, readonly));
        let mut g = g0;
        while g < g1 {
            let a = xp.add(4 * g);
            let b = wp.add(g * row);
            asm!("tileloadd tmm0, [{p} + {s}*1]", p = in(reg) a, s = in(reg) stride, options(nostack, readonly));
            asm!("tileloadd tmm1, [{p} + {s}*1]", p = in(reg) b, s = in(reg) row, options(nostack, readonly));
            asm!("tdpbusd tmm4, tmm0, tmm1", options(nostack, nomem));
            asm!("tileloadd tmm2, [{p} + {s}*1]", p = in(reg) b.add(64), s = in(reg) row, options(nostack, readonly));
            asm!("tdpbusd tmm5, tmm0, tmm2", options(nostack, nomem));
            asm!("tileloadd tmm1, [{p} + {s}*1]", p = in(reg) b.add(128), s = in(reg) row, options(nostack, readonly));
            asm!("tdpbusd tmm6, tmm0, tmm1", options(nostack, nomem));
            asm!("tileloadd tmm2, [{p} + {s}*1]", p = in(reg) b.add(192), s = in(reg) row, options(nostack, readonly));
            asm!("tdpbusd tmm7, tmm0, tmm2", options(nostack, nomem));
            g += GS;
        }
        asm!("tilestored [{p} + {s}*1], tmm4", p = in(reg) tp, s = in(reg) row, options(nostack));
        asm!("tilestored [{p} + {s}*1], tmm5", p = in(reg) tp.add(16), s = in(reg) row, options(nostack));
        asm!("tilestored [{p} + {s}*1], tmm6", p = in(reg) tp.add(32), s = in(reg) row, options(nostack));
        asm!("tilestored [{p} + {s}*1], tmm7", p = in(reg) tp.add(48), s = in(reg) row, options(nostack));
        asm!("tilerelease", options(nostack, nomem));
    }
}
