//! llama-quantize's presets (`--type Q4_K_M`, ...) and the type it gives each tensor of a GGUF
//! model under them.
//!
//! Ported from llama.cpp `src/llama-quant.cpp` (the stored copy read for this port is the
//! `tensor_category` version of `llama_model_quantize_impl`; the reference outputs in
//! `crates/cli/tests/data/llama_quantize` are from c392e509): which tensors are quantized at all
//! (`tensor_allows_quantization`), the per-tensor rules of each mixture
//! (`llama_tensor_get_type_impl`), the fallback for rows that the type's block does not divide
//! (`tensor_type_fallback`), the tensor order of the output (the loader's `weights_map`, sorted by
//! `weight_name_comparer` in `llama-model-loader.h`) and the `general.file_type` values
//! (`enum llama_ftype` in `llama.h`). Only the branches reachable from the presets below are
//! ported (the IQ1/IQ2/IQ3 mixtures, MXFP4 and the `--tensor-type` / `--output-tensor-type`
//! overrides are not offered).

use std::cmp::Ordering;

use modelopt_io::{DType, GgufFile, GgufValue};
use modelopt_quantize::ggml::GgmlType;

/// A llama-quantize preset (`LLAMA_FTYPE_MOSTLY_*`).
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q3_K_S,
    Q3_K_M,
    Q3_K_L,
    Q4_K_S,
    Q4_K_M,
    Q5_K_S,
    Q5_K_M,
    Q6_K,
    IQ4_NL,
    IQ4_XS,
}

use Preset as P;

impl Preset {
    /// Every preset, as `llama-quantize` spells it.
    pub const ALL: [(Preset, &'static str); 16] = [
        (P::Q4_0, "Q4_0"),
        (P::Q4_1, "Q4_1"),
        (P::Q5_0, "Q5_0"),
        (P::Q5_1, "Q5_1"),
        (P::Q8_0, "Q8_0"),
        (P::Q2_K, "Q2_K"),
        (P::Q3_K_S, "Q3_K_S"),
        (P::Q3_K_M, "Q3_K_M"),
        (P::Q3_K_L, "Q3_K_L"),
        (P::Q4_K_S, "Q4_K_S"),
        (P::Q4_K_M, "Q4_K_M"),
        (P::Q5_K_S, "Q5_K_S"),
        (P::Q5_K_M, "Q5_K_M"),
        (P::Q6_K, "Q6_K"),
        (P::IQ4_NL, "IQ4_NL"),
        (P::IQ4_XS, "IQ4_XS"),
    ];

    /// The preset named `s`, ignoring case (`striequals` in `tools/quantize/quantize.cpp`).
    pub fn parse(s: &str) -> Option<Preset> {
        Self::ALL
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(s))
            .map(|(p, _)| *p)
    }

    /// The name `llama-quantize` prints.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(p, _)| *p == self)
            .map_or("?", |(_, n)| n)
    }

    /// `general.file_type` of the output (`enum llama_ftype`).
    pub fn file_type(self) -> u32 {
        match self {
            P::Q4_0 => 2,
            P::Q4_1 => 3,
            P::Q8_0 => 7,
            P::Q5_0 => 8,
            P::Q5_1 => 9,
            P::Q2_K => 10,
            P::Q3_K_S => 11,
            P::Q3_K_M => 12,
            P::Q3_K_L => 13,
            P::Q4_K_S => 14,
            P::Q4_K_M => 15,
            P::Q5_K_S => 16,
            P::Q5_K_M => 17,
            P::Q6_K => 18,
            P::IQ4_NL => 25,
            P::IQ4_XS => 30,
        }
    }

    /// The type of most tensors (`llama_ftype_get_default_type`); `None` for a preset whose
    /// type this build cannot write yet.
    pub fn base(self) -> Option<GgmlType> {
        Some(match self {
            P::Q4_0 => GgmlType::Q4_0,
            P::Q4_1 => GgmlType::Q4_1,
            P::Q5_0 => GgmlType::Q5_0,
            P::Q5_1 => GgmlType::Q5_1,
            P::Q8_0 => GgmlType::Q8_0,
            P::Q2_K => GgmlType::Q2_K,
            P::Q3_K_S | P::Q3_K_M | P::Q3_K_L => GgmlType::Q3_K,
            P::Q4_K_S | P::Q4_K_M => GgmlType::Q4_K,
            P::Q5_K_S | P::Q5_K_M => GgmlType::Q5_K,
            P::Q6_K => GgmlType::Q6_K,
            P::IQ4_NL => GgmlType::IQ4_NL,
            P::IQ4_XS => GgmlType::IQ4_XS,
        })
    }
}

