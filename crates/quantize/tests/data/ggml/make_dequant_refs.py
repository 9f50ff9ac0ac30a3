#!/usr/bin/env python3
"""Writes dequant_<type>.bin: gguf-py's gguf.quants.dequantize of rows ROWS of <type>.bin.

Run from this folder: python3 make_dequant_refs.py  (gguf 0.19, numpy). The quantized
<type>.bin and input_f32.bin are copies of /work/shared/reference/ggml (llama.cpp / gguf-py).
"""
import numpy as np
from gguf import GGMLQuantizationType as QT
from gguf.quants import dequantize

ROWS = [0, 20, 47, 48, 52, 54, 55, 63]
for name in ["q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "bf16", "iq4_nl", "iq4_xs"]:
    q = np.fromfile(f"{name}.bin", np.uint8).reshape(64, -1)[ROWS]
    y = dequantize(q, QT[name.upper()]).astype(np.float32)
    assert y.shape == (len(ROWS), 1024)
    y.tofile(f"dequant_{name}.bin")
