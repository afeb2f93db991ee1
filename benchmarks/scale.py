"""Out-of-core and distributed training: throughput and peak memory against rows and processes.

Generates a synthetic Parquet directory (22 features: 18 numeric, 4 categorical; 3 tasks: two
regressions, one with 30% of its labels missing, and a binary task), files of 1M rows in row
groups of 128k, and a separate 200k-row test file. Then, each in its own process (peak RSS is
that process's, from ``wait4``; with ``--nproc 2`` the largest of the launcher and its ranks,
so the machine holds about that times the ranks):

* ``stream``: ``MultiTaskNet(preset="fast").fit(ParquetSource(dir))`` on 1 and 2 processes;
* ``memory``: the same network fitted on ``pd.read_parquet(dir)`` (the reference), up to
  ``--memory-up-to`` rows.

It prints seconds per epoch (reading and encoding included for streaming; the in-memory path
encodes once before its epochs), training rows per second, the statistics pass, peak RSS, and
the held-out score (mean of R² per regression and AUC for the binary task) so that 2 processes
can be compared with 1 on the same data.

    python benchmarks/scale.py [--rows 1000000,4000000,16000000] [--nproc 1,2] [--epochs 1]
                               [--memory-up-to 4000000] [--data /tmp/polyhead-scale]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

TASKS = {"y_a": "regression", "y_b": "regression", "y_c": "binary"}
FILE_ROWS = 1_000_000
ROW_GROUP = 131_072


def make_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 18)).astype(np.float64)
    X[:, 3] = np.exp(X[:, 3])  # a skewed column
    frame = pd.DataFrame(X, columns=[f"x{i:02d}" for i in range(18)])
    levels = [5, 12, 30, 50]
    cats = []
    for j, k in enumerate(levels):
        codes = rng.integers(0, k, size=n)
        cats.append(codes)
        frame[f"c{j}"] = pd.Series([f"v{c}" for c in range(k)], dtype=object).to_numpy()[codes]
    effect = (cats[0] - 2) * 0.3 + np.sin(cats[2])
    signal = X[:, 0] * 1.5 - X[:, 1] + 0.5 * X[:, 2] * X[:, 4] + np.log1p(X[:, 3]) + effect
    frame["y_a"] = signal + rng.normal(scale=0.5, size=n)
    y_b = 0.7 * signal + np.tanh(X[:, 5] * X[:, 6]) + rng.normal(scale=0.5, size=n)
    frame["y_b"] = np.where(rng.random(n) < 0.3, np.nan, y_b)
    frame["y_c"] = (signal + X[:, 7] + rng.normal(scale=1.0, size=n) > 0).astype(np.int64)
    return frame


def generate(folder: Path, rows: int) -> Path:
    """The directory for ``rows`` rows (made once, reused by later runs)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    target = folder / f"rows-{rows}"
    done = target / "_complete"
    if done.exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    for i, start in enumerate(range(0, rows, FILE_ROWS)):
        n = min(FILE_ROWS, rows - start)
        table = pa.Table.from_pandas(make_frame(n, seed=1000 + i), preserve_index=False)
        pq.write_table(table, target / f"part-{i:04d}.parquet", row_group_size=ROW_GROUP)
    done.write_text("ok")
    return target


def score(model, test: pd.DataFrame) -> float:
    from sklearn.metrics import r2_score, roc_auc_score

    pred = model.predict_frame(test.drop(columns=list(TASKS)), proba=True)
    parts = []
    for name, kind in TASKS.items():
        truth = test[name]
        keep = truth.notna().to_numpy()
        if kind == "regression":
            parts.append(r2_score(truth[keep], pred[name][keep]))
        else:
            parts.append(roc_auc_score(truth[keep], pred[f"{name}:1"][keep]))
    return float(np.mean(parts))


