#!/usr/bin/env python3
"""End-to-end LLM serving benchmark: our server beside llama.cpp's `llama-server`, as a user sees them.

Both servers load the same GGUF file with the same thread count, one after the other in the same run,
and are driven by the official `openai` SDK with streaming chat requests (greedy, unique prompts of
about 120 tokens so that no prompt cache helps). For 1, 2, 4 (and 8) concurrent clients it prints:

  * decode tok/s: per stream, completion tokens after the first / time from first to last token
    (mean over the requests);
  * time to first token (mean);
  * aggregate tok/s: all completion tokens / wall time of the round (what N clients get together);

and, for one client, the time to first token of two requests that share a ~1,000-token system prompt
(the second can reuse the first's prefix). The ratio column is ours / llama.cpp's (higher is better for
rates, and llama.cpp's / ours for times, so >1 always means we are faster).

Both servers get the same slot count (`--parallel`, default 4): ours through the launch's `n_parallel`,
llama-server through `-np` with `-c` = slots x context. Not a test: it asserts nothing about speed.
The figures are only meaningful on an otherwise idle machine.

    python3 scripts/bench_llm_server.py \\
        --ours target/release/xinference \\
        --llama-server ~/.cache/xinference-rs/llamacpp/build/bin/llama-server \\
        --models ~/.cache/xinference-rs/test-models/SmolLM2-135M-Instruct.Q4_1.gguf

(the Python running it needs the `openai` package: ~/.cache/xinference-rs/venv/bin/python has it.)

Without `--llama-server` only ours runs. `--variants` compares settings of ours A/B in one run (for a
loaded machine, where only ratios mean something): each variant is a label and environment settings
(`rule=XINFERENCE_BATCH_GATHER=fixed`; `BINARY=path` runs another build of ours; a bare label
runs as is), and the variants run in turn
`--repeat` times. Each round also reports our server's CPU seconds per generated token and the model's
`batching` description (mean batch, passes by size, seconds in passes and gathering).
"""
import argparse
import json
import os
import random
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import openai
from openai import OpenAI

# How our registry names the test GGUFs (name, size in billions, quantization), by file name.
OUR_SPECS = {
    "SmolLM2-135M-Instruct.Q4_1.gguf": ("smollm2-instruct", "0_135", "Q4_1"),
    "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf": ("qwen2.5-coder-instruct", "0_5", "Q4_K_M"),
    "gemma-3-270m-q4_k_m.gguf": ("gemma-3-1b-it", 1, "Q4_K_M"),
}

TOPICS = [
    "the history of the printing press", "how bridges carry loads", "the water cycle",
    "why the sky is blue", "the rules of chess", "how vaccines train the immune system",
    "the life of honey bees", "how a compiler works", "the causes of ocean tides",
    "the invention of the telephone", "how glaciers shape valleys", "the basics of photosynthesis",
]

FILLER = (
    "Please answer carefully, in plain words, with examples a curious student would enjoy, and "
    "keep the explanation focused on the main ideas rather than on dates and names. "
)

SYSTEM_LONG = (
    "You are a helpful assistant for a public library. Follow these house rules. " + " ".join(
        f"Rule {i}: be accurate, be brief, cite the section of the catalogue where the reader can "
        f"find more, and never invent titles or authors." for i in range(1, 46)
    )
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, path, deadline_s=300):
    t0 = time.time()
    while time.time() - t0 < deadline_s:
        try:
            with urllib.request.urlopen(url + path, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url}{path} never answered 200")


