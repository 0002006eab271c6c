"""Request latency of the latent explorer: ``python -m betavae explore`` in its own process, timed from a client.

    python scripts/explorer_latency.py --ckpt_path runs/quickstart/version_0/checkpoints/last.ckpt [--requests 200]
    python scripts/explorer_latency.py --url http://127.0.0.1:8765/ --pid PID   # an explorer already running

Starts the explorer on a free loopback port, then sends, one after another as a slider does, ``--requests``
decode requests for seeded random codes (one dimension moved per request, like a dragged slider) and a few
encode requests, and prints the round trip's median, 90th and 99th percentile and mean (ms), the server's
own time per decode (``X-Decode-Ms``: decode + PNG) as the baseline, their ratio (what HTTP adds), and the
CPU seconds (user + sys) the server and this client spent: on a loaded machine wall time is inflated, CPU
time much less. Loopback only; the number of requests is bounded.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cpu_seconds(pid: int) -> float:
    """user + sys CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def start(ckpt_path: str) -> tuple[subprocess.Popen, str, float]:
    """``python -m betavae explore`` on a free loopback port: (its process, its URL, seconds until it printed it)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-u", "-m", "betavae", "explore", f"--ckpt_path={ckpt_path}", "--port=0"]
    started = time.perf_counter()
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    for line in server.stdout:
        print("  | " + line.rstrip())
        found = re.search(r"explore: open (http://\S+)", line)
        if found:
            threading.Thread(target=server.stdout.read, daemon=True).start()  # keep its pipe drained
            return server, found.group(1).rstrip("/"), time.perf_counter() - started
    server.wait()
    raise SystemExit("the explorer printed no URL")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ckpt_path", help="start `python -m betavae explore` on this checkpoint")
    source.add_argument("--url", help="time an explorer that is already running at this address instead")
    parser.add_argument("--pid", type=int, help="with --url: its process id, for its CPU time")
    parser.add_argument("--requests", type=int, default=200, help="decode requests (at most 5,000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    requests = max(1, min(args.requests, 5000))
    server, startup = None, None
    if args.url:
        url, pid = args.url.rstrip("/"), args.pid
    else:
        server, url, startup = start(args.ckpt_path)
        pid = server.pid
    try:
        info = json.load(urllib.request.urlopen(f"{url}/api/info", timeout=60))
        dims, span = info["latent_dim"], info["span"]
        rng = random.Random(args.seed)
        z = [0.0] * dims
        urllib.request.urlopen(f"{url}/api/decode?z=" + ",".join(map(str, z)), timeout=60).read()  # warm-up
        server_cpu, client_cpu = cpu_seconds(pid) if pid else math.nan, time.process_time()
        round_trips, server_ms = [], []
        for _ in range(requests):
            z[rng.randrange(dims)] = rng.uniform(-span, span)
            t0 = time.perf_counter()
            with urllib.request.urlopen(f"{url}/api/decode?z=" + ",".join(f"{v:.4f}" for v in z), timeout=60) as r:
                r.read()
                server_ms.append(float(r.headers["X-Decode-Ms"]))
            round_trips.append((time.perf_counter() - t0) * 1000)
        server_cpu = cpu_seconds(pid) - server_cpu if pid else math.nan
        client_cpu = time.process_time() - client_cpu
        encodes = []
        for i in range(min(10, info["num_images"])):
            t0 = time.perf_counter()
            urllib.request.urlopen(f"{url}/api/encode?index={i}", timeout=60).read()
            encodes.append((time.perf_counter() - t0) * 1000)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
    shape = "×".join(map(str, info["image_shape"]))
    started = f"; startup to URL {startup:.1f} s" if startup is not None else ""
    print(f"{info['model']}, {dims} latent dimensions, images {shape}{started}")
    print(
        f"decode round trip over {requests} requests (ms): median {statistics.median(round_trips):.1f}, "
        f"p90 {percentile(round_trips, 90):.1f}, p99 {percentile(round_trips, 99):.1f}, "
        f"mean {statistics.fmean(round_trips):.1f}"
    )
    print(
        f"server's decode + PNG (ms): median {statistics.median(server_ms):.1f}, "
        f"mean {statistics.fmean(server_ms):.1f}; "
        f"round trip / server time (medians): {statistics.median(round_trips) / statistics.median(server_ms):.2f}"
    )
    print(
        f"CPU per decode request (ms, user + sys): server {server_cpu / requests * 1000:.1f}, "
        f"client {client_cpu / requests * 1000:.1f}"
    )
    if encodes:
        print(f"encode round trip over {len(encodes)} requests (ms): median {statistics.median(encodes):.1f}")


if __name__ == "__main__":
    main()