def run_one(mode: str, data: Path, test_path: Path, nproc: int, epochs: int) -> dict:
    """Inside the measured child process: one fit, its timings and its held-out score."""
    import polyhead
    from polyhead import distributed

    params = dict(tasks=TASKS, preset="fast", max_epochs=epochs, random_state=0, early_stopping=False)
    start = time.perf_counter()
    if mode == "memory":
        frame = pd.read_parquet(data)
        model = polyhead.MultiTaskNet(**params).fit(frame.drop(columns=list(TASKS)), frame[list(TASKS)])
        del frame
    else:
        out = data.parent / f"model-{data.name}-{nproc}"
        distributed.launch(nproc, _stream_fit, params, str(data), str(out))
        model = polyhead.load(out)
    seconds = time.perf_counter() - start
    epoch = float(np.mean([r["seconds"] for r in model.history_]))
    test = pd.read_parquet(test_path)
    return {"fit_s": seconds, "epoch_s": epoch, "score": score(model, test),
            "batch": int(getattr(model, "batch_size_", 0) or 0)}


def _stream_fit(params: dict, data: str, out: str) -> None:
    import polyhead
    from polyhead import distributed

    model = polyhead.MultiTaskNet(**params).fit(polyhead.ParquetSource(data))
    if distributed.rank() == 0:
        model.save(out, overwrite=True)
    distributed.barrier()


def _allreduce(n: int, path: str) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    t = torch.zeros(n)
    for _ in range(50):
        dist.all_reduce(t)
    start = time.perf_counter()
    for _ in range(500):
        dist.all_reduce(t)
    if dist.get_rank() == 0:
        Path(path).write_text(str((time.perf_counter() - start) * 2))


def allreduce_latency(parameters: int = 5_200) -> float:
    """Milliseconds of one gloo all-reduce of a small net's gradients between 2 local ranks."""
    import tempfile

    from polyhead import distributed

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "ms")
        distributed.launch(2, _allreduce, parameters, path)
        return float(Path(path).read_text())


def measure(mode: str, data: Path, test: Path, nproc: int, epochs: int) -> dict:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", mode, str(data), str(test),
                             str(nproc), str(epochs)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{mode} {data.name} nproc={nproc} failed:\n{err[-2000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"] = result.pop("maxrss_kb") / 1024
    result["wall_s"] = wall
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000000,4000000,16000000")
    parser.add_argument("--nproc", default="1,2")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--memory-up-to", type=int, default=4_000_000)
    parser.add_argument("--data", type=Path, default=Path("/tmp/polyhead-scale"))
    parser.add_argument("--latency-only", action="store_true", help="only the all-reduce latency")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "scale.json")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import resource

        mode, data, test, nproc, epochs = args.child
        result = run_one(mode, Path(data), Path(test), int(nproc), int(epochs))
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        result["maxrss_kb"] = max(own, kids)
        print(json.dumps(result))
        return
    if args.latency_only:
        print(f"gloo all-reduce of 5,200 float32 between 2 ranks here: {allreduce_latency():.2f} ms per step")
        return
    args.data.mkdir(parents=True, exist_ok=True)
    test = args.data / "test.parquet"
    if not test.exists():
        make_frame(200_000, seed=7).to_parquet(test, index=False)
    rows_list = [int(r) for r in args.rows.split(",")]
    procs = [int(p) for p in args.nproc.split(",")]
    lines = []
    for rows in rows_list:
        data = generate(args.data, rows)
        runs = [("stream", p) for p in procs]
        if rows <= args.memory_up_to:
            runs.insert(0, ("memory", 1))
        reference = None
        for mode, nproc in runs:
            r = measure(mode, data, test, nproc, args.epochs)
            train_rows = rows * 0.9
            r.update(mode=mode, rows=rows, nproc=nproc, rows_per_s=train_rows / r["epoch_s"])
            if mode == "memory":
                reference = r
            r["epoch_vs_memory"] = r["epoch_s"] / reference["epoch_s"] if reference else None
            lines.append(r)
            ratio = f"{r['epoch_vs_memory']:.2f}x" if r["epoch_vs_memory"] else "-"
            print(f"{rows:>10,} {mode:>6} nproc={nproc}  epoch {r['epoch_s']:7.1f} s ({ratio} memory)  "
                  f"{r['rows_per_s']:>9,.0f} rows/s  fit {r['fit_s']:6.1f} s  peak RSS "
                  f"{r['peak_rss_mb']:7.0f} MiB  held-out {r['score']:.4f}", flush=True)
    latency = allreduce_latency() if max(procs) > 1 else None
    if latency is not None:
        print(f"gloo all-reduce of 5,200 float32 between 2 ranks here: {latency:.2f} ms per step")
    out = args.out
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"epochs": args.epochs, "runs": lines, "allreduce_ms": latency}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