class Server:
    """A server process in its own process group, killed with everything it started."""

    def __init__(self, argv, env, url, ready_path):
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        self.url = url
        wait_ready(url, ready_path)

    def cpu_s(self):
        """User + system CPU seconds of the server process (all its threads)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            return float("nan")

    def rss_mb(self):
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    # kB (KiB) to MB, the unit of the file size it is compared with.
                    return int(line.split()[1]) * 1024 / 1e6
        except OSError:
            pass
        return float("nan")

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def start_ours(binary, gguf, threads, parallel, ctx, extra_env=None):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    home = tempfile.mkdtemp(prefix="bench-xinference-")
    env = dict(os.environ, XINFERENCE_HOME=home, CANDLE_NUM_THREADS=str(threads),
               RAYON_NUM_THREADS=str(threads), **(extra_env or {}))
    server = Server([binary, "local", "--host", "127.0.0.1", "--port", str(port)], env, url, "/health")
    name, size, quant = OUR_SPECS[Path(gguf).name]
    body = {
        "model_uid": "bench", "model_name": name, "model_engine": "llama.cpp",
        "model_format": "ggufv2", "model_size_in_billions": size, "quantization": quant,
        "model_path": str(gguf), "n_parallel": parallel,
    }
    req = urllib.request.Request(url + "/v1/models", data=json.dumps(body).encode(),
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        assert r.status == 200, r.read()
    return server, "bench"


def start_llama(binary, gguf, threads, parallel, ctx):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [binary, "-m", str(gguf), "-t", str(threads), "-tb", str(threads), "-np", str(parallel),
            "-c", str(ctx * parallel), "--host", "127.0.0.1", "--port", str(port), "--jinja"]
    server = Server(argv, dict(os.environ), url, "/health")
    return server, "bench"


def stream_chat(client, model, messages, max_tokens):
    """One streamed chat; returns (ttft_s, total_s, completion_tokens, decode_tok_s)."""
    t0 = time.perf_counter()
    first = last = None
    chunks = 0
    usage = None
    stream = client.chat.completions.create(
        model=model, messages=messages, max_tokens=max_tokens, temperature=0, stream=True,
        stream_options={"include_usage": True},
    )
    for ev in stream:
        if ev.usage is not None:
            usage = ev.usage
        delta = ev.choices[0].delta if ev.choices else None
        if delta is not None and (delta.content or getattr(delta, "reasoning_content", None)):
            now = time.perf_counter()
            first = first or now
            last = now
            chunks += 1
    end = time.perf_counter()
    tokens = usage.completion_tokens if usage is not None else chunks
    first = first or end
    last = last or end
    decode = (tokens - 1) / (last - first) if tokens > 1 and last > first else float("nan")
    return first - t0, end - t0, tokens, decode


def unique_prompt(rng):
    topic = rng.choice(TOPICS)
    return f"Request {rng.randrange(10**9)}. {FILLER * 3}Explain {topic} in a few paragraphs."


def round_of(url, model, clients, requests_each, max_tokens, seed):
    """`clients` threads each send `requests_each` streamed chats back to back."""
    results = []
    lock = threading.Lock()

    def worker(i):
        rng = random.Random(seed * 1000 + i)
        client = OpenAI(base_url=url + "/v1", api_key="none", timeout=900, max_retries=0)
        for _ in range(requests_each):
            r = stream_chat(client, model, [{"role": "user", "content": unique_prompt(rng)}],
                            max_tokens)
            with lock:
                results.append(r)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    n = len(results)
    return {
        "ttft_s": sum(r[0] for r in results) / n,
        "decode_tps": sum(r[3] for r in results) / n,
        "aggregate_tps": sum(r[2] for r in results) / wall,
        "tokens": sum(r[2] for r in results),
    }


def shared_prefix(url, model, max_tokens):
    client = OpenAI(base_url=url + "/v1", api_key="none", timeout=900, max_retries=0)
    out = []
    for q in ("Which section holds books on astronomy?", "Which section holds cookbooks?"):
        messages = [{"role": "system", "content": SYSTEM_LONG}, {"role": "user", "content": q}]
        out.append(stream_chat(client, model, messages, max_tokens)[0])
    return out


def batching(url, model):
    """Our model's `batching` description (None for llama-server)."""
    try:
        with urllib.request.urlopen(f"{url}/v1/models/{model}", timeout=10) as r:
            return json.loads(r.read()).get("batching")
    except Exception:
        return None


def batching_delta(before, after):
    """What a round added to the `batching` counters."""
    if not before or not after:
        return None
    out = {}
    for k, v in after.items():
        b = before.get(k)
        if isinstance(v, list):
            out[k] = [x - y for x, y in zip(v, b)]
        elif isinstance(v, (int, float)) and k not in ("mean_batch", "largest_batch"):
            out[k] = round(v - b, 3) if isinstance(v, float) else v - b
    out["mean_batch"] = round(out["steps"] / out["passes"], 2) if out.get("passes") else 0.0
    return out


