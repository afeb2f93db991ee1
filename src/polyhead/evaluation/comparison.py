"""``compare``: separate models versus one joint model (and other families), measured properly.

Every model is fitted on the same folds (repeated K-fold, stratified on the first
classification task when there is one), so each fold gives a *paired* difference against the
baseline ("separate" models by default). Intervals use the Nadeau-Bengio corrected resampled
t-test, because cross-validation folds share training rows and the naive interval is too narrow.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from .. import conditions
from ..kinds import Kind, align_outputs

ProgressFn = Callable[[str, int, int, float, int, int], None]


#: the arms :func:`compare` runs when none are given (the README example's list)
DEFAULT_ARMS = ("separate nets", "joint net", "joint net (uncertainty)", "forest", "gbm", "linear")


def catalogue(random_state: int | None = 0) -> dict[str, Any]:
    """Every arm ``compare`` knows by name: the defaults, and the net's presets and
    multi-task remedies (``polyhead compare --models``)."""
    from ..models.forest import MultiTaskForest
    from ..models.gbm import MultiTaskGBM
    from ..models.linear import MultiTaskLinear
    from ..models.net import MultiTaskNet
    from ..models.separate import Separate

    return {
        "separate nets": Separate(MultiTaskNet(), random_state=random_state),
        "joint net": MultiTaskNet(random_state=random_state),
        "joint net (uncertainty)": MultiTaskNet(weighting="uncertainty", random_state=random_state),
        "forest": MultiTaskForest(random_state=random_state),
        "gbm": MultiTaskGBM(random_state=random_state),
        "linear": MultiTaskLinear(random_state=random_state),
        "joint net (fast)": MultiTaskNet(preset="fast", random_state=random_state),
        "joint net (balanced)": MultiTaskNet(preset="balanced", random_state=random_state),
        "joint net (best)": MultiTaskNet(preset="best", random_state=random_state),
        "joint net (famo)": MultiTaskNet(weighting="famo", random_state=random_state),
        "joint net (mmoe)": MultiTaskNet(experts=4, random_state=random_state),
    }


def default_models(random_state: int | None = 0) -> dict[str, Any]:
    """Separate nets, joint net, joint net with uncertainty weighting, forest, gbm, linear."""
    arms = catalogue(random_state)
    return {name: arms[name] for name in DEFAULT_ARMS}


def consistency_pairs(states: list[Kind], y: pd.DataFrame) -> list[tuple[Kind, Kind]]:
    """(number, class) task pairs over the same quantity: a task predicting a number (regression,
    count) and a class task with numeric classes (multiclass, ordinal) that read the same column,
    or two columns with equal values (``rings`` and a copy ``rings_class``)."""
    pairs = []
    for reg in states:
        if not reg.point_value:
            continue
        for cls in states:
            if cls.classes is None or cls.classes.dtype.kind not in "iuf" or cls is reg:
                continue
            a, b = reg.task.source_columns[0], cls.task.source_columns[0]
            same = a == b or bool(pd.to_numeric(y[a], errors="coerce").fillna(-1e300).equals(
                pd.to_numeric(y[b], errors="coerce").fillna(-1e300)))
            if same:
                pairs.append((reg, cls))
    return pairs


def consistency(reg: np.ndarray, cls: np.ndarray) -> dict[str, float]:
    """How often a class prediction agrees with the rounded numeric prediction."""
    gap = np.abs(np.asarray(cls, dtype=float) - np.round(reg))
    return {"agree_exact": float((gap == 0).mean()), "agree_within_1": float((gap <= 1).mean())}


@dataclass
class Comparison:
    """The results of :func:`compare`.

    Attributes
    ----------
    results : DataFrame
        Tidy: one row per model, task, metric, repeat and fold, with ``value`` and the model's
        ``fit_seconds`` on that fold.
    baseline : str
        The model every other is compared with.
    predictions : dict
        Out-of-fold predictions of every model in the first repeat, for plots.
    outputs : dict
        Out-of-fold outputs (conditions applied) of every model in the first repeat, per task,
        with ``"__rows__"``: the row positions they belong to.
    intervals : DataFrame
        For conformal models: coverage and size per model, task (and "joint"), alpha, repeat
        and fold, at the model's own alpha and at ``INTERVAL_ALPHAS``.
    histories : dict
        Training histories (first fold) of models that keep one.
    data : dict
        Rows, features, tasks and missing labels per task.
    folds : list of (repeat, fold, test row positions)
        The folds every model was fitted on.
    """

    results: pd.DataFrame
    baseline: str
    tasks: list[Kind]
    y: pd.DataFrame
    predictions: dict[str, pd.DataFrame] = field(default_factory=dict)
    outputs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    intervals: pd.DataFrame = field(default_factory=pd.DataFrame)
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    architectures: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    folds: list[tuple[int, int, np.ndarray]] = field(default_factory=list)

    def summary(self) -> pd.DataFrame:
        """Mean ± std per model, task and metric, and each model's paired difference from the
        baseline with a 95% interval (corrected resampled t-test over the folds).

        ``better`` is True/False when the interval excludes 0 in the metric's good/bad
        direction, and NaN when it does not (no detectable difference).
        """
        from scipy import stats

        r = self.results
        keys = ["model", "task", "metric"]
        agg = r.groupby(keys, sort=False)["value"].agg(["mean", "std", "count"]).reset_index()
        base = r[r["model"] == self.baseline].set_index(["task", "metric", "repeat", "fold"])["value"]
        rows = []
        n_test = self.settings.get("n_test", 1)
        n_train = self.settings.get("n_train", 1)
        for _, row in agg.iterrows():
            cell = r[(r["model"] == row["model"]) & (r["task"] == row["task"]) & (r["metric"] == row["metric"])]
            joined = cell.set_index(["task", "metric", "repeat", "fold"])["value"]
            diffs = (joined - base.reindex(joined.index)).dropna().to_numpy()
            out = dict(row)
            j = len(diffs)
            t = stats.t.ppf(0.975, j - 1) if j > 1 else math.nan
            sd = float(np.std(cell["value"], ddof=1)) if len(cell) > 1 else math.nan
            out["ci_low"] = out["mean"] - t * sd * math.sqrt(1 / j + n_test / n_train) if j > 1 else math.nan
            out["ci_high"] = out["mean"] + t * sd * math.sqrt(1 / j + n_test / n_train) if j > 1 else math.nan
            if row["model"] == self.baseline or j < 2:
                out.update(diff=0.0 if row["model"] == self.baseline else math.nan,
                           diff_low=math.nan, diff_high=math.nan, better=math.nan)
            else:
                mean = float(diffs.mean())
                half = t * float(diffs.std(ddof=1)) * math.sqrt(1 / j + n_test / n_train)
                lower_better = self.lower_is_better(row["task"], row["metric"])
                better: Any = math.nan
                if mean - half > 0:
                    better = not lower_better
                elif mean + half < 0:
                    better = lower_better
                out.update(diff=mean, diff_low=mean - half, diff_high=mean + half, better=better)
            rows.append(out)
        table = pd.DataFrame(rows)
        table["count"] = table["count"].astype(int)
        return table

    def lower_is_better(self, task: str, metric: str) -> bool:
        """Whether a smaller value of ``metric`` of ``task`` is better (each kind says)."""
        state = next((t for t in self.tasks if t.name == task), None)
        if state is not None and metric in state.directions:
            return state.directions[metric] == "min"
        # per-quantile pinball losses are lower-better; agreement metrics higher-better
        return metric.startswith("pinball")

    def fit_seconds(self) -> pd.DataFrame:
        """Mean fit seconds per model (per fold)."""
        per_fold = self.results.drop_duplicates(["model", "repeat", "fold"])
        return per_fold.groupby("model", sort=False)["fit_seconds"].agg(["mean", "std"])

    def best_model(self) -> str:
        """The model with the best mean rank across tasks on each task's main metric."""
        summary = self.summary()
        ranks = []
        for t in self.tasks:
            metric = t.main_metric
            cell = summary[(summary["task"] == t.name) & (summary["metric"] == metric)]
            ascending = self.lower_is_better(t.name, metric)
            ranks.append(cell.set_index("model")["mean"].rank(ascending=ascending))
        return str(pd.concat(ranks, axis=1).mean(axis=1).idxmin())

    def to_markdown(self, metrics: str = "main") -> str:
        """The summary as a Markdown table (main metric per task, or ``metrics="all"``)."""
        table = self._display_table(metrics)
        header = "| " + " | ".join(table.columns) + " |"
        rule = "|" + "|".join("---" for _ in table.columns) + "|"
        lines = [header, rule] + ["| " + " | ".join(str(v) for v in row) + " |"
                                  for row in table.itertuples(index=False)]
        return "\n".join(lines)

    def _display_table(self, metrics: str = "main") -> pd.DataFrame:
        summary = self.summary()
        if metrics == "main":
            mains = {t.name: t.main_metric for t in self.tasks}
            keep = summary.apply(lambda r: mains.get(r["task"]) == r["metric"]
                                 or r["metric"].startswith("agree"), axis=1)
            summary = summary[keep]
        rows = []
        for _, r in summary.iterrows():
            diff = "baseline" if r["model"] == self.baseline else (
                "-" if pd.isna(r["diff"]) else
                f"{r['diff']:+.4f} [{r['diff_low']:+.4f}, {r['diff_high']:+.4f}]"
                + {True: " better", False: " worse", "": ""}[_flag(r["better"])])
            rows.append({"task": r["task"], "metric": r["metric"], "model": r["model"],
                         "mean ± std": f"{r['mean']:.4f} ± {0 if pd.isna(r['std']) else r['std']:.4f}",
                         f"vs {self.baseline} (95% CI)": diff})
        return pd.DataFrame(rows)

    def to_html(self, path: str | None = None, *, overwrite: bool = False) -> str:
        """A self-contained HTML report (figures embedded); written to ``path`` if given.

        An existing file is replaced only with ``overwrite=True`` (never a directory); the file
        is written under a temporary name and renamed into place.
        """
        target = None
        if path is not None:  # checked before the figures are drawn
            from ..io import check_output

            target = check_output(path, force=overwrite, option="overwrite=True",
                                  suffixes=(".html", ".htm"))
        from .report import render

        html = render(self)
        if target is not None:
            from ..io import atomic_file

            with atomic_file(target) as tmp:
                tmp.write_text(html, encoding="utf-8")
        return html


