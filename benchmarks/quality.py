"""Quality of every model on the public multi-task sets of ../shared/data (the quality issue).

Each set is fitted on fixed splits (benchmarks/datasets.py) by polyhead's models and by
references measured in the same run: one LightGBM per target, CatBoost (MultiRMSE where it
applies), RealMLP and TabM per target (pytabkit). Every fit is single-threaded, two fits run at
a time (``--jobs``), so fit times compare like with like. ``--device cuda`` fits the pytabkit
references on a GPU instead (their fit times are then left out of the report), and
``$POLYHEAD_BENCH_DATA`` points at the sets when they are not in ../shared/data.

A set's **error** is the mean over its tasks of: RMSE divided by the RMSE of predicting the
training mean (regression: so the mean of those is aRRMSE), 1 - AUC (binary; multilabel: 1 -
the mean AUC over labels) and 1 - accuracy (multiclass). Lower is better. The report gives each
model's error per set, its rank per set and mean rank, its error divided by per-target
LightGBM's (the normalised score), and its fit time divided by LightGBM's (geometric mean over
sets). It is printed and written to ``--out``/quality.md.

Model specs: ``net``, ``separate-net``, ``gbm``, ``forest``, ``linear``, ``lightgbm``,
``catboost``, ``realmlp``, ``tabm``; polyhead ones take parameters, e.g.
``net:n_ensemble=8,hidden=128,128`` or ``gbm:backend=lightgbm``. Results are cached per (set,
model, split) under ``--out`` (default benchmarks/results/quality, kept in git): a rerun fits only what is missing (``--rerun SPEC`` refits one).

    python benchmarks/quality.py [--sets enb,yeast] [--models net,lightgbm] [--jobs 2] [--no-fit]

``--sets validation`` runs the nine sets no default was ever chosen on (sf1, oes10, osales,
andro, medical, genbase, foodtruck, sider, clintox; kept under ``--out
benchmarks/results/validation``): whether the defaults carry over to data nobody tuned on.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
#: where results are kept, one small JSON per (set, model, split): tracked in git, so a later
#: session (or a reader) can report them again with ``--no-fit`` instead of refitting for hours
RESULTS = HERE / "results" / "quality"

DEFAULT_SETS = ["enb", "edm", "jura", "atp1d", "atp7d", "oes97", "scpf", "slump", "sf2",
                "yeast", "emotions", "scene", "enron", "flags",
                "student_performance", "wine_quality", "penguins", "adult", "tox21"]
DEFAULT_MODELS = ["net", "separate-net", "gbm", "forest", "lightgbm", "catboost", "realmlp", "tabm"]
POLYHEAD = {"net": "MultiTaskNet", "gbm": "MultiTaskGBM", "forest": "MultiTaskForest",
            "linear": "MultiTaskLinear", "separate-net": "Separate"}
SINGLE_THREAD = {"MultiTaskNet": {"n_threads": 1}, "MultiTaskGBM": {"n_jobs": 1},
                 "MultiTaskForest": {"n_jobs": 1}}


# -- models -----------------------------------------------------------------------------------
def make_model(spec: str, seed: int) -> Any:
    """A model from its spec (see the module docstring)."""
    from references import REFERENCES

    import polyhead
    from polyhead.cli import _accepts, _parse_value

    base, _, args = spec.partition(":")
    if base in REFERENCES:
        return REFERENCES[base](seed)
    cls = polyhead.MultiTaskNet if base == "separate-net" else getattr(polyhead, POLYHEAD[base])
    params: dict[str, Any] = {}
    for item in filter(None, _split_args(args)):
        key, _, value = item.partition("=")
        params[key.strip()] = _parse_value(value)
        if params[key.strip()] is None and _accepts(cls, key.strip(), value.strip().lower()):
            params[key.strip()] = value.strip().lower()  # numeric_embedding=none: a choice
    if base == "separate-net":
        inner = polyhead.MultiTaskNet(**{**SINGLE_THREAD["MultiTaskNet"], **params})
        return polyhead.Separate(inner, random_state=seed)
    for key in ("hidden", "head_hidden"):
        if key in params and not isinstance(params[key], tuple):
            params[key] = (params[key],)
    return cls(random_state=seed, **{**SINGLE_THREAD.get(cls.__name__, {}), **params})


def _split_args(text: str) -> list[str]:
    """``a=1,b=2,3,c=x`` -> ["a=1", "b=2,3", "c=x"]: a value may hold commas (a tuple)."""
    out: list[str] = []
    for part in text.split(","):
        if "=" in part or not out:
            out.append(part)
        else:
            out[-1] += "," + part
    return out


def fit_outputs(model: Any, data: Any, train: np.ndarray, test: np.ndarray) -> tuple[dict, float]:
    import warnings

    X_tr, y_tr = data.X.iloc[train], data.y.iloc[train]
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if hasattr(model, "outputs"):  # a reference
            model.fit(X_tr, y_tr, data.tasks)
            seconds = time.perf_counter() - start
            return model.outputs(data.X.iloc[test]), seconds
        model.set_params(tasks=data.tasks).fit(X_tr, y_tr)
        seconds = time.perf_counter() - start
        X_te = data.X.iloc[test]
        return model._predict_outputs(model._check_X(X_te, fit=False)), seconds


# -- scoring ----------------------------------------------------------------------------------
def task_errors(data: Any, train: np.ndarray, test: np.ndarray, outputs: dict) -> dict[str, float]:
    """Per task: RRMSE (regression), 1 - AUC (binary, multilabel), 1 - accuracy (multiclass)."""
    from sklearn.metrics import roc_auc_score

    from polyhead.tasks import fit_task

    y_tr, y_te = data.y.iloc[train], data.y.iloc[test]
    errors: dict[str, float] = {}
    for task in data.tasks:
        state = fit_task(task, y_tr)
        out = np.asarray(outputs[task.name], dtype=float)
        if state.kind == "regression":
            truth, base = state.values(y_te), np.nanmean(state.values(y_tr))
            keep = ~np.isnan(truth)
            rmse = math.sqrt(np.mean((out[keep] - truth[keep]) ** 2))
            errors[task.name] = rmse / math.sqrt(np.mean((base - truth[keep]) ** 2))
        elif state.kind == "multilabel":
            truth = state.values(y_te)
            aucs = []
            for j in range(truth.shape[1]):
                keep = ~np.isnan(truth[:, j])
                if len(np.unique(truth[keep, j])) == 2:
                    aucs.append(roc_auc_score(truth[keep, j], out[keep, j]))
            errors[task.name] = 1 - float(np.mean(aucs)) if aucs else math.nan
        else:
            codes = state.class_codes(state.column(y_te))
            keep = codes != -1
            if state.kind == "binary":
                positive = codes[keep] == 1
                errors[task.name] = (1 - roc_auc_score(positive, out[keep])
                                     if 0 < positive.sum() < len(positive) else math.nan)
            else:
                errors[task.name] = 1 - float((out[keep].argmax(axis=1) == codes[keep]).mean())
    return errors


# -- one job ------------------------------------------------------------------------------------
_DATA: dict[str, Any] = {}


def _worker_init() -> None:
    import logging
    import warnings

    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    for name in ("lightning", "pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    _warm_up()


def _warm_up() -> None:
    """One tiny default fit per worker before any timed one: imports, the scripted epoch's
    compilation and the first allocations (LightGBM's too) are paid here, not by the first
    sets fitted (edm's first two fits took 1.4 s, its others 0.3-0.4 s)."""
    import polyhead

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
    y = pd.DataFrame({"r": X.a + rng.normal(size=200), "c": (X.b > 0).astype(int)})
    tasks = [polyhead.Task("r", kind="regression"), polyhead.Task("c", kind="binary")]
    polyhead.MultiTaskNet(tasks=tasks, max_epochs=2, n_threads=1, random_state=0).fit(X, y)
    from references import REFERENCES

    with contextlib.suppress(ImportError):  # the reference's import, paid here too
        REFERENCES["lightgbm"](0).fit(X, y, tasks)


def run_one(set_name: str, spec: str, split: int, cache: str) -> dict[str, Any]:
    import datasets

    if set_name not in _DATA:
        _DATA[set_name] = datasets.load(set_name)
    data = _DATA[set_name]
    train, test = data.splits[split]
    model = make_model(spec, seed=split)
    outputs, seconds = fit_outputs(model, data, train, test)
    errors = task_errors(data, train, test, outputs)
    device = os.environ.get("POLYHEAD_BENCH_DEVICE", "cpu") if spec in REFERENCE_DEVICES else "cpu"
    result = {"set": set_name, "model": spec, "split": split, "fit_s": seconds, "device": device,
              "tasks": errors, "error": float(np.nanmean(list(errors.values())))}
    write_atomic(Path(cache), json.dumps(result))
    return result


def write_atomic(path: Path, text: str) -> None:
    """``text`` into ``path`` whole or not at all (a temporary beside it, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


#: the references that ``--device`` moves (pytabkit's); every other model fits on the CPU
REFERENCE_DEVICES = ("realmlp", "tabm")

#: bumped when a family's defaults change, so cached results of its specs are refitted
#: (net 2: presets, n_ensemble=8 and numeric="clipped" by default; gbm 3: refitted after the
#: early-stopping split kept every class in training; net 3: the scripted epoch of
#: polyhead/nn/fast_epoch.py, same arithmetic but other fit times; gbm 4: early_stopping="refit"
#: with a 20% split by default; realmlp and tabm 2: binary targets pick their epoch by
#: cross-entropy, as pytabkit recommends for AUC; net 4: numeric_embedding="auto", so
#: preset="best", keeps the embedding only when it wins beyond the validation noise; net 5 and
#: separate-net 4: the default preset is that choice, "best" adds best_epoch="auto", the
#: previous default is preset="balanced"; gbm 5: max_features=0.3 and n_iter_no_change=50;
#: net 6 and separate-net 5: patience=30; net 7: the default preset adds best_epoch="auto",
#: whose per-task epochs no longer extend training, "best" is the default with patience=50;
#: separate-net stays 5: one task per net, so its per-task epoch is the joint one, the same
#: predictions; net 8 and separate-net 6: numeric_embedding="auto" decides on one-member
#: probes at 1.5 standard errors, then trains the chosen inputs with every member; net 9:
#: preset="best" chooses on probes of all eight members, the full candidates, at one standard
#: error; the other presets' code paths are unchanged, so their version-8 results were copied
#: under version 9; net 10 and separate-net 7: piecewise-linear bins give a mass point, such as
#: the zeros of a zero-inflated amount, an edge of its own; "fast" and "balanced" embed nothing,
#: so their version-9 results were copied under version 10; forest 2: max_features and
#: min_samples_leaf "auto", 0.5 and 1 for the regressor forest, "sqrt" and 5 for the classifier;
#: net 11 and separate-net 8: n_bins="auto" for the default and "best", 8 bins up to 3,200 rows
#: and more beyond; only adult (64 bins) and wine_quality (10) have more than 3,200 training
#: rows and a column to embed (tox21's are 0/1 bits), so the other sets' version-10 (7)
#: results, and every set's "fast" and "balanced" ones, were copied under version 11 (8);
#: net 12 and separate-net 9: twins="auto" for the default and "best" (exact-twin recall); the
#: 11 sets without two equal encoded feature rows (enb, jura, atp1d, atp7d, oes97, slump, yeast,
#: emotions, flags, student_performance, penguins) cannot recall, so their version-11 (8)
#: results, and every set's "fast" and "balanced" ones, were copied under version 12 (9);
#: net 13 and separate-net 10: where n_bins="auto" grows the bins (more than 3,200 rows: adult,
#: wine_quality, tox21) the embedding choice probes 8 bins and the grown count; the other sets'
#: version-12 (9) results, and "fast" and "balanced", were copied under version 13 (10))
#: forest 3 and linear 2: shrinkage="auto" (regression outputs pulled toward their mean where
#: out-of-bag / cross-fitted rows say so); the sets without a regression task (yeast, emotions,
#: scene, enron, flags, tox21) cannot change and were copied from versions 2 and 1.
#: linear 3: alpha="auto" (the elastic net's strength by cross-fitted folds); the same six copied.
#: linear 4: C="auto" (the logistic regressions' penalty by cross-fitted folds); the nine sets
#: without a class task (enb, edm, jura, atp1d, atp7d, oes97, scpf, slump, sf2) copied
DEFAULTS_VERSION = {"net": 13, "separate-net": 10, "gbm": 5, "forest": 3, "linear": 4,
                    "realmlp": 2, "tabm": 2}


def set_names(text: str) -> list[str]:
    """``--sets``: names separated by commas; "validation" stands for the sets no default was
    chosen on (``datasets.VALIDATION``)."""
    import datasets

    names: list[str] = []
    for name in filter(None, (s.strip() for s in text.split(","))):
        names.extend(datasets.VALIDATION if name == "validation" else [name])
    return names


def cache_path(out: Path, set_name: str, spec: str, split: int) -> Path:
    version = DEFAULTS_VERSION.get(spec.partition(":")[0], 1)
    key = hashlib.sha1((spec if version == 1 else f"{spec}|v{version}").encode()).hexdigest()[:10]
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in spec)[:60]
    return out / "cache" / set_name / f"{safe}-{key}-{split}.json"


def _archived(out: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Per-set mean errors kept from an earlier run whose per-split results were lost
    (``archived.json`` under ``--out``: each with the date, commit and device it was measured
    on). They stand in for a (set, model) with no cached split, as one row without a fit time,
    and ``--rerun MODEL`` fits it instead."""
    path = out / "archived.json"
    if not path.exists():
        return {}
    archive = json.loads(path.read_text())
    devices = archive.get("devices", {})
    return {(r["set"], r["model"]): {**r, "split": "archived", "fit_s": math.nan,
                                     "device": devices.get(r["model"], "cpu")}
            for r in archive["results"]}


# -- report -------------------------------------------------------------------------------------
def report(results: pd.DataFrame, sets: list[str], models: list[str], reference: str) -> str:
    per_set = results.groupby(["set", "model"])["error"].mean().unstack("model")
    per_set = per_set.reindex(index=[s for s in sets if s in per_set.index],
                              columns=[m for m in models if m in per_set.columns])
    # fit times only of CPU fits: a GPU's (``--device``) do not compare with LightGBM's on a CPU
    device = results.get("device", pd.Series("cpu", index=results.index)).fillna("cpu")
    on_cpu = results[device == "cpu"]
    seconds = on_cpu.groupby(["set", "model"])["fit_s"].mean().unstack("model").reindex_like(per_set)
    ranks = per_set.rank(axis=1, method="average")
    lines = ["| set | " + " | ".join(per_set.columns) + " |",
             "|---|" + "---|" * len(per_set.columns)]
    for name, row in per_set.iterrows():
        best = row.min()
        cells = [(f"**{v:.4f}**" if v == best else f"{v:.4f}") if not math.isnan(v) else "-"
                 for v in row]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| **mean rank** | " + " | ".join(f"{ranks[c].mean():.2f}" for c in per_set.columns) + " |")
    if reference in per_set.columns:
        ratio = per_set.div(per_set[reference], axis=0)
        lines.append(f"| error / {reference} (geo. mean) | " + " | ".join(
            f"{math.exp(np.log(ratio[c]).mean()):.3f}" for c in per_set.columns) + " |")
        lines.append(f"| sets better than {reference} | " + " | ".join(
            f"{int((ratio[c] < 1).sum())}/{int(ratio[c].notna().sum())}" for c in per_set.columns) + " |")
        time_ratio = seconds.div(seconds[reference], axis=0)
        lines.append(f"| fit time / {reference} (geo. mean) | " + " | ".join(
            f"{math.exp(np.log(time_ratio[c]).mean()):.2f}" if time_ratio[c].notna().any()
            else ("GPU" if (device[results["model"] == c] == "cuda").any() else "-")
            for c in per_set.columns) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default=",".join(DEFAULT_SETS))
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS),
                        help="';'-separated model specs (a spec's parameters may hold commas)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--rerun", default="", help="';'-separated specs to refit")
    parser.add_argument("--splits", type=int, default=0, help="use only the first N splits (0: all)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--reference", default="lightgbm")
    parser.add_argument("--no-fit", action="store_true",
                        help="report only the cached results; list what is missing instead of fitting it")
    parser.add_argument("--device", default="cpu",
                        help="torch device of the pytabkit references (realmlp, tabm), e.g. cuda; "
                             "their fit times are then left out of the report")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the workers
    os.environ.setdefault("LITLOGGER_DISABLE", "1")
    os.environ["POLYHEAD_BENCH_DEVICE"] = args.device

    import datasets

    sep = ";" if ";" in args.models else ","
    models = [m.strip() for m in args.models.split(sep) if m.strip()]
    rerun = {m.strip() for m in args.rerun.split(";") if m.strip()}
    sets = set_names(args.sets)
    out = Path(args.out)
    archived = _archived(out)
    jobs, rows = [], []
    for name in sets:
        data = datasets.load(name)
        if data is None:
            print(f"skipping {name}: not available", flush=True)
            continue
        n_splits = len(data.splits) if not args.splits else min(args.splits, len(data.splits))
        for spec in models:
            if (name, spec) in archived and spec not in rerun and not any(
                    cache_path(out, name, spec, split).exists() for split in range(n_splits)):
                rows.append(archived[name, spec])  # a per-set mean kept from an earlier run
                continue
            for split in range(n_splits):
                path = cache_path(out, name, spec, split)
                if path.exists() and spec not in rerun:
                    rows.append(json.loads(path.read_text()))
                else:
                    jobs.append((name, spec, split, str(path)))
    if args.no_fit:
        for name, spec, split, _ in jobs:
            print(f"not cached: {name} {spec} split {split}", flush=True)
        jobs = []
    print(f"{len(rows)} results cached, {len(jobs)} fits to run with {args.jobs} workers", flush=True)
    start = time.perf_counter()
    if jobs:
        import multiprocessing as mp

        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn"),
                                 initializer=_worker_init) as pool:
            futures = {pool.submit(run_one, *job): job for job in jobs}
            for i, future in enumerate(as_completed(futures), 1):
                job = futures[future]
                try:
                    result = future.result()
                except Exception as exc:  # one failed fit must not lose the others
                    print(f"FAILED {job[:3]}: {type(exc).__name__}: {exc}", flush=True)
                    continue
                rows.append(result)
                print(f"[{i}/{len(jobs)}, {time.perf_counter() - start:.0f} s] {job[0]} {job[1]} "
                      f"split {job[2]}: error {result['error']:.4f}, {result['fit_s']:.1f} s", flush=True)
    if not rows:
        print("no results to report", flush=True)
        return
    results = pd.DataFrame(rows)
    table = report(results, sets, models, args.reference)
    header = (f"Quality benchmark: {len(set(results['set']))} sets, mean error per set over its "
              f"splits (lower is better; best in bold).\n\n")
    print("\n" + header + table)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "quality.md", header + table + "\n")
    write_atomic(out / "results.csv", results.to_csv(index=False))


if __name__ == "__main__":
    main()