/// What the rules need to know of the model (`llama_hparams`), from its GGUF metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// `general.architecture`.
    pub arch: String,
    /// `{arch}.block_count` (`n_layer`).
    pub n_layer: i64,
    /// `n_head / n_head_kv` of the first layer (`llama_hparams::n_gqa`), 0 without kv heads.
    pub n_gqa: i64,
    /// `{arch}.expert_count`, 0 when absent.
    pub n_expert: i64,
    /// llama.cpp's `LLM_TYPE_70B`: a llama with 80 layers and grouped-query attention.
    pub is_70b: bool,
}

impl Model {
    /// Reads the hyper-parameters from `f`'s metadata; `None` unless it names an architecture
    /// (then the file is not a llama.cpp model and no mixture applies).
    pub fn from_gguf(f: &GgufFile) -> Result<Option<Model>, String> {
        let Some(arch) = f.get("general.architecture").and_then(GgufValue::as_str) else {
            return Ok(None);
        };
        // An integer, or the first item of a per-layer array.
        let int = |key: &str| -> Result<Option<i64>, String> {
            let k = format!("{arch}.{key}");
            let v = match f.get(&k) {
                None => return Ok(None),
                Some(GgufValue::Array { items, .. }) => items.first(),
                Some(v) => Some(v),
            };
            v.and_then(GgufValue::as_u64)
                .and_then(|x| i64::try_from(x).ok())
                .map(Some)
                .ok_or_else(|| format!("metadata `{k}` is not a non-negative integer"))
        };
        let n_layer = int("block_count")?
            .ok_or_else(|| format!("metadata `{arch}.block_count` is missing"))?;
        let n_head = int("attention.head_count")?.unwrap_or(0);
        let n_head_kv = int("attention.head_count_kv")?.unwrap_or(n_head);
        let n_expert = int("expert_count")?.unwrap_or(0);
        Ok(Some(Model {
            is_70b: arch == "llama" && n_expert != 8 && n_layer == 80 && n_head != n_head_kv,
            arch: arch.to_string(),
            n_layer,
            n_gqa: if n_head_kv == 0 {
                0
            } else {
                n_head / n_head_kv
            },
            n_expert,
        }))
    }

    fn falcon(&self) -> bool {
        self.arch == "falcon"
    }
}

/// The layer of a `blk.N.` tensor name, -1 otherwise (`sscanf(name, "blk.%d.", ...)`).
fn layer_of(name: &str) -> i64 {
    let Some(rest) = name.strip_prefix("blk.") else {
        return -1;
    };
    let digits = rest
        .char_indices()
        .take_while(|(i, c)| c.is_ascii_digit() || (*i == 0 && (*c == '-' || *c == '+')))
        .count();
    rest[..digits].parse().unwrap_or(-1)
}

/// The output's tensor order: by layer (`blk.N.`; other tensors first), then by name
/// (`weight_name_comparer`). Returns indices into `names`.
pub fn llama_order(names: &[&str]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by(|&a, &b| match layer_of(names[a]).cmp(&layer_of(names[b])) {
        Ordering::Equal => names[a].cmp(names[b]),
        o => o,
    });
    order
}

