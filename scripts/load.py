#!/usr/bin/env python3
"""Load test of a running server (loopback only, bounded in time): N concurrent clients over
chat, embeddings and rerank, counting statuses (only 200, 429 and 503 are allowed; anything
else, a 500 above all, fails the run), with p50/p99 latency per route and the server's RSS
every minute, printed as a Markdown table for the README.

    scripts/load.py --url http://127.0.0.1:9997 --pid SERVER_PID \\
        --chat smollm2-instruct --embedding all-MiniLM-L6-v2 --rerank RERANK_UID \\
        --clients 64 --minutes 10

The models must be launched already. Standard library only (threads + http.client).
Exit status 1 when a disallowed status or a connection error was seen.
"""
import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse

ALLOWED = {200, 429, 503}


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--pid", type=int, help="server process id, for its RSS")
    ap.add_argument("--chat")
    ap.add_argument("--embedding")
    ap.add_argument("--rerank")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--interval", type=float, default=60, help="seconds per report row")
    ap.add_argument("--max-tokens", type=int, default=16)
    args = ap.parse_args()
    url = urllib.parse.urlparse(args.url)
    if url.hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("loopback only: the load test never targets another machine")

    requests = []
    if args.chat:
        requests.append(("chat", "/v1/chat/completions", {
            "model": args.chat, "max_tokens": args.max_tokens,
            "messages": [{"role": "user", "content": "Tell me about foxes."}]}))
    if args.embedding:
        requests.append(("embeddings", "/v1/embeddings", {
            "model": args.embedding, "input": ["The quick brown fox", "jumps over the lazy dog"]}))
    if args.rerank:
        requests.append(("rerank", "/v1/rerank", {
            "model": args.rerank, "query": "Where do foxes live?",
            "documents": ["Foxes live in dens.", "The stock market fell.", "Red foxes are common."]}))
    if not requests:
        sys.exit("give at least one of --chat, --embedding, --rerank")

    lock = threading.Lock()
    window = {}  # route -> list of latencies (this interval)
    statuses = {}  # (route, status) -> count (whole run)
    errors = []
    stop = time.monotonic() + args.minutes * 60

    def client(i):
        conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=300)
        n = i
        while time.monotonic() < stop:
            route, path, body = requests[n % len(requests)]
            n += 1
            start = time.monotonic()
            try:
                conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                status = response.status
            except Exception as e:  # noqa: BLE001 - counted, reported
                conn.close()
                conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=300)
                status = f"error: {type(e).__name__}"
            elapsed = time.monotonic() - start
            with lock:
                statuses[(route, status)] = statuses.get((route, status), 0) + 1
                if status == 200:
                    window.setdefault(route, []).append(elapsed)
                if status not in ALLOWED:
                    errors.append((route, status))
            if status == 429 or status == 503:
                time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    routes = [r[0] for r in requests]
    print("| t (s) | " + " | ".join(f"{r} req/s | {r} p50 ms | {r} p99 ms" for r in routes) + " | RSS MiB |")
    print("|---" * (2 + 3 * len(routes)) + "|")
    row = 0
    elapsed_s = 0.0
    while time.monotonic() < stop:
        time.sleep(max(0.0, min(args.interval, stop - time.monotonic())))
        with lock:
            snap = {r: window.pop(r, []) for r in routes}
        row += 1
        elapsed_s = time.monotonic() - t0
        cells = []
        for r in routes:
            lat = snap[r]
            cells += [f"{len(lat) / args.interval:.1f}", f"{percentile(lat, 50) * 1000:.0f}",
                      f"{percentile(lat, 99) * 1000:.0f}"]
        rss = rss_mib(args.pid) if args.pid else float("nan")
        print(f"| {elapsed_s:.0f} | " + " | ".join(cells) + f" | {rss:.0f} |", flush=True)
    # Requests still in flight at the end are not waited for beyond a short grace.
    for t in threads:
        t.join(timeout=max(0.0, t0 + args.minutes * 60 + 30 - time.monotonic()))
    unfinished = sum(t.is_alive() for t in threads)
    print(f"\n{args.clients} clients, {time.monotonic() - t0:.0f} s, {unfinished} requests still "
          f"in flight at the end; statuses:")
    for (route, status), count in sorted(statuses.items(), key=lambda kv: str(kv[0])):
        print(f"  {route:<11} {status}: {count}")
    if errors:
        print(f"FAIL: {len(errors)} responses outside {sorted(ALLOWED)}", file=sys.stderr)
        sys.exit(1)
    print("ok: only 200/429/503")


if __name__ == "__main__":
    main()
