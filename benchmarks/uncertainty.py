"""Conformal regions and temperature scaling on public sets, against MAPIE (the uncertainty issue).

For each set (its first split: train and test rows) and seed, a ``polyhead.Conformal`` wraps a
model fitted on 80% of the training rows and calibrates on the other 20%. MAPIE's per-target
split conformal (``SplitConformalRegressor`` / ``SplitConformalClassifier``, ``prefit=True``)
is calibrated on **the same rows around the same fitted model**, so the two differ only in
their conformity scores. Measured on the test rows, for alpha in {0.05, 0.1, 0.2}:

* per-task coverage (goal: within [1 - alpha - 0.02, 1 - alpha + 0.04]);
* joint coverage, all tasks of a row at once: per-task regions, and ``joint=True`` (goal:
  at least 1 - alpha - 0.02);
* mean interval width (regression; polyhead's normalised intervals and its plain absolute
  ones, which should equal MAPIE's) and mean set size (classes);
* ECE of every class task before and after temperature scaling (goal: never higher).

    python benchmarks/uncertainty.py [--seeds 3] [--sets enb,jura,...]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

ALPHAS = (0.05, 0.1, 0.2)
SETS = ["enb", "jura", "scpf", "sf2", "student_performance", "wine_quality", "penguins", "emotions", "yeast"]


class _TaskRegressor:
    """One task of a fitted polyhead model as a scikit-learn regressor (for MAPIE)."""

    _estimator_type = "regressor"

    def __init__(self, model: Any, task: str) -> None:
        self.model, self.task = model, task

    def fit(self, X: Any, y: Any) -> Any:  # prefit: never called
        return self

    def predict(self, X: Any) -> np.ndarray:
        return self.model._predict_outputs(self.model._check_X(X, fit=False))[self.task]

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import RegressorTags, Tags, TargetTags

        return Tags(estimator_type="regressor", target_tags=TargetTags(required=True),
                    regressor_tags=RegressorTags())


class _TaskClassifier(_TaskRegressor):
    _estimator_type = "classifier"

    def __init__(self, model: Any, state: Any) -> None:
        super().__init__(model, state.name)
        self.state = state
        self.classes_ = np.arange(len(state.classes))

    def predict_proba(self, X: Any) -> np.ndarray:
        return self.state.proba_array(super().predict(X))

    def predict(self, X: Any) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import ClassifierTags, Tags, TargetTags

        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                    classifier_tags=ClassifierTags())


def mapie_regions(conformal: Any, data: Any, train: np.ndarray, test: np.ndarray,
                  alpha: float) -> dict[str, tuple[float, float]]:
    """Per regression or class task: MAPIE's (coverage, mean width or set size) on the test rows."""
    from mapie.classification import SplitConformalClassifier
    from mapie.regression import SplitConformalRegressor

    model = conformal.estimators_[0]
    cal = train[conformal.calibration_rows_]
    X_cal, X_te = data.X.iloc[cal], data.X.iloc[test]
    out = {}
    for state in conformal.task_states_:
        if state.kind == "regression":
            y_cal = state.values(data.y.iloc[cal])
            keep = ~np.isnan(y_cal)
            mapie = SplitConformalRegressor(_TaskRegressor(model, state.name), confidence_level=1 - alpha,
                                            prefit=True)
            mapie.conformalize(X_cal[keep], y_cal[keep])
            _, bounds = mapie.predict_interval(X_te)
            lower, upper = bounds[:, 0, 0], bounds[:, 1, 0]
            truth = state.values(data.y.iloc[test])
            seen = ~np.isnan(truth)
            out[state.name] = (float(((truth >= lower) & (truth <= upper))[seen].mean()),
                               float((upper - lower)[seen].mean()))
        elif state.kind in ("binary", "multiclass"):
            codes = state.class_codes(state.column(data.y.iloc[cal]))
            keep = codes >= 0
            mapie = SplitConformalClassifier(_TaskClassifier(model, state), confidence_level=1 - alpha,
                                             prefit=True, conformity_score="lac")
            mapie.conformalize(X_cal[keep], codes[keep])
            _, sets = mapie.predict_set(X_te)
            sets = sets[:, :, 0]
            truth = state.class_codes(state.column(data.y.iloc[test]))
            seen = truth >= 0
            covered = sets[np.arange(len(truth)), np.maximum(truth, 0)]
            out[state.name] = (float(covered[seen].mean()), float(sets.sum(axis=1)[seen].mean()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sets", default=",".join(SETS))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import datasets

    import polyhead

    rows, eces = [], []
    for name in args.sets.split(","):
        data = datasets.load(name)
        if data is None:
            print(f"skipping {name}: not available")
            continue
        train, test = data.splits[0]
        for seed in range(args.seeds):
            base = polyhead.MultiTaskGBM(random_state=seed)
            net = polyhead.MultiTaskNet(n_ensemble=8, random_state=seed)
            arms = {"gbm, absolute (default)": (base, {}),
                    "gbm, residual model": (base, {"normalize": "residual"}),
                    "gbm, joint": (base, {"joint": True}),
                    "net ens-8, spread (default)": (net, {}),
                    "net ens-8, absolute": (net, {"normalize": "none"})}
            fitted = {label: polyhead.Conformal(model, tasks=data.tasks, alpha=0.1, random_state=seed,
                                                **kwargs).fit(data.X.iloc[train], data.y.iloc[train])
                      for label, (model, kwargs) in arms.items()}
            X_te, y_te = data.X.iloc[test], data.y.iloc[test]
            for alpha in ALPHAS:
                for label, model in fitted.items():
                    table = model.evaluate_intervals(X_te, y_te, alpha=alpha)
                    for task, row in table.iterrows():
                        kind = row["kind"] or "joint"
                        rows.append({"set": name, "seed": seed, "alpha": alpha, "method": f"polyhead {label}",
                                     "task": task, "kind": kind, "coverage": row["coverage"], "size": row["size"]})
                for around in ("gbm, absolute (default)", "net ens-8, spread (default)"):
                    family = around.split(",")[0]
                    for task, (coverage, size) in mapie_regions(fitted[around], data, train, test, alpha).items():
                        kind = next(s.kind for s in fitted[around].task_states_ if s.name == task)
                        rows.append({"set": name, "seed": seed, "alpha": alpha,
                                     "method": f"MAPIE split per target, {family}",
                                     "task": task, "kind": kind, "coverage": coverage, "size": size})
            if any(s.has_proba for s in fitted["gbm, absolute (default)"].task_states_):
                calibrated = polyhead.Calibrated(base, tasks=data.tasks, random_state=seed).fit(
                    data.X.iloc[train], data.y.iloc[train])
                before = calibrated.estimators_[0].evaluate(X_te, y_te)
                after = calibrated.evaluate(X_te, y_te)
                for task in calibrated.temperatures_:
                    eces.append({"set": name, "seed": seed, "task": task,
                                 "ece before": before.loc[task, "ece"], "ece after": after.loc[task, "ece"],
                                 "temperature": np.mean(calibrated.temperatures_[task])})
        print(f"{name} done", flush=True)
    frame = pd.DataFrame(rows)
    print("\n## Coverage per task (mean over seeds), goal within [1 - alpha - 0.02, 1 - alpha + 0.04]\n")
    per_task = frame[frame["task"] != "joint"].groupby(["alpha", "method", "kind"])[["coverage", "size"]].mean()
    print(per_task.round(4).to_markdown())
    print("\n## Coverage per task, worst task and set (mean over seeds)\n")
    worst = frame[frame["task"] != "joint"].groupby(["alpha", "method", "set", "task"])["coverage"].mean()
    print(worst.groupby(["alpha", "method"]).agg(["min", "max"]).round(4).to_markdown())
    print("\n## Joint coverage: every task of a row at once (goal for joint=True: >= 1 - alpha - 0.02)\n")
    joint = frame[frame["task"] == "joint"].groupby(["alpha", "method"])["coverage"].agg(["mean", "min"])
    print(joint.round(4).to_markdown())
    print("\n## Width of regression intervals relative to MAPIE's around the same model (same rows)\n")
    reg = frame[frame["kind"] == "regression"].groupby(["alpha", "method", "set", "task"])["size"].mean().unstack("method")
    ratios = {}
    for family in ("gbm", "net ens-8"):
        reference = reg[f"MAPIE split per target, {family}"]
        for column in reg.columns:
            if column.startswith(f"polyhead {family}"):
                ratios[column] = reg[column] / reference
    print(pd.DataFrame(ratios).groupby("alpha").mean().round(4).to_markdown())
    if eces:
        e = pd.DataFrame(eces).groupby(["set", "task"])[["ece before", "ece after", "temperature"]].mean()
        print("\n## ECE before and after temperature scaling (mean over seeds)\n")
        print(e.round(4).to_markdown())
        print(f"\nclass tasks whose ECE rose: {int((e['ece after'] > e['ece before'] + 1e-12).sum())} of {len(e)}")


if __name__ == "__main__":
    main()