/// Options of the run that change the rules.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `--pure`: every quantized tensor gets the base type (fallback for rows aside).
    pub pure: bool,
    /// `--imatrix` given (changes a few rules).
    pub has_imatrix: bool,
}

/// One input tensor: name, row-major shape, type.
pub struct TensorMeta<'a> {
    /// Name.
    pub name: &'a str,
    /// Row-major shape.
    pub shape: &'a [usize],
    /// Stored type.
    pub dtype: DType,
}

/// `tensor_allows_quantization`: 2-D or larger weights (`ggml_n_dims`, which ignores outer
/// dimensions of 1) named `*weight`, except norms, position embeddings, expert gates and the
/// small tensors llama.cpp lists by name.
pub fn allows_quantization(t: &TensorMeta<'_>) -> bool {
    let leading_ones = t.shape.iter().take_while(|&&d| d == 1).count();
    let n_dims = (t.shape.len() - leading_ones.min(t.shape.len().saturating_sub(1))).max(1);
    let name = t.name;
    if n_dims < 2 || !name.ends_with("weight") || !t.dtype.is_float() {
        return false;
    }
    const EXCLUDED: [&str; 35] = [
        "_norm.weight",
        "ffn_gate_inp.weight",
        "ffn_gate_tid2eid.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "indexer.k_proj.weight",
        "indexer.q_proj.weight",
        "time_mix_first.weight",
        "time_mix_w0.weight",
        "time_mix_w1.weight",
        "time_mix_w2.weight",
        "time_mix_v0.weight",
        "time_mix_v1.weight",
        "time_mix_v2.weight",
        "time_mix_a0.weight",
        "time_mix_a1.weight",
        "time_mix_a2.weight",
        "time_mix_g1.weight",
        "time_mix_g2.weight",
        "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight",
        "attn_rel_b.weight",
        ".position_embd",
        "sam.pos_embd",
        "sam.neck.",
        "sam.net_",
        ".rel_pos",
        ".patch_embd",
        ".patch_merger",
        "a.rvq.codebook",
        "mm.a.code_embd",
    ];
    // `position_embd.weight` / `token_types.weight`: LLM_TENSOR_POS_EMBD and
    // LLM_TENSOR_TOKEN_TYPES, named alike in every architecture.
    !EXCLUDED.iter().any(|p| name.contains(p))
        && name != "position_embd.weight"
        && name != "token_types.weight"
}

/// `tensor_category`: the broad role of a tensor, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    TokenEmbd,
    AttnQ,
    AttnV,
    AttnK,
    AttnOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Output,
    Other,
}

fn category(name: &str) -> Category {
    use Category as C;
    if name == "output.weight" {
        return C::Output;
    }
    if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
        return C::TokenEmbd;
    }
    // attn_qkv and attn_kv_b count as attention-v (`category_is_attn_v`).
    for (pat, c) in [
        ("attn_qkv.weight", C::AttnV),
        ("attn_kv_b.weight", C::AttnV),
        ("attn_v.weight", C::AttnV),
        ("attn_k.weight", C::AttnK),
        ("attn_q.weight", C::AttnQ),
        ("attn_output.weight", C::AttnOutput),
        ("ffn_up", C::FfnUp),
        ("ffn_gate", C::FfnGate),
        ("ffn_down", C::FfnDown),
    ] {
        if name.contains(pat) {
            return c;
        }
    }
    C::Other
}

/// `use_more_bits`: the first and last eighth of the layers and every third one between.
fn use_more_bits(i: i64, n: i64) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2
}

/// The counters of `quantize_state_impl` that make the rules depend on position.
struct State {
    n_attention_wv: i64,
    i_attention_wv: i64,
    i_ffn_down: i64,
    has_output: bool,
}

