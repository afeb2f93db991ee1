"""Did any row of the speed table get slower? The table's measures at an earlier commit and now,
measured in the same run.

The earlier commit (by default 904bfeb, the code behind the speed table of the first round) is
checked out into a temporary git worktree. Each measure runs in a fresh process per version,
the versions alternating (old, new, old, new, ...) so that drift of this shared machine hits
both alike; the table gives medians and the ratio now / then per row (time: below 1 is faster
now; throughput: above 1 is faster now). Since the default network became eight packed
members, "now" is measured twice: the default, and ``preset="fast"`` (one network, as the
default was then).

    python benchmarks/speed_vs.py [--rev 904bfeb] [--repeats 3] [--only tutorial,default,...]
"""

from __future__ import annotations

import argparse
import inspect
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TASKS = {"rings": "regression", "rings_class": "multiclass"}
TUTORIAL = dict(hidden=(20, 10), batch_size=32, max_epochs=150, lr=1e-3, weight_decay=0.0,
                early_stopping=False, validation_fraction=0.0)
MEASURES = ("tutorial", "default", "predict", "scaling", "ensemble", "compile")


def _net(polyhead: Any, extra: dict[str, Any], **params: Any) -> Any:
    """A MultiTaskNet of either version: parameters it does not know are left out."""
    known = inspect.signature(polyhead.MultiTaskNet).parameters
    return polyhead.MultiTaskNet(**{k: v for k, v in {**extra, **params}.items() if k in known})


def _split() -> Any:
    from polyhead.demo import abalone_split

    return abalone_split()


def m_tutorial(polyhead: Any, extra: dict[str, Any]) -> dict[str, float]:
    X_tr, X_te, y_tr, y_te = _split()
    _net(polyhead, extra, tasks=TASKS, **{**TUTORIAL, "max_epochs": 1}).fit(X_tr, y_tr)  # warm-up
    model = _net(polyhead, extra, tasks=TASKS, random_state=0, **TUTORIAL)
    start = time.perf_counter()
    model.fit(X_tr, y_tr)
    seconds = time.perf_counter() - start
    table = model.evaluate(X_te, y_te)
    return {"seconds": seconds, "mae": table.loc["rings", "mae"], "accuracy": table.loc["rings_class", "accuracy"]}


def m_default(polyhead: Any, extra: dict[str, Any]) -> dict[str, float]:
    X_tr, X_te, y_tr, y_te = _split()
    _net(polyhead, extra, tasks=TASKS, max_epochs=1).fit(X_tr, y_tr)  # warm-up
    model = _net(polyhead, extra, tasks=TASKS, random_state=0)
    start = time.perf_counter()
    model.fit(X_tr, y_tr)
    seconds = time.perf_counter() - start
    table = model.evaluate(X_te, y_te)
    return {"seconds": seconds, "mae": table.loc["rings", "mae"], "accuracy": table.loc["rings_class", "accuracy"]}


def m_predict(polyhead: Any, extra: dict[str, Any], rows: int = 1_000_000) -> dict[str, float]:
    import numpy as np
    import pandas as pd

    df = polyhead.datasets.load_abalone()
    X = df.drop(columns="rings")
    y = pd.DataFrame({"rings": df.rings, "rings_class": df.rings, "infant": (df.sex == "I")})
    model = _net(polyhead, extra, tasks={"rings": "regression", "rings_class": "multiclass",
                                         "infant": "binary"}, max_epochs=20, random_state=0).fit(X, y)
    one = X.iloc[[0]]
    for _ in range(50):
        model.predict(one)
    times = []
    for _ in range(2000):
        t = time.perf_counter()
        model.predict(one)
        times.append(time.perf_counter() - t)
    big = X.sample(rows, replace=True, random_state=0).reset_index(drop=True)
    model.predict(big.iloc[:1000])
    batch = []
    for _ in range(3):
        t = time.perf_counter()
        model.predict(big)
        batch.append(time.perf_counter() - t)
    return {"p50_ms": float(np.percentile(times, 50) * 1000), "rows_per_s": rows / statistics.median(batch),
            "peak_mib": _peak_mib()}


def _scaling(polyhead: Any, extra: dict[str, Any], rows: int) -> dict[str, float]:
    import numpy as np
    import pandas as pd

    _net(polyhead, extra, max_epochs=1).fit(np.zeros((64, 2)), np.arange(64.0))  # warm-up
    base = _peak_mib()
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(rows, 50)), columns=[f"f{i}" for i in range(50)])
    signal = X["f0"] + 0.5 * X["f1"] - X["f2"]
    y = pd.DataFrame({"amount": signal + rng.normal(size=rows), "flag": signal > 0,
                      "level": np.digitize(signal, [-1, 0, 1]), "t1": (X["f3"] > 0).astype(int),
                      "t2": (X["f4"] > 0).astype(int)})
    frame = (X.memory_usage().sum() + y.memory_usage().sum()) / 2**20
    tasks = [polyhead.Task("amount", kind="regression"), polyhead.Task("flag", kind="binary"),
             polyhead.Task("level", kind="multiclass"),
             polyhead.Task("tags", kind="multilabel", columns=("t1", "t2"))]
    model = _net(polyhead, extra, tasks=tasks, max_epochs=2, early_stopping=False, random_state=0)
    start = time.perf_counter()
    model.fit(X, y)
    return {"seconds": time.perf_counter() - start, "memory_x_frame": (_peak_mib() - base) / frame}


