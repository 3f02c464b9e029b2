#!/usr/bin/env python3
"""Benchmark sentence-transformers (torch, CPU) on an embedding model folder, as the baseline for
xinference-rs' embeddings on the same machine (benches/embedding.rs runs it in the same run).

    ~/.cache/xinference-rs/refvenv/bin/python scripts/bench_sentence_transformers.py \\
        ~/.cache/xinference-rs/test-models/all-MiniLM-L6-v2 SENTENCES.json --threads 2

SENTENCES.json is {"short": "<one short sentence>", "batch": ["<twenty-word sentence>", ...]}.
Measures, after an untimed warm-up:
  * single_p50_ms: median latency of model.encode(short) over SINGLE_REPS calls;
  * batch32_per_s: sentences per second embedding `batch` in encode() calls of 32 sentences;
  * sequential_per_s: sentences per second embedding `batch` one sentence per encode() call
    (what a server that handles one request at a time can reach).
Prints one JSON object to stdout.
"""
import argparse
import json
import os
import statistics
import time

SINGLE_REPS = 50


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("sentences")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    data = json.load(open(args.sentences))
    short, batch = data["short"], data["batch"]
    model = SentenceTransformer(args.model, device="cpu")

    load_start = os.getloadavg()[0]
    model.encode(batch[:32], batch_size=32)
    for _ in range(5):
        model.encode(short)
    times = []
    for _ in range(SINGLE_REPS):
        t = time.perf_counter()
        model.encode(short)
        times.append(time.perf_counter() - t)
    single_p50_ms = statistics.median(times) * 1000

    t = time.perf_counter()
    for i in range(0, len(batch), 32):
        model.encode(batch[i : i + 32], batch_size=32)
    batch32_per_s = len(batch) / (time.perf_counter() - t)

    t = time.perf_counter()
    for s in batch:
        model.encode(s)
    sequential_per_s = len(batch) / (time.perf_counter() - t)

    print(json.dumps({
        "single_p50_ms": single_p50_ms,
        "batch32_per_s": batch32_per_s,
        "sequential_per_s": sequential_per_s,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_avg_start": load_start,
        "load_avg_end": os.getloadavg()[0],
    }))


if __name__ == "__main__":
    main()