INTERVAL_ALPHAS = (0.05, 0.1, 0.2, 0.3)


def _flag(value: Any) -> Any:
    """A summary's ``better`` cell as True/False, or "" when it is NaN (no difference)."""
    return value if isinstance(value, bool) else ""


def _strata(states: list[Kind], y: pd.DataFrame) -> np.ndarray | None:
    """Fold strata: the first task with classes (a missing label is a stratum of its own)."""
    for t in states:
        if t.classes is not None:
            codes = t.class_codes(t.column(y))  # type: ignore[attr-defined]
            return np.where(codes < 0, -1, codes)
    return None


def _fit_one(job: tuple[str, Any, int, int, np.ndarray, np.ndarray], resolved: list[Any],
             states: list[Kind], pairs: list[Any]) -> dict[str, Any]:
    """One (model, repeat, fold) fit and everything compare keeps of it, single-threaded (so
    results are the same however many run at once)."""
    from ..parallel import single_threaded

    name, template, repeat, fold, train, test = job
    Xr, yr = _DATA["X"], _DATA["y"]
    out: dict[str, Any] = {"name": name, "repeat": repeat, "fold": fold, "rows": [],
                           "intervals": [], "test": test}
    with single_threaded(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = clone(template).set_params(tasks=resolved)
        start = time.perf_counter()
        model.fit(Xr.iloc[train], yr.iloc[train])
        seconds = time.perf_counter() - start
        raw = model._predict_outputs(model._check_X(Xr.iloc[test], fit=False))
        outputs = conditions.apply(model.task_states_, raw)
        y_test = yr.iloc[test]
        for t in model.task_states_:
            for metric, value in t.metrics(y_test, outputs[t.name]).items():
                if metric != "n":
                    out["rows"].append({"model": name, "task": t.name, "metric": metric,
                                        "repeat": repeat, "fold": fold, "value": value,
                                        "fit_seconds": seconds})
        if hasattr(model, "evaluate_intervals"):
            for a in sorted({*INTERVAL_ALPHAS, float(model.alpha)}):
                table = model.evaluate_intervals(Xr.iloc[test], y_test, alpha=a)
                for task, row in table.iterrows():
                    out["intervals"].append({"model": name, "task": task, "alpha": a,
                                             "repeat": repeat, "fold": fold,
                                             "coverage": row["coverage"], "size": row["size"],
                                             "fitted_alpha": float(model.alpha)})
        fitted = {t.name: t for t in model.task_states_}
        for reg, cls in pairs:
            agree = consistency(outputs[reg.name], fitted[cls.name].predict(outputs[cls.name]))
            for metric, value in agree.items():
                out["rows"].append({"model": name, "task": f"{reg.name} ~ {cls.name}",
                                    "metric": metric, "repeat": repeat, "fold": fold,
                                    "value": value, "fit_seconds": seconds})
        if repeat == 0:
            frame = model.predict_frame(Xr.iloc[test])
            frame.index = test
            out["prediction"] = frame
            out["outputs"] = {t.name: align_outputs(outputs[t.name], t, full)
                              for t, full in zip(model.task_states_, states, strict=True)}
            if fold == 0:
                out["history"] = list(getattr(model, "history_", None) or [])
                if hasattr(model, "module_"):
                    out["architecture"] = model._get_state()[0]["architecture"]
    out["seconds"] = seconds
    return out


_DATA: dict[str, Any] = {}


def _init_worker(X: pd.DataFrame, y: pd.DataFrame) -> None:
    """A worker process: the data once, and one thread for everything it runs."""
    import os

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    _DATA.update(X=X, y=y)


def _run_one(job: Any, resolved: list[Any], states: list[Kind], pairs: list[Any]) -> dict[str, Any]:
    return _fit_one(job, resolved, states, pairs)


def compare(X: Any, y: Any, tasks: Any = None, models: Mapping[str, Any] | None = None, *,
            cv: int = 5, repeats: int = 2, random_state: int = 0, baseline: str | None = None,
            n_jobs: int | None = None, progress: ProgressFn | None = None) -> Comparison:
    """Fit every model on the same repeated K folds and collect per-task metrics.

    Parameters
    ----------
    X, y : features and targets, as for any polyhead estimator.
    tasks : the tasks (as ``tasks=`` of the estimators); every model is fitted with them.
    models : dict of name -> estimator, optional
        Default: :func:`default_models`. Each is cloned per fold with ``tasks`` set.
    cv, repeats : folds and repetitions (different shuffles) of the cross-validation.
    random_state : seeds the folds.
    baseline : name of the model to compare against; default the first whose name contains
        "separate", else the first model.
    n_jobs : int or None
        (model, fold) fits run in this many processes at once (scikit-learn's meaning: -1 all
        CPUs this process may use). Every fit is single-threaded, however many run, so the
        results are the same for any ``n_jobs``.
    progress : callable(model, repeat, fold, seconds, done, total), called as each fit ends.

    Returns
    -------
    Comparison
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    from ..models.separate import Separate
    from ..parallel import resolve_n_jobs

    models = dict(models) if models is not None else default_models(random_state)
    if not models:
        raise ValueError("compare needs at least one model")
    if cv < 2 or repeats < 1:
        raise ValueError(f"cv must be >= 2 and repeats >= 1, got cv={cv}, repeats={repeats}")
    helper = Separate(tasks=tasks)
    Xf, yf = helper._prepare_fit(X, y)
    if cv > len(Xf):
        raise ValueError(f"cv={cv} folds need at least {cv} rows, got {len(Xf)}")
    states = helper.task_states_
    resolved = [t.task for t in states]
    if baseline is None:
        baseline = next((m for m in models if "separate" in m.lower()), next(iter(models)))
    if baseline not in models:
        raise ValueError(f"baseline {baseline!r} is not one of the models: {', '.join(models)}")
    strata = _strata(states, yf)
    pairs = consistency_pairs(states, yf)
    Xr, yr = Xf.reset_index(drop=True), yf.reset_index(drop=True)
    fold_log: list[tuple[int, int, np.ndarray]] = []
    jobs: list[tuple[str, Any, int, int, np.ndarray, np.ndarray]] = []
    for repeat in range(repeats):
        seed = random_state + repeat
        if strata is not None:
            splitter: Any = StratifiedKFold(cv, shuffle=True, random_state=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # classes rarer than cv folds only warn
                folds = list(splitter.split(Xr, strata))
        else:
            folds = list(KFold(cv, shuffle=True, random_state=seed).split(Xr))
        for fold, (train, test) in enumerate(folds):
            fold_log.append((repeat, fold, test))
            jobs.extend((name, template, repeat, fold, train, test) for name, template in models.items())
    workers = resolve_n_jobs(n_jobs)
    results = []

    def report(result: dict[str, Any]) -> None:
        results.append(result)
        if progress is not None:
            progress(result["name"], result["repeat"], result["fold"], result["seconds"],
                     len(results), len(jobs))

    if workers <= 1:
        if any("MultiTaskNet" in repr(m) for m in models.values()):
            from .. import nn  # noqa: F401  (import torch now, not inside the first timed fit)
        _DATA.update(X=Xr, y=yr)
        try:
            for job in jobs:
                report(_fit_one(job, resolved, states, pairs))
        finally:
            _DATA.clear()
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        init: Any = _init_worker
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=mp.get_context("spawn"),
                                 initializer=init, initargs=(Xr, yr)) as pool:
            futures = [pool.submit(_run_one, job, resolved, states, pairs) for job in jobs]
            for future in as_completed(futures):
                report(future.result())
    results.sort(key=lambda r: (r["repeat"], r["fold"], list(models).index(r["name"])))
    rows = [row for r in results for row in r["rows"]]
    interval_rows = [row for r in results for row in r["intervals"]]
    predictions: dict[str, list[pd.DataFrame]] = {name: [] for name in models}
    oof: dict[str, dict[str, list[np.ndarray]]] = {name: {} for name in models}
    histories: dict[str, list[dict[str, Any]]] = {}
    architectures: dict[str, dict[str, Any]] = {}
    for r in results:
        if "prediction" not in r:
            continue
        name = r["name"]
        predictions[name].append(r["prediction"])
        oof[name].setdefault("__rows__", []).append(np.asarray(r["test"]))
        for task, values in r["outputs"].items():
            oof[name].setdefault(task, []).append(values)
        if r.get("history"):
            histories[name] = r["history"]
        if "architecture" in r:
            architectures[name] = r["architecture"]
    n_test = len(Xr) / cv
    missing = {t.name: int(yf[list(t.task.source_columns)].isna().all(axis=1).sum()) for t in states}
    data = {"rows": len(Xf), "features": Xf.shape[1], "feature_names": list(Xf.columns),
            "tasks": [{"name": t.name, "kind": t.kind, "columns": list(t.task.source_columns),
                       "classes": None if t.classes is None else len(t.classes),
                       "missing_labels": missing[t.name]} for t in states]}
    return Comparison(
        results=pd.DataFrame(rows), baseline=baseline, tasks=states, y=yr,
        predictions={k: pd.concat(v).sort_index() for k, v in predictions.items() if v},
        outputs={k: {task: np.concatenate(parts) for task, parts in v.items()}
                 for k, v in oof.items() if v},
        intervals=pd.DataFrame(interval_rows),
        histories=histories, architectures=architectures, data=data, folds=fold_log,
        settings={"cv": cv, "repeats": repeats, "random_state": random_state,
                  "n_test": n_test, "n_train": len(Xr) - n_test, "models": list(models),
                  "n_jobs": workers})
