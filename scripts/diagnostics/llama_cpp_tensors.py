#!/usr/bin/env python3
"""Diagnostic (not a test): every f32 tensor llama.cpp's CPU graph computes for a prompt, saved
as numpy files named as the graph names them (`attn_norm-13`, `ffn_norm-13`, `ffn_gate-13`,
`ffn_geglu-13`, `ffn_out-13`, `l_out-13`, `kq_soft_max-0`, `kqv_out-0`, ...; a name seen again
gets `#1`, `#2`: for Gemma 3 `Qcur-0#2` / `Kcur-0#2` are the rotated queries and keys), through
the `cb_eval` callback of the context parameters (ggml_backend_sched_eval_callback). Values are
`[tokens][n]` row-major, as ours. Set ours beside them (an `eprintln!` or a file dump of a
tensor in `GgufDecoder::forward_rows_here`) and compare bit for bit.

This is how Gemma 3 270M's gap was found (issue #13): at the `<bos>` step our `ffn_norm`
values differed from llama.cpp's in the last bits (candle's RMS norm) while every product
matched bit for bit, until layer 13, where one Q8_0 activation block's f16 scale fell on the
other side of a rounding boundary; with llama.cpp's RMS norm the step matched to 1e-6. In a
prompt, the rotary angles and rotation then differed in the last bits (`Qcur-0#2`).

    LLAMA_CPP_LIB_PATH=~/.cache/xinference-rs/llamacpp/build/bin \\
      ~/.cache/xinference-rs/llamacpp/venv/bin/python scripts/diagnostics/llama_cpp_tensors.py \\
      ~/.cache/xinference-rs/test-models/gemma-3-270m-q4_k_m.gguf 2,2063,10779 /tmp/llama-tensors
"""
import ctypes
import os
import sys

import numpy as np
import llama_cpp
import llama_cpp.llama_cpp as C


class GgmlTensor(ctypes.Structure):
    """`struct ggml_tensor` of the vendored ggml (ggml.h: GGML_MAX_DIMS 4, GGML_MAX_OP_PARAMS 64,
    GGML_MAX_SRC 10, GGML_MAX_NAME 64)."""

    _fields_ = [
        ("type", ctypes.c_int), ("buffer", ctypes.c_void_p), ("ne", ctypes.c_int64 * 4),
        ("nb", ctypes.c_size_t * 4), ("op", ctypes.c_int), ("op_params", ctypes.c_int32 * 16),
        ("flags", ctypes.c_int32), ("src", ctypes.c_void_p * 10), ("view_src", ctypes.c_void_p),
        ("view_offs", ctypes.c_size_t), ("data", ctypes.c_void_p), ("name", ctypes.c_char * 64),
        ("extra", ctypes.c_void_p), ("padding", ctypes.c_char * 8),
    ]


def main():
    model, tokens, out = sys.argv[1], [int(t) for t in sys.argv[2].split(",")], sys.argv[3]
    os.makedirs(out, exist_ok=True)
    seen = {}

    def callback(tensor, ask, _user):
        if ask:
            return True  # every node's values, please
        t = ctypes.cast(tensor, ctypes.POINTER(GgmlTensor)).contents
        ne = list(t.ne)
        if t.type != 0 or not t.data or t.nb[0] != 4 or t.nb[1] != 4 * ne[0]:
            return True  # f32, contiguous rows only
        n = ne[0] * ne[1] * ne[2] * ne[3]
        values = np.ctypeslib.as_array(ctypes.cast(t.data, ctypes.POINTER(ctypes.c_float)), shape=(n,)).copy()
        name = t.name.decode()
        k = seen.get(name, 0)
        seen[name] = k + 1
        np.save(os.path.join(out, name + ("" if k == 0 else f"#{k}") + ".npy"), values)
        return True

    keep = C.ggml_backend_sched_eval_callback(callback)
    default_params = C.llama_context_default_params

    def with_callback():
        params = default_params()
        params.cb_eval = keep
        params.cb_eval_user_data = None
        return params

    C.llama_context_default_params = with_callback
    # The settings of scripts/fixtures/record_llama_cpp_logits.py.
    llm = llama_cpp.Llama(model_path=os.path.expanduser(model), n_ctx=512, n_batch=512, n_ubatch=512,
                          n_threads=2, n_threads_batch=2, n_gpu_layers=0, logits_all=True, verbose=False)
    llm.eval(tokens)
    scores = llm.scores[len(tokens) - 1]
    top = np.argsort(-scores)[:8]
    print("top 8 at the last token:", [(int(i), round(float(scores[i]), 4)) for i in top])
    print(f"{sum(seen.values())} tensors in {out}")


if __name__ == "__main__":
    main()
