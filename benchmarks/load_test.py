"""Bounded load test of `polyhead serve`, against 127.0.0.1 only; stops by itself.

Starts the service on a free loopback port with an abalone model (rings regression + rings
class + sex), then runs 8 concurrent keep-alive clients for 30 s, each alternating 1-row and
100-row requests. Prints throughput (rows/s, requests/s), p50/p99 latency per request size,
errors, and the server's RSS at start and end.

    python benchmarks/load_test.py [--clients 8] [--seconds 30]
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

import polyhead
from polyhead.demo import abalone_split

HOST = "127.0.0.1"  # never anything but loopback


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    X_tr, X_te, y_tr, _ = abalone_split()
    y = pd.DataFrame({"rings": y_tr["rings"], "rings_class": y_tr["rings"], "sex": X_tr["sex"]})
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        polyhead.MultiTaskNet(tasks={"rings": "regression", "rings_class": "multiclass",
                                     "sex": "multiclass"}, random_state=0).fit(
            X_tr.drop(columns="sex"), y).save(model_dir)
        rows = json.loads(X_te.drop(columns="sex").to_json(orient="records"))
        bodies = {1: json.dumps({"rows": rows[:1]}).encode(),
                  100: json.dumps({"rows": rows[:100]}).encode()}
        with socket.socket() as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        server = subprocess.Popen([str(Path(sys.executable).parent / "polyhead"), "serve",
                                   str(model_dir), "--host", HOST, "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 60
            while time.time() < deadline:
                try:
                    conn = http.client.HTTPConnection(HOST, port, timeout=5)
                    conn.request("GET", "/ready")
                    resp = conn.getresponse()
                    resp.read()
                    if resp.status == 200:
                        break
                except OSError:
                    time.sleep(0.2)
            else:
                sys.exit("server did not start")
            for size in bodies:  # warm-up
                conn.request("POST", "/predict", bodies[size], {"Content-Type": "application/json"})
                conn.getresponse().read()
            rss_start = rss_mib(server.pid)
            latencies: dict[int, list[float]] = {1: [], 100: []}
            errors: list[str] = []
            lock = threading.Lock()
            stop_at = time.perf_counter() + args.seconds

            def client(k: int) -> None:
                conn = http.client.HTTPConnection(HOST, port, timeout=30)
                size = 1 if k % 2 else 100
                local: dict[int, list[float]] = {1: [], 100: []}
                while time.perf_counter() < stop_at:
                    size = 100 if size == 1 else 1
                    t = time.perf_counter()
                    try:
                        conn.request("POST", "/predict", bodies[size],
                                     {"Content-Type": "application/json"})
                        resp = conn.getresponse()
                        body = resp.read()
                        if resp.status != 200 or len(json.loads(body)["predictions"]) != size:
                            with lock:
                                errors.append(f"status {resp.status}")
                            continue
                    except (OSError, http.client.HTTPException) as exc:
                        with lock:
                            errors.append(type(exc).__name__)
                        conn = http.client.HTTPConnection(HOST, port, timeout=30)
                        continue
                    local[size].append(time.perf_counter() - t)
                with lock:
                    for s_, v in local.items():
                        latencies[s_].extend(v)

            threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - start
            rss_end = rss_mib(server.pid)
        finally:
            server.terminate()
            server.wait(10)
    n_req = sum(len(v) for v in latencies.values())
    n_rows = sum(size * len(v) for size, v in latencies.items())
    print(f"{args.clients} clients x {args.seconds:.0f} s against {HOST} (1-row and 100-row requests alternating)")
    print(f"{'requests/s':<22}{n_req / elapsed:>12,.1f}")
    print(f"{'rows/s':<22}{n_rows / elapsed:>12,.1f}")
    for size, values in latencies.items():
        if values:
            ms = np.array(values) * 1000
            print(f"{f'{size}-row p50 / p99 ms':<22}{np.percentile(ms, 50):>12.2f} / {np.percentile(ms, 99):.2f}"
                  f"   ({len(values)} requests)")
    print(f"{'errors':<22}{len(errors):>12}  {sorted(set(errors))[:5]}")
    print(f"{'server RSS MiB':<22}{rss_start:>12.1f} at start, {rss_end:.1f} at end "
          f"({(rss_end - rss_start) / rss_start:+.1%})")


if __name__ == "__main__":
    main()
