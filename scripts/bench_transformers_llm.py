#!/usr/bin/env python3
"""transformers beside our safetensors path (benches/llm_safetensors.rs), CPU only.

Two commands:

  make SHAPE DIR   Writes a Hugging Face folder (config.json, bf16 model.safetensors,
                   tokenizer.json, tokenizer_config.json) of SHAPE: the configuration of a real
                   checkpoint (`smollm2-135m`: HuggingFaceTB/SmolLM2-135M-Instruct's llama;
                   `qwen2.5-0.5b`: Qwen/Qwen2.5-0.5B-Instruct's qwen2), randomly initialised with
                   a fixed seed (the hubs are unreachable here, and speed does not depend on the
                   values), stored in bf16 as those checkpoints are, with the tiny fixtures'
                   byte-level BPE tokenizer (the bench feeds token ids, not text).
  time DIR         Times transformers on the folder, loaded in f32 (`dtype=torch.float32`: what
                   our safetensors path computes in) with `torch.set_num_threads(--threads)`.
                   The same measures as scripts/bench_llama_cpp.py, each the median of 3 after
                   an untimed warm-up: prefill_128_tps / prefill_512_tps (one forward of the
                   prompt into an empty cache), ttft_128_s (prefill 128 and the greedy pick),
                   decode_tps (128 greedy steps after the 128-token prompt, one forward of one
                   token with the cache per step). The prompt is the ids PROMPT_IDS gives, the
                   same ones the Rust bench feeds. Prints one JSON object.

    ~/.cache/xinference-rs/refvenv/bin/python scripts/bench_transformers_llm.py make \\
        qwen2.5-0.5b ~/.cache/xinference-rs/bench-models/qwen2.5-0.5b
"""
import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))

SEED = 20261202


def prompt_ids(n, vocab):
    """The bench's prompt of n ids (the Rust side computes the same: 7 + (i * 7919) % (vocab - 7))."""
    return [7 + (i * 7919) % (vocab - 7) for i in range(n)]


def shapes():
    t = transformers
    return {
        # HuggingFaceTB/SmolLM2-135M-Instruct's config.json.
        "smollm2-135m": t.LlamaConfig(
            vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
            num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
            rms_norm_eps=1e-5, tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 100000.0}),
        # Qwen/Qwen2.5-0.5B-Instruct's config.json.
        "qwen2.5-0.5b": t.Qwen2Config(
            vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
            num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
            rms_norm_eps=1e-6, tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
    }


def make(shape, folder):
    from make_tiny_llms import train_tokenizer, write_json
    config = shapes()[shape]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = train_tokenizer(specials)
    config.bos_token_id = config.eos_token_id = tok.token_to_id("<|im_end|>")
    torch.manual_seed(SEED)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            # Small values, so that the f32 activations stay ordinary numbers.
            p.copy_(0.02 * torch.randn(p.shape) + (1.0 if p.dim() == 1 else 0.0))
    model.to(torch.bfloat16).save_pretrained(folder, safe_serialization=True)
    tok.save(str(folder / "tokenizer.json"))
    write_json(folder / "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|im_end|>",
        "eos_token": "<|im_end|>",
    })


def median_of_3(f):
    times = []
    for _ in range(3):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_folder(folder, threads):
    torch.set_num_threads(threads)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    vocab = model.config.vocab_size
    p128 = torch.tensor([prompt_ids(128, vocab)])
    p512 = torch.tensor([prompt_ids(512, vocab)])

    def prefill(ids):
        cache = transformers.DynamicCache(config=model.config)
        out = model(ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        return out.logits[0, -1], cache

    def decode(steps):
        logits, cache = prefill(p128)
        start = time.perf_counter()
        for _ in range(steps):
            token = logits.argmax().view(1, 1)
            out = model(token, past_key_values=cache, use_cache=True)
            logits = out.logits[0, -1]
        return steps / (time.perf_counter() - start)

    with torch.inference_mode():
        prefill(p512)
        decode(8)
        prefill_128 = median_of_3(lambda: prefill(p128))
        prefill_512 = median_of_3(lambda: prefill(p512))
        ttft = median_of_3(lambda: int(prefill(p128)[0].argmax()))
        decode_tps = statistics.median(decode(128) for _ in range(3))
    return {
        "prefill_128_tps": 128 / prefill_128,
        "prefill_512_tps": 512 / prefill_512,
        "ttft_128_s": ttft,
        "decode_tps": decode_tps,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "load_average": os.getloadavg()[0],
    }


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("make")
    m.add_argument("shape", choices=sorted(shapes()))
    m.add_argument("folder")
    t = sub.add_parser("time")
    t.add_argument("folder")
    t.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.command == "make":
        make(args.shape, args.folder)
    else:
        print(json.dumps(time_folder(args.folder, args.threads)))


if __name__ == "__main__":
    main()
