"""Makes the peer-written fixtures of modelopt-io's tests (run from this folder).

peer.safetensors: written by torch + safetensors; `x_f16`/`x_bf16` hold the values of `x_f32`
rounded by torch, and `x_f16_as_f32`/`x_bf16_as_f32` are torch's own widening back to f32.
peer.gguf: written by gguf-py's GGUFWriter with one metadata key of every GGUF type and tensors
of types F32, F16, I32, Q8_0, Q4_0; `q8_0_expected`/`q4_0_expected` are gguf-py's dequantization.
"""
import numpy as np
import torch
from safetensors.torch import save_file
import gguf

rng = np.random.default_rng(7)
x = (rng.standard_normal((3, 5)) * 10).astype(np.float32)
t = torch.from_numpy(x)
save_file(
    {
        "x_f32": t,
        "x_f16": t.half(),
        "x_bf16": t.bfloat16(),
        "x_f16_as_f32": t.half().float(),
        "x_bf16_as_f32": t.bfloat16().float(),
        "ids_i64": torch.tensor([[0, -1, 2**40]], dtype=torch.int64),
        "mask_u8": torch.tensor([1, 0, 255], dtype=torch.uint8),
    },
    "peer.safetensors",
    metadata={"format": "pt"},
)

w = gguf.GGUFWriter("peer.gguf", arch="test")
w.add_uint8("k.u8", 200)
w.add_int8("k.i8", -100)
w.add_uint16("k.u16", 60000)
w.add_int16("k.i16", -30000)
w.add_uint32("k.u32", 4000000000)
w.add_int32("k.i32", -2000000000)
w.add_float32("k.f32", 1.5)
w.add_bool("k.bool", True)
w.add_string("k.str", "héllo")
w.add_array("k.arr_i32", [1, -2, 3])
w.add_array("k.arr_str", ["a", "bc", ""])
w.add_uint64("k.u64", 2**63 + 5)
w.add_int64("k.i64", -(2**62))
w.add_float64("k.f64", -0.125)
f32 = np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5
w.add_tensor("t.f32", f32)
w.add_tensor("t.f16", f32.astype(np.float16))
w.add_tensor("t.i32", np.array([[7, -8], [9, 10]], dtype=np.int32))
src = (rng.standard_normal((2, 64)) * 3).astype(np.float32)
for name, qt in [("q8_0", gguf.GGMLQuantizationType.Q8_0), ("q4_0", gguf.GGMLQuantizationType.Q4_0)]:
    q = gguf.quants.quantize(src, qt)
    w.add_tensor(f"t.{name}", q, raw_shape=q.shape, raw_dtype=qt)
    w.add_tensor(f"{name}_expected", gguf.quants.dequantize(q, qt).astype(np.float32))
w.add_tensor("t.src", src)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