def bench_server(kind, start, binary, gguf, args, extra_env=None, prefix_run=True):
    if extra_env is None:
        server, model = start(binary, gguf, args.threads, args.parallel, args.ctx)
    else:
        server, model = start(binary, gguf, args.threads, args.parallel, args.ctx, extra_env)
    try:
        rss = server.rss_mb()
        # Warm-up: one short request (page in the weights, build lazy state).
        OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0).chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=8, temperature=0)
        rows = {}
        for clients in args.clients:
            cpu0, stats0 = server.cpu_s(), batching(server.url, model)
            rows[clients] = round_of(server.url, model, clients, args.requests, args.max_tokens,
                                     seed=clients)
            rows[clients]["cpu_ms_per_token"] = (server.cpu_s() - cpu0) * 1e3 / rows[clients]["tokens"]
            stats = batching_delta(stats0, batching(server.url, model))
            print(f"  {kind} {clients} client(s): {json.dumps(rows[clients])}"
                  + (f" batching {json.dumps(stats)}" if stats else ""), flush=True)
            if stats:
                rows[clients]["batching"] = stats
        if not prefix_run:
            return {"rss_mb": rss, "rows": rows}
        prefix = shared_prefix(server.url, model, 16)
        print(f"  {kind} shared 1k-token system prompt, ttft first/second: {prefix}", flush=True)
        return {"rss_mb": rss, "rows": rows, "prefix": prefix}
    finally:
        server.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ours", required=True, help="our `xinference` binary")
    p.add_argument("--llama-server", help="llama.cpp's llama-server binary (without it: ours only)")
    p.add_argument("--variants", nargs="+",
                   help="A/B of ours: LABEL[:ENV=VAL[;ENV=VAL...]] each, run in turn (ours only)")
    p.add_argument("--repeat", type=int, default=1, help="rounds of --variants")
    p.add_argument("--models", nargs="+", required=True, help="GGUF files (names as in OUR_SPECS)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--parallel", type=int, default=4, help="sequence slots on both servers")
    p.add_argument("--ctx", type=int, default=2048, help="context per slot (llama-server -c is slots x this; ours sizes its slots from the GGUF)")
    p.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 8])
    p.add_argument("--requests", type=int, default=2, help="requests per client per round")
    p.add_argument("--max-tokens", type=int, default=128)
    args = p.parse_args()

    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    if args.variants:
        return ab(args)
    table = []
    for gguf in args.models:
        gguf = Path(gguf).expanduser()
        size_mb = gguf.stat().st_size / 1e6
        print(f"{gguf.name} ({size_mb:.0f} MB)", flush=True)
        try:
            ours = bench_server("ours", start_ours, args.ours, gguf, args)
        except openai.BadRequestError as e:
            # A model that cannot chat (a base model without a chat template) is a 400 on our
            # server, as in Xinference: the other models' rows still come.
            print(f"  skipped: our server refuses chat with this model ({e})", flush=True)
            continue
        if not args.llama_server:
            continue
        peer = bench_server("llama-server", start_llama, args.llama_server, gguf, args)
        for clients in args.clients:
            o, l = ours["rows"][clients], peer["rows"][clients]
            table.append((gguf.name, clients, "decode tok/s per stream", o["decode_tps"], l["decode_tps"],
                          o["decode_tps"] / l["decode_tps"]))
            table.append((gguf.name, clients, "time to first token ms", o["ttft_s"] * 1e3,
                          l["ttft_s"] * 1e3, l["ttft_s"] / o["ttft_s"]))
            table.append((gguf.name, clients, "aggregate tok/s", o["aggregate_tps"], l["aggregate_tps"],
                          o["aggregate_tps"] / l["aggregate_tps"]))
        for i, label in enumerate(("shared system prompt: 1st ttft ms", "shared system prompt: 2nd ttft ms")):
            table.append((gguf.name, 1, label, ours["prefix"][i] * 1e3, peer["prefix"][i] * 1e3,
                          peer["prefix"][i] / ours["prefix"][i]))
        table.append((gguf.name, 0, f"RSS after load MB (file {size_mb:.0f} MB)", ours["rss_mb"],
                      peer["rss_mb"], peer["rss_mb"] / ours["rss_mb"]))
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    print()
    print("| model | clients | measure | xinference-rs | llama-server | ratio |")
    print("|---|---|---|---|---|---|")
    for name, clients, measure, o, l, ratio in table:
        print(f"| {name} | {clients or ''} | {measure} | {o:.1f} | {l:.1f} | {ratio:.2f}x |")


def ab(args):
    """Runs each variant of ours in turn, `--repeat` times, and prints the mean of each variant's
    aggregate tok/s per client count, its ratio to its own one-client figure, CPU ms per token and
    the mean batch."""
    variants = []
    for v in args.variants:
        label, _, env = v.partition(":")
        variants.append((label, dict(kv.split("=", 1) for kv in env.split(";") if kv)))
    for gguf in args.models:
        gguf = Path(gguf).expanduser()
        print(f"{gguf.name}", flush=True)
        runs = {label: [] for label, _ in variants}
        for r in range(args.repeat):
            for label, env in variants:
                print(f" {label} (round {r + 1}) {env}", flush=True)
                env = dict(env)
                binary = env.pop("BINARY", args.ours)
                runs[label].append(bench_server(label, start_ours, binary, gguf, args, env,
                                                prefix_run=False)["rows"])
        print()
        print("| variant | clients | aggregate tok/s | x one client | CPU ms/token | mean batch |")
        print("|---|---|---|---|---|---|")
        for label, _ in variants:
            for clients in args.clients:
                mean = lambda key: sum(run[clients][key] for run in runs[label]) / len(runs[label])
                agg = mean("aggregate_tps")
                one = sum(run[args.clients[0]]["aggregate_tps"] for run in runs[label]) / len(runs[label])
                batch = [run[clients].get("batching", {}).get("mean_batch", 0) for run in runs[label]]
                ratios = [run[clients]["aggregate_tps"] / run[args.clients[0]]["aggregate_tps"]
                          for run in runs[label]]
                print(f"| {label} | {clients} | {agg:.1f} | {agg / one:.2f}x "
                      f"({', '.join(f'{x:.2f}' for x in ratios)}) | {mean('cpu_ms_per_token'):.2f} | "
                      f"{sum(batch) / len(batch):.2f} |")
        print(f"load average at end: {os.getloadavg()[0]:.2f}", flush=True)


if __name__ == "__main__":
    main()
