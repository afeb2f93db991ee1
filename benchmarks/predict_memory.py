"""Peak memory of `polyhead predict` streaming a large generated file.

Generates an abalone-shaped CSV of ``--rows`` rows (default 10 million) by resampling abalone
with noise, fits a small model on abalone, then runs ``polyhead predict`` on the big file in a
subprocess and reports its peak RSS next to what the whole table would take in memory (the
reference: loading the file with pandas would need at least that), and next to the peak RSS of
the same command on a file 100 times smaller, measured in the same run: streaming is bounded
when the big file's peak is about the small file's.

    python benchmarks/predict_memory.py [--rows 10000000] [--batch-size 100000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

import polyhead
from polyhead.demo import abalone_split


def generate(path: Path, rows: int, chunk: int = 1_000_000) -> int:
    df = polyhead.datasets.load_abalone().drop(columns="rings")
    rng = np.random.default_rng(0)
    numeric = df.columns[1:]
    writer = None
    in_memory = 0
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        sample = df.iloc[rng.integers(0, len(df), n)].reset_index(drop=True)
        sample[numeric] = sample[numeric] * rng.normal(1, 0.02, size=(n, len(numeric)))
        sample["sex"] = sample["sex"].astype(str)
        in_memory += int(sample.memory_usage(deep=True).sum())
        table = pa.Table.from_pandas(sample, preserve_index=False)
        if writer is None:
            writer = pacsv.CSVWriter(str(path), table.schema)
        writer.write_table(table)
    assert writer is not None
    writer.close()
    return in_memory


def predict_peak(exe: Path, model: Path, data: Path, out: Path, batch_size: int) -> tuple[int, float]:
    """Peak RSS (bytes) and seconds of one `polyhead predict` run, measured for that child."""
    start = time.perf_counter()
    proc = subprocess.Popen([str(exe), "predict", str(model), str(data), "-o", str(out),
                             "--proba", "--batch-size", str(batch_size)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        sys.exit(proc.stderr.read().decode() if proc.stderr else "predict failed")
    return usage.ru_maxrss * 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--batch-size", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        X_tr, _, y_tr, _ = abalone_split()
        polyhead.MultiTaskNet(tasks={"rings": "regression", "rings_class": "multiclass"},
                              random_state=0).fit(X_tr, y_tr).save(root / "model")
        t = time.perf_counter()
        frame_bytes = generate(root / "big.csv", args.rows)
        gen_s = time.perf_counter() - t
        file_bytes = (root / "big.csv").stat().st_size
        small_rows = max(1, args.rows // 100)
        generate(root / "small.csv", small_rows)
        exe = Path(sys.executable).parent / "polyhead"
        small_peak, _ = predict_peak(exe, root / "model", root / "small.csv",
                                     root / "small.parquet", args.batch_size)
        peak, seconds = predict_peak(exe, root / "model", root / "big.csv",
                                     root / "preds.parquet", args.batch_size)
        out_bytes = (root / "preds.parquet").stat().st_size
    mib = 1 / 2**20
    print(f"rows                         {args.rows:>14,}")
    print(f"CSV file size                {file_bytes * mib:>12,.0f} MiB  (generated in {gen_s:.0f} s)")
    print(f"table in memory (pandas)     {frame_bytes * mib:>12,.0f} MiB  (reference)")
    print(f"predict peak RSS             {peak * mib:>12,.0f} MiB  "
          f"= {peak / frame_bytes:.2f} x the in-memory table, {peak / file_bytes:.2f} x the file")
    print(f"predict peak RSS, {small_rows:,} rows {small_peak * mib:>8,.0f} MiB  (reference, same run): "
          f"big / small = {peak / small_peak:.2f}")
    print(f"predict wall time            {seconds:>12,.1f} s    "
          f"({args.rows / seconds:,.0f} rows/s incl. CSV parsing and Parquet writing)")
    print(f"predictions written          {out_bytes * mib:>12,.0f} MiB parquet (with --proba)")
    print(f"batch size                   {args.batch_size:>14,}  cpu count {os.cpu_count()}")


if __name__ == "__main__":
    main()
