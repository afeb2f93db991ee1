"""Bounded load test of `polyhead serve`, against 127.0.0.1 only; stops by itself.

Starts the service on a free loopback port with an abalone model (rings regression + rings
class + sex), then runs 8 concurrent keep-alive clients for 30 s, each alternating 1-row and
100-row requests. Prints throughput (rows/s, requests/s), p50/p99 latency per request size,
errors, and the server's RSS at start and end.

With ``--runtime both`` (the default) it serves the same model twice, as a model directory
(torch) and as its ONNX export (onnxruntime, no torch), and prints their ratios.

    python benchmarks/load_test.py [--clients 8] [--seconds 30] [--runtime both|torch|onnx]
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


def measure(target: Path, bodies: dict[int, bytes], clients: int, seconds: float) -> dict:
    """Serve ``target`` (a model directory or a .onnx export) and load it: first one client
    sending 1-row requests (latency without queueing), then ``clients`` alternating 1 and 100
    rows for ``seconds``."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([str(Path(sys.executable).parent / "polyhead"), "serve",
                               str(target), "--host", HOST, "--port", str(port)],
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
        single = []
        for _ in range(300):
            t = time.perf_counter()
            conn.request("POST", "/predict", bodies[1], {"Content-Type": "application/json"})
            conn.getresponse().read()
            single.append(time.perf_counter() - t)
        rss_start = rss_mib(server.pid)
        latencies: dict[int, list[float]] = {1: [], 100: []}
        errors: list[str] = []
        lock = threading.Lock()
        stop_at = time.perf_counter() + seconds

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

        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
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
    return {"single_p50_ms": float(np.percentile(single, 50) * 1000),
            "requests_s": n_req / elapsed, "rows_s": n_rows / elapsed,
            "p50_ms": {k: float(np.percentile(v, 50) * 1000) for k, v in latencies.items() if v},
            "p99_ms": {k: float(np.percentile(v, 99) * 1000) for k, v in latencies.items() if v},
            "errors": errors, "rss_start": rss_start, "rss_end": rss_end}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--runtime", choices=["torch", "onnx", "both"], default="both",
                        help="onnx serves the model's .onnx export (needs polyhead[onnx])")
    args = parser.parse_args()
    X_tr, X_te, y_tr, _ = abalone_split()
    y = pd.DataFrame({"rings": y_tr["rings"], "rings_class": y_tr["rings"], "sex": X_tr["sex"]})
    runtimes = ["torch", "onnx"] if args.runtime == "both" else [args.runtime]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = polyhead.MultiTaskNet(tasks={"rings": "regression", "rings_class": "multiclass",
                                             "sex": "multiclass"}, random_state=0).fit(
            X_tr.drop(columns="sex"), y)
        targets = {"torch": Path(tmp) / "model", "onnx": Path(tmp) / "model.onnx"}
        model.save(targets["torch"])
        if "onnx" in runtimes:
            model.to_onnx(targets["onnx"])
        rows = json.loads(X_te.drop(columns="sex").to_json(orient="records"))
        bodies = {1: json.dumps({"rows": rows[:1]}).encode(),
                  100: json.dumps({"rows": rows[:100]}).encode()}
        for runtime in runtimes:
            results[runtime] = measure(targets[runtime], bodies, args.clients, args.seconds)
    print(f"{args.clients} clients x {args.seconds:.0f} s against {HOST} (1-row and 100-row "
          f"requests alternating), after 300 sequential 1-row requests; model: "
          f"{model.n_ensemble_}-member MultiTaskNet on abalone")
    print(f"{'':<26}" + "".join(f"{r:>14}" for r in runtimes))

    def line(label: str, values: list[str]) -> None:
        print(f"{label:<26}" + "".join(f"{v:>14}" for v in values))

    line("1-row p50 ms (alone)", [f"{results[r]['single_p50_ms']:.2f}" for r in runtimes])
    line("requests/s", [f"{results[r]['requests_s']:,.1f}" for r in runtimes])
    line("rows/s", [f"{results[r]['rows_s']:,.1f}" for r in runtimes])
    for size in (1, 100):
        line(f"{size}-row p50 / p99 ms", [f"{results[r]['p50_ms'].get(size, float('nan')):.1f} / "
                                          f"{results[r]['p99_ms'].get(size, float('nan')):.0f}"
                                          for r in runtimes])
    line("errors", [str(len(results[r]["errors"])) for r in runtimes])
    line("server RSS MiB (end)", [f"{results[r]['rss_end']:.0f}" for r in runtimes])
    if len(runtimes) == 2:
        t, o = results["torch"], results["onnx"]
        print(f"onnx / torch: 1-row p50 alone {o['single_p50_ms'] / t['single_p50_ms']:.2f} "
              f"(goal <= 0.5), under load {o['p50_ms'][1] / t['p50_ms'][1]:.2f}; rows/s "
              f"{o['rows_s'] / t['rows_s']:.2f}; RSS {o['rss_end'] / t['rss_end']:.2f} (goal <= 0.5)")


if __name__ == "__main__":
    main()
