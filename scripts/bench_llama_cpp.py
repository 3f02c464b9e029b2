#!/usr/bin/env python3
"""Benchmark llama.cpp (through llama-cpp-python) on a GGUF model, CPU only, as the baseline
for xinference-rs' own engine on the same machine.

Measures, each as the median of REPS (default 3) repetitions after one untimed warm-up:
  * prefill_128_tps / prefill_512_tps: prompt tokens per second for a prompt of exactly 128 / 512
    tokens (repeated text, cut to length; BOS first when the model adds one), evaluated with
    n_batch = n_ubatch = 512 (so in one llama_decode call) on an emptied KV cache each time
    (llama_memory_clear: the context state of a fresh context, without re-allocating it);
  * ttft_128_s: time to first token for the 128-token prompt (prefill + greedy pick);
  * decode_tps: tokens per second over 128 generated tokens after the 128-token prompt, greedy,
    ignoring EOS (low-level eval loop: one llama_decode of one token per step + argmax);
  * rss_after_load_mb: ru_maxrss right after the model is loaded and the context created;
    peak_rss_mb: ru_maxrss at the end (resource.getrusage, Linux reports KiB).

With `--contexts 16,1000` it measures instead decode tokens/s over `--gen` steps after prompts of
those lengths (`decode_after_tps`, by length; benches/llm_context.rs runs it so).

Prints one JSON object to stdout. It also gives the 1-minute load average at start and end:
the figures are only meaningful on an otherwise idle machine (llama.cpp's OpenMP threads
spin at barriers, so with other busy processes on the 2 cores they drop by 10-100x).

Set up the venv as described in scripts/fixtures/record_llama_cpp_greedy.py, then:

    ~/.cache/xinference-rs/refvenv/bin/python scripts/bench_llama_cpp.py \\
        ~/.cache/xinference-rs/test-models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf --threads 2
"""
import argparse
import json
import os
import resource
import statistics
import time
from pathlib import Path

import llama_cpp
import numpy as np
from llama_cpp import Llama

FILLER = (
    "The quick brown fox jumps over the lazy dog while the committee reviews the quarterly "
    "report on renewable energy, shipping logistics, and the history of mathematics. "
)


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_prompt(llm, n):
    add_bos = bool(llama_cpp.llama_vocab_get_add_bos(llm._model.vocab))
    toks = llm.tokenize((FILLER * (n // 8 + 8)).encode(), add_bos=add_bos, special=False)
    assert len(toks) >= n
    return toks[:n]


def clear(llm):
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llm._ctx.ctx), True)
    llm.n_tokens = 0


def argmax_last(llm):
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(llm.n_vocab(),))
    return int(np.argmax(logits))


def sync(llm):
    llama_cpp.llama_synchronize(llm._ctx.ctx)


def prefill_seconds(llm, prompt):
    clear(llm)
    t0 = time.perf_counter()
    llm.eval(prompt)
    sync(llm)
    return time.perf_counter() - t0


def ttft_seconds(llm, prompt):
    clear(llm)
    t0 = time.perf_counter()
    llm.eval(prompt)
    sync(llm)
    argmax_last(llm)
    return time.perf_counter() - t0


def decode_seconds(llm, prompt, n_gen):
    clear(llm)
    llm.eval(prompt)
    tok = argmax_last(llm)
    t0 = time.perf_counter()
    for _ in range(n_gen):
        llm.eval([tok])
        tok = argmax_last(llm)  # EOS is not special here: always generates n_gen tokens
    sync(llm)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description="llama.cpp CPU baseline benchmark")
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--contexts", default="", help="comma-separated prompt lengths: decode after each")
    args = ap.parse_args()
    load_start = os.getloadavg()[0]

    llm = Llama(
        model_path=args.model,
        n_ctx=2048,
        n_batch=512,
        n_ubatch=512,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        n_gpu_layers=0,
        seed=0,
        verbose=False,
    )
    rss_after_load = rss_mb()
    if args.contexts:
        lengths = [int(n) for n in args.contexts.split(",")]
        decode_seconds(llm, make_prompt(llm, 16), 8)  # untimed warm-up
        after = {}
        for n in lengths:
            prompt = make_prompt(llm, n)
            t = statistics.median(decode_seconds(llm, prompt, args.gen) for _ in range(args.reps))
            after[str(n)] = round(args.gen / t, 2)
        print(json.dumps({"model": Path(args.model).name, "threads": args.threads,
                          "gen": args.gen, "decode_after_tps": after,
                          "llama_cpp_python": llama_cpp.__version__}))
        llm.close()
        return
    p128, p512 = make_prompt(llm, 128), make_prompt(llm, 512)

    # Untimed warm-up (first decode allocates compute buffers, faults in weights).
    prefill_seconds(llm, p512)
    decode_seconds(llm, p128, 8)

    med = statistics.median
    t128 = med(prefill_seconds(llm, p128) for _ in range(args.reps))
    t512 = med(prefill_seconds(llm, p512) for _ in range(args.reps))
    ttft = med(ttft_seconds(llm, p128) for _ in range(args.reps))
    tdec = med(decode_seconds(llm, p128, args.gen) for _ in range(args.reps))

    print(
        json.dumps(
            {
                "model": Path(args.model).name,
                "threads": args.threads,
                "prefill_128_tps": round(128 / t128, 2),
                "prefill_512_tps": round(512 / t512, 2),
                "decode_tps": round(args.gen / tdec, 2),
                "ttft_128_s": round(ttft, 4),
                "rss_after_load_mb": round(rss_after_load, 1),
                "peak_rss_mb": round(rss_mb(), 1),
                "llama_cpp_python": llama_cpp.__version__,
                "loadavg_1m_start": round(load_start, 2),
                "loadavg_1m_end": round(os.getloadavg()[0], 2),
            }
        )
    )
    llm.close()


if __name__ == "__main__":
    main()