/// The type llama-quantize gives each tensor of `tensors` (in the output order, see
/// [`llama_order`]) under `preset`: `Some(type)` for a tensor it quantizes (possibly to the
/// type it already has), `None` for one it copies.
pub fn tensor_types(
    model: &Model,
    preset: Preset,
    opts: Options,
    tensors: &[TensorMeta<'_>],
) -> Result<Vec<Option<GgmlType>>, String> {
    let base = preset
        .base()
        .ok_or_else(|| format!("{} is not available yet in this build", preset.name()))?;
    let mut st = State {
        n_attention_wv: tensors
            .iter()
            .filter(|t| category(t.name) == Category::AttnV)
            .count() as i64,
        i_attention_wv: 0,
        i_ffn_down: 0,
        has_output: tensors.iter().any(|t| t.name == "output.weight"),
    };
    let mut out = Vec::with_capacity(tensors.len());
    for t in tensors {
        if !allows_quantization(t) {
            out.push(None);
            continue;
        }
        let mut ty = base;
        if !opts.pure {
            ty = mixture(model, preset, opts, &mut st, t, ty)?;
        }
        out.push(Some(fallback(t, ty)?));
    }
    Ok(out)
}

/// `llama_tensor_get_type_impl` for the offered presets.
fn mixture(
    model: &Model,
    preset: Preset,
    opts: Options,
    st: &mut State,
    t: &TensorMeta<'_>,
    base: GgmlType,
) -> Result<GgmlType, String> {
    use Category as C;
    use GgmlType as G;
    let cat = category(t.name);
    let ncols = *t.shape.last().unwrap_or(&1); // ok: >= 2 dims
    let mut ty = base;
    // The layer of an ffn tensor: its position among them, or its name for MoE models.
    let layer = |i: i64| -> Result<i64, String> {
        if model.n_expert <= 1 {
            return Ok(i);
        }
        let l = layer_of(t.name);
        if !t.name.starts_with("blk.") {
            return Err(format!(
                "failed to determine the layer of tensor `{}`",
                t.name
            ));
        }
        if l < 0 || l >= model.n_layer {
            return Err(format!(
                "bad layer {l} for tensor `{}`: must be in [0, {})",
                t.name, model.n_layer
            ));
        }
        Ok(l)
    };
    let n = model.n_layer;
    match cat {
        // A model without output.weight shares the token embeddings with the output.
        C::Output | C::TokenEmbd if cat == C::Output || !st.has_output => {
            if model.falcon() || !ncols.is_multiple_of(ty.block_size()) {
                ty = G::Q8_0;
            } else if ty != G::Q8_0 {
                ty = G::Q6_K;
            }
        }
        C::TokenEmbd | C::Output => {}
        C::AttnV => {
            let (i, gqa) = (st.i_attention_wv, model.n_gqa);
            match preset {
                P::Q2_K => ty = if gqa >= 4 { G::Q4_K } else { G::Q3_K },
                P::Q3_K_M => ty = if i < 2 { G::Q5_K } else { G::Q4_K },
                P::Q3_K_L => ty = G::Q5_K,
                P::IQ4_NL | P::IQ4_XS if gqa >= 4 => ty = G::Q5_K,
                P::Q4_K_M | P::Q5_K_M if use_more_bits(i, st.n_attention_wv) => ty = G::Q6_K,
                P::Q4_K_S if i < 4 => ty = G::Q5_K,
                _ => {}
            }
            if model.is_70b && matches!(ty, G::Q3_K | G::Q4_K) {
                // 8 heads share attn_v in the 70B model: more bits cost little.
                ty = G::Q5_K;
            }
            if model.n_expert == 8 {
                ty = G::Q8_0;
            }
            st.i_attention_wv += 1;
        }
        C::AttnK => {
            if model.n_expert == 8 {
                ty = G::Q8_0;
            }
        }
        C::FfnDown => {
            let i = layer(st.i_ffn_down)?;
            let falcon = model.falcon();
            match preset {
                P::Q2_K => ty = G::Q3_K,
                P::Q3_K_M => {
                    ty = if i < n / 16 {
                        G::Q5_K
                    } else if !falcon || use_more_bits(i, n) {
                        G::Q4_K
                    } else {
                        G::Q3_K
                    }
                }
                P::Q3_K_L => ty = if falcon { G::Q4_K } else { G::Q5_K },
                P::Q4_K_M => {
                    if falcon {
                        ty = if i < n / 16 {
                            G::Q6_K
                        } else if use_more_bits(i, n) {
                            G::Q5_K
                        } else {
                            G::Q4_K
                        };
                    } else if use_more_bits(i, n) {
                        ty = G::Q6_K;
                    }
                }
                P::IQ4_NL | P::IQ4_XS if i < n / 8 && !opts.has_imatrix => ty = G::Q5_K,
                P::Q5_K_M if use_more_bits(i, n) => ty = G::Q6_K,
                P::Q4_K_S if !falcon && i < n / 8 => ty = G::Q5_K,
                // Guards the first ffn_down layers, with an imatrix only (so that one can always
                // get the old quantization without one).
                P::Q4_0 if opts.has_imatrix && i < n / 8 => ty = G::Q4_1,
                P::Q5_0 if opts.has_imatrix && i < n / 8 => ty = G::Q5_1,
                _ => {}
            }
            st.i_ffn_down += 1;
        }
        C::AttnOutput => {
            if !model.falcon() {
                if model.n_expert == 8 {
                    if matches!(
                        preset,
                        P::Q2_K
                            | P::Q3_K_S
                            | P::Q3_K_M
                            | P::IQ4_NL
                            | P::Q4_K_S
                            | P::Q4_K_M
                            | P::IQ4_XS
                    ) {
                        ty = G::Q5_K;
                    }
                } else {
                    match preset {
                        P::Q2_K => ty = G::Q3_K,
                        P::Q3_K_M => ty = G::Q4_K,
                        P::Q3_K_L => ty = G::Q5_K,
                        _ => {}
                    }
                }
            } else if preset == P::Q3_K_L {
                ty = G::Q4_K;
            }
        }
        // ffn_gate / ffn_up / attn_q only change under the IQ3 mixtures, not offered here.
        C::AttnQ | C::FfnUp | C::FfnGate | C::Other => {}
    }
    Ok(ty)
}

/// `tensor_type_fallback`: a row the type's block does not divide takes a 32-block type of
/// about the same size, or F16 if even that does not divide it.
fn fallback(t: &TensorMeta<'_>, ty: GgmlType) -> Result<GgmlType, String> {
    use GgmlType as G;
    let ncols = *t.shape.last().unwrap_or(&1);
    if ncols.is_multiple_of(ty.block_size()) {
        return Ok(ty);
    }
    // Most llama.cpp versions send Q2_K / Q3_K / IQ4_XS to IQ4_NL (the latest stored copy sends
    // Q2_K / Q3_K to Q4_0); the reference model's rows never need a fallback.
    let fb = match ty {
        G::Q2_K | G::Q3_K | G::IQ4_XS => G::IQ4_NL,
        G::Q4_K => G::Q5_0,
        G::Q5_K => G::Q5_1,
        G::Q6_K => G::Q8_0,
        _ => {
            return Err(format!(
                "tensor `{}`: no fallback type for {} with rows of {ncols}",
                t.name,
                ty.name()
            ));
        }
    };
    Ok(if ncols.is_multiple_of(fb.block_size()) {
        fb
    } else {
        G::F16
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_ignoring_case() {
        assert_eq!(Preset::parse("q4_k_m"), Some(P::Q4_K_M));
        assert_eq!(Preset::parse("IQ4_xs"), Some(P::IQ4_XS));
        assert_eq!(Preset::parse("q4_k"), None);
        for (p, n) in Preset::ALL {
            assert_eq!(Preset::parse(n), Some(p));
            assert_eq!(p.name(), n);
        }
    }

    #[test]
    fn order_is_by_layer_then_name() {
        let names = [
            "blk.10.a",
            "output.weight",
            "blk.2.z",
            "blk.2.a",
            "token_embd.weight",
            "blk.x",
        ];
        let o: Vec<&str> = llama_order(&names).iter().map(|&i| names[i]).collect();
        assert_eq!(
            o,
            [
                "blk.x",
                "output.weight",
                "token_embd.weight",
                "blk.2.a",
                "blk.2.z",
                "blk.10.a"
            ]
        );
    }

    #[test]
    fn which_tensors_are_quantized() {
        let t = |name, shape: &'static [usize]| TensorMeta {
            name,
            shape,
            dtype: DType::F32,
        };
        assert!(allows_quantization(&t("blk.0.attn_q.weight", &[4, 32])));
        assert!(!allows_quantization(&t("blk.0.attn_norm.weight", &[4, 32])));
        assert!(!allows_quantization(&t("blk.0.attn_q.weight", &[1, 32])));
        assert!(!allows_quantization(&t("blk.0.attn_q.bias", &[4, 32])));
        assert!(!allows_quantization(&t("position_embd.weight", &[4, 32])));
        assert!(!allows_quantization(&t(
            "blk.0.ffn_gate_inp.weight",
            &[4, 32]
        )));
    }

    /// The rules that the 8-layer reference model does not reach: row fallbacks, the 70B and
    /// eight-expert bumps, MoE layers taken from the names.
    #[test]
    fn fallbacks_and_model_specific_rules() {
        let m = Model {
            arch: "llama".into(),
            n_layer: 8,
            n_gqa: 1,
            n_expert: 0,
            is_70b: false,
        };
        let shape_a: &[usize] = &[64, 96];
        let shape_b: &[usize] = &[64, 40];
        let ts = [
            TensorMeta {
                name: "blk.0.attn_q.weight",
                shape: shape_a,
                dtype: DType::F16,
            },
            TensorMeta {
                name: "blk.0.attn_k.weight",
                shape: shape_b,
                dtype: DType::F16,
            },
        ];
        let got = tensor_types(&m, P::Q4_K_M, Options::default(), &ts).unwrap();
        assert_eq!(got, [Some(GgmlType::Q5_0), Some(GgmlType::F16)]);
        let got = tensor_types(&m, P::Q2_K, Options::default(), &ts).unwrap();
        assert_eq!(got[0], Some(GgmlType::IQ4_NL));
        assert!(tensor_types(&m, P::Q8_0, Options::default(), &ts[1..]).is_err());

        let v: &[usize] = &[256, 256];
        let attn_v = [TensorMeta {
            name: "blk.0.attn_v.weight",
            shape: v,
            dtype: DType::F32,
        }];
        let big = Model {
            is_70b: true,
            n_layer: 80,
            ..m.clone()
        };
        assert_eq!(
            tensor_types(&big, P::Q3_K_S, Options::default(), &attn_v).unwrap(),
            [Some(GgmlType::Q5_K)]
        );
        let moe = Model {
            n_expert: 8,
            ..m.clone()
        };
        assert_eq!(
            tensor_types(&moe, P::Q4_K_M, Options::default(), &attn_v).unwrap(),
            [Some(GgmlType::Q8_0)]
        );
        let down = [TensorMeta {
            name: "blk.9.ffn_down_exps.weight",
            shape: v,
            dtype: DType::F32,
        }];
        assert!(tensor_types(&moe, P::Q4_K_M, Options::default(), &down).is_err());
        let pure = Options {
            pure: true,
            has_imatrix: false,
        };
        assert_eq!(
            tensor_types(&m, P::Q4_K_M, pure, &attn_v).unwrap(),
            [Some(GgmlType::Q4_K)]
        );
    }
}
