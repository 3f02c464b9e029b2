#!/usr/bin/env python3
"""The peers of `cargo bench --bench rerank`, on the same models and inputs, CPU only.

    prepare --minilm DIR --out DIR
        Builds a MiniLM-L6 cross-encoder (ms-marco-MiniLM-L-6-v2's architecture and size):
        BertForSequenceClassification with all-MiniLM-L6-v2's encoder and tokenizer, a pooler
        and a one-label classifier drawn with a fixed seed. No registry ships cross-encoder
        weights; this one is realistic in size, so its timings are.

    run --input JSON --threads N [--ce DIR]... [--gguf FILE --llm-docs K]
        For each cross-encoder folder: sentence-transformers' CrossEncoder.predict (what
        Xinference's rerank engine calls) on the query and documents of JSON, one request of all
        documents (median of REPS after a warm-up), and `concurrent` requests' pairs one after
        the other (a single-process peer serves them in turn). For the GGUF: llama.cpp through
        llama-cpp-python scoring Qwen3-Reranker's yes/no prompt on the first K documents, one
        full prompt evaluation per document (what our LLM reranker does). Prints one JSON object
        with times and the scores (so the caller can check that both sides agree).
"""
import argparse
import json
import math
import statistics
import time

REPS = 5

PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query "
    'and the Instruct provided. Note that the answer can only be "yes" or "no".'
    "<|im_end|>\n<|im_start|>user\n"
)
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


def prepare(args):
    import torch
    from transformers import BertConfig, BertForSequenceClassification, AutoTokenizer

    torch.manual_seed(20261126)
    config = BertConfig.from_pretrained(args.minilm, num_labels=1)
    config.architectures = ["BertForSequenceClassification"]
    model = BertForSequenceClassification.from_pretrained(args.minilm, config=config)
    with torch.no_grad():
        # A wider head than the default init, so that scores differ visibly between documents.
        model.classifier.weight.normal_(0.0, 1.0)
    model.save_pretrained(args.out, safe_serialization=True)
    AutoTokenizer.from_pretrained(args.minilm).save_pretrained(args.out)
    print(json.dumps({"out": args.out}))


def timed(f, reps=REPS):
    f()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run(args):
    import torch

    torch.set_num_threads(args.threads)
    data = json.load(open(args.input))
    query, docs, concurrent = data["query"], data["documents"], data["concurrent"]
    out = {"torch": torch.__version__, "threads": args.threads, "cross_encoders": {}}
    from sentence_transformers import CrossEncoder, __version__ as st_version

    out["sentence_transformers"] = st_version
    pairs = [[query, d] for d in docs]
    for folder in args.ce or []:
        # The window: the tokenizer's model_max_length, as our launch computes it.
        ce = CrossEncoder(folder, device="cpu")
        scores = ce.predict(pairs, batch_size=32).tolist()
        one = timed(lambda: ce.predict(pairs, batch_size=32))
        t = time.perf_counter()
        for _ in range(concurrent):
            ce.predict(pairs, batch_size=32)
        many = time.perf_counter() - t
        out["cross_encoders"][folder] = {
            "request_s": one,
            "concurrent_s": many,
            "scores": scores,
        }
    if args.gguf:
        import llama_cpp
        import numpy as np
        from llama_cpp import Llama

        llm = Llama(
            model_path=args.gguf,
            n_ctx=2048,
            n_batch=512,
            n_ubatch=512,
            n_threads=args.threads,
            n_threads_batch=args.threads,
            logits_all=False,
            verbose=False,
        )
        yes = llm.tokenize(b"yes", add_bos=False, special=False)
        no = llm.tokenize(b"no", add_bos=False, special=False)
        assert len(yes) == 1 and len(no) == 1, (yes, no)
        prompts = []
        for d in docs[: args.llm_docs]:
            body = f"<Instruct>: {INSTRUCTION}\n<Query>: {query}\n<Document>: {d}"
            text = PREFIX + body + SUFFIX
            prompts.append(llm.tokenize(text.encode(), add_bos=False, special=True))

        def score_all():
            scores = []
            for p in prompts:
                llm.reset()
                llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llm._ctx.ctx), True)
                llm.eval(p)
                logits = np.ctypeslib.as_array(
                    llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(llm.n_vocab(),)
                )
                scores.append(1.0 / (1.0 + math.exp(float(logits[no[0]]) - float(logits[yes[0]]))))
            return scores

        scores = score_all()
        t = timed(score_all, reps=2)
        out["llm"] = {
            "request_s": t,
            "docs": len(prompts),
            "prompt_tokens": [len(p) for p in prompts],
            "scores": scores,
            "llama_cpp_python": llama_cpp.__version__,
        }
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("prepare")
    a.add_argument("--minilm", required=True)
    a.add_argument("--out", required=True)
    b = sub.add_parser("run")
    b.add_argument("--input", required=True)
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--ce", action="append")
    b.add_argument("--gguf")
    b.add_argument("--llm-docs", type=int, default=8)
    args = p.parse_args()
    prepare(args) if args.cmd == "prepare" else run(args)


if __name__ == "__main__":
    main()