def m_scaling_100k(polyhead: Any, extra: dict[str, Any]) -> dict[str, float]:
    return _scaling(polyhead, extra, 100_000)


def m_scaling_1m(polyhead: Any, extra: dict[str, Any]) -> dict[str, float]:
    return _scaling(polyhead, extra, 1_000_000)


def _ensemble(polyhead: Any, extra: dict[str, Any], k: int) -> dict[str, float]:
    X_tr, _, y_tr, _ = _split()
    params = {**extra, "n_ensemble": k, "early_stopping": False}
    _net(polyhead, params, tasks=TASKS, max_epochs=1).fit(X_tr, y_tr)  # warm-up
    model = _net(polyhead, params, tasks=TASKS, max_epochs=60, random_state=0)
    start = time.perf_counter()
    model.fit(X_tr, y_tr)
    return {"seconds": time.perf_counter() - start}


def m_ensemble_1(polyhead: Any, extra: dict[str, Any]) -> dict[str, float]:
    return _ensemble(polyhead, extra, 1)


def m_ensemble_8(polyhead: Any, extra: dict[str, Any]) -> dict[str, float]:
    return _ensemble(polyhead, extra, 8)


def m_compile(polyhead: Any, extra: dict[str, Any]) -> dict[str, float]:
    X_tr, _, y_tr, _ = _split()
    out = {}
    for flag in (False, True):
        model = _net(polyhead, extra, tasks=TASKS, random_state=0, **{**TUTORIAL, "max_epochs": 3, "compile": flag})
        start = time.perf_counter()
        model.fit(X_tr, y_tr)
        total = time.perf_counter() - start
        steady = sum(r["seconds"] for r in model.history_[1:]) / (len(model.history_) - 1)
        out[flag] = (total, steady)
    return {"compile_s": out[True][0] - 3 * out[True][1], "compiled_epoch_ms": out[True][1] * 1000,
            "eager_epoch_ms": out[False][1] * 1000}


GROUPS = {"tutorial": ["tutorial"], "default": ["default"], "predict": ["predict"],
          "scaling": ["scaling_100k", "scaling_1m"], "ensemble": ["ensemble_1", "ensemble_8"],
          "compile": ["compile"]}
# how each figure compares: "time" (lower is better), "rate" (higher), "quality" (shown only)
SENSE = {"seconds": "time", "p50_ms": "time", "rows_per_s": "rate", "peak_mib": "time",
         "memory_x_frame": "time", "compile_s": "time", "compiled_epoch_ms": "time",
         "eager_epoch_ms": "time", "mae": "quality", "accuracy": "quality"}


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(measure: str, src: str, extra: str) -> None:
    sys.path.insert(0, src)
    import polyhead

    assert Path(polyhead.__file__).resolve().is_relative_to(Path(src).resolve()), polyhead.__file__
    print(json.dumps(globals()[f"m_{measure}"](polyhead, json.loads(extra))))


def _run(measure: str, src: Path, extra: dict[str, Any]) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", measure, "--src", str(src),
                          "--extra", json.dumps(extra)], capture_output=True, text=True, check=False)
    if out.returncode:
        raise SystemExit(f"{measure} at {src} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rev", default="904bfeb", help="the earlier commit (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default=",".join(MEASURES))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--extra", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.src, args.extra)
        return
    versions = {"then": None, "now (default)": {}, "now (preset=fast)": {"preset": "fast"}}
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(old), args.rev], check=True)
        try:
            results: dict[tuple[str, str], list[dict[str, float]]] = {}
            for group in args.only.split(","):
                for measure in GROUPS[group]:
                    for rep in range(args.repeats):
                        for name, extra in versions.items():
                            src = old / "src" if extra is None else ROOT / "src"
                            results.setdefault((measure, name), []).append(_run(measure, src, extra or {}))
                        print(f"  {measure} repeat {rep + 1} done", file=sys.stderr, flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], check=False)
    print(f"\nspeed table rows then ({args.rev}) and now, same run, medians of {args.repeats} fresh processes each\n")
    print("| measure | figure | then | now (default) | now / then | now (preset=fast) | fast / then |")
    print("|---|---|---|---|---|---|---|")
    measures = dict.fromkeys(m for m, _ in results)
    for measure in measures:
        for key in results[(measure, "then")][0]:
            med = {name: statistics.median(r[key] for r in results[(measure, name)]) for name in versions}
            sense = SENSE.get(key, "time")

            def ratio(now: float, then: float = med["then"], sense: str = sense) -> str:
                if sense == "quality" or not then:
                    return ""
                return f"{now / then:.2f}x"

            fmt = "{:,.0f}" if key == "rows_per_s" else "{:.3f}"
            print(f"| {measure} | {key} | {fmt.format(med['then'])} | {fmt.format(med['now (default)'])} | "
                  f"{ratio(med['now (default)'])} | {fmt.format(med['now (preset=fast)'])} | "
                  f"{ratio(med['now (preset=fast)'])} |")
    for version in versions:
        if ("ensemble_8", version) in results:
            k8 = statistics.median(r["seconds"] for r in results[("ensemble_8", version)])
            k1 = statistics.median(r["seconds"] for r in results[("ensemble_1", version)])
            print(f"\nensemble K=8 / K=1, {version}: {k8 / k1:.2f}x ({k8:.2f} vs {k1:.2f} s)", end="")
    print()


if __name__ == "__main__":
    main()
