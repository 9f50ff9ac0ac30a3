//! Which instruction set a kernel runs on, detected at run time.

use crate::{KernelError, Result};

/// The instruction set of a kernel. [`Isa::best`] picks the fastest this CPU has; every kernel
/// also takes an explicit `Isa` (the `*_with` functions) so tests compare each SIMD path with
/// the portable one bit for bit, and benchmarks compare them side by side.
///
/// ```
/// use modelopt_kernels::Isa;
/// let best = Isa::best();
/// assert!(Isa::available().contains(&best));
/// assert!(Isa::Portable.is_available());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Isa {
    /// Plain Rust, any CPU.
    Portable,
    /// x86-64 AVX2 + FMA + F16C (no VNNI: `vpmaddubsw`/`vpmaddwd`, arranged so nothing saturates).
    Avx2,
    /// x86-64 AVX-512 F/BW with VNNI (`vpdpbusd`).
    Avx512Vnni,
    /// x86-64 AMX-INT8 tiles (`tdpbusd`, Intel Sapphire Rapids and later) for the int8 product
    /// on 16 or more activation rows; AVX-512 VNNI for everything else (GEMV, the block
    /// kernels, row and K tails). Linux only (the tile state needs the kernel's permission).
    Amx,
}

impl Isa {
    /// The fastest instruction set this CPU supports.
    pub fn best() -> Isa {
        if Isa::Amx.is_available() {
            Isa::Amx
        } else if Isa::Avx512Vnni.is_available() {
            Isa::Avx512Vnni
        } else if Isa::Avx2.is_available() {
            Isa::Avx2
        } else {
            Isa::Portable
        }
    }

    /// Every instruction set this CPU supports, portable first.
    pub fn available() -> Vec<Isa> {
        [Isa::Portable, Isa::Avx2, Isa::Avx512Vnni, Isa::Amx]
            .into_iter()
            .filter(|i| i.is_available())
            .collect()
    }

    /// Whether this CPU can run kernels of this instruction set.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Amx => crate::int8::amx::available(),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// `Ok(self)` if available, else [`KernelError::IsaUnavailable`].
    pub(crate) fn checked(self) -> Result<Isa> {
        if self.is_available() {
            Ok(self)
        } else {
            Err(KernelError::IsaUnavailable(self))
        }
    }
}
