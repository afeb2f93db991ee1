"""Reference models for benchmarks/quality.py, each fitted one per target (one per label of a
multilabel task) unless it is natively multi-output, all single-threaded.

A reference is ``fit(X, y, tasks) -> self`` and ``outputs(X) -> {task: array}``, with polyhead's
output conventions (regression values, the positive class's probability, class probabilities in
the order of the task's fitted classes, a probability per label). Rows with a missing label are
left out of that target's fit, as polyhead's families do.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import pandas as pd

from polyhead import Task
from polyhead.tasks import fit_task


def _categorical(X: pd.DataFrame) -> pd.DataFrame:
    """Text columns as pandas categories (what LightGBM and pytabkit read natively)."""
    X = X.copy()
    for col in X.columns:
        if not pd.api.types.is_numeric_dtype(X[col].dtype):
            X[col] = X[col].astype(str).astype("category")
    return X


class PerTarget:
    """One single-output model per target; subclasses make the models."""

    name = "per-target"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def make(self, kind: str, n_classes: int) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def prepare(self, X: pd.DataFrame) -> Any:
        return _categorical(X)

    def fit(self, X: pd.DataFrame, y: pd.DataFrame, tasks: list[Task]) -> PerTarget:
        self.states = [fit_task(t, y) for t in tasks]
        self.categories = {c: X[c].astype(str).astype("category").cat.categories
                           for c in X.columns if not pd.api.types.is_numeric_dtype(X[c].dtype)}
        F = self.prepare(X)
        self.models: dict[str, Any] = {}
        for state in self.states:
            for key, target, kind, n_classes in self._targets(state, y):
                rows = np.flatnonzero(~np.isnan(target))
                values = target[rows]
                if kind != "regression" and len(np.unique(values)) < 2:
                    self.models[key] = ("constant", int(values[0]), n_classes)
                    continue
                model = self.make(kind, n_classes)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model.fit(F.iloc[rows] if hasattr(F, "iloc") else F[rows],
                              values.astype(int) if kind != "regression" else values)
                self.models[key] = model
        return self

    @staticmethod
    def _targets(state: Any, y: pd.DataFrame) -> list[tuple[str, np.ndarray, str, int]]:
        """(key, target with NaN for missing, kind, classes) per output of a task."""
        if state.kind == "regression":
            return [(state.name, state.values(y), "regression", 0)]
        if state.kind == "multilabel":
            values = state.values(y)
            return [(f"{state.name}[{j}]", values[:, j], "binary", 2) for j in range(values.shape[1])]
        codes = state.class_codes(state.column(y)).astype(float)
        codes[codes < 0] = np.nan
        return [(state.name, codes, "binary" if state.kind == "binary" else "multiclass",
                 len(state.classes))]

    def _predict(self, model: Any, F: Any, kind: str, n_classes: int) -> np.ndarray:
        if isinstance(model, tuple):
            out = np.zeros((len(F), model[2]))
            out[:, model[1]] = 1.0
            return out if kind != "regression" else out[:, 0]
        if kind == "regression":
            return np.asarray(model.predict(F), dtype=float).reshape(len(F))
        proba = np.asarray(model.predict_proba(F), dtype=float)
        full = np.zeros((len(F), n_classes))
        full[:, np.asarray(model.classes_, dtype=int)] = proba
        return full

    def outputs(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        F = self.prepare(X)
        out: dict[str, np.ndarray] = {}
        for state in self.states:
            if state.kind == "regression":
                out[state.name] = self._predict(self.models[state.name], F, "regression", 0)
            elif state.kind == "multilabel":
                out[state.name] = np.column_stack([
                    self._predict(self.models[f"{state.name}[{j}]"], F, "binary", 2)[:, 1]
                    for j in range(state.head_width)])
            elif state.kind == "binary":
                out[state.name] = self._predict(self.models[state.name], F, "binary", 2)[:, 1]
            else:
                out[state.name] = self._predict(self.models[state.name], F, "multiclass",
                                                len(state.classes))
        return out


class LightGBM(PerTarget):
    """Plain LightGBM with its defaults, one booster per target."""

    name = "lightgbm per target"

    def prepare(self, X: pd.DataFrame) -> Any:
        X = X.copy()
        for col, cats in self.categories.items():
            X[col] = pd.Categorical(X[col].astype(str), categories=cats)
        return X

    def make(self, kind: str, n_classes: int) -> Any:
        import lightgbm as lgb

        cls = lgb.LGBMRegressor if kind == "regression" else lgb.LGBMClassifier
        return cls(random_state=self.seed, n_jobs=1, verbose=-1)


class CatBoost(PerTarget):
    """CatBoost with its defaults: MultiRMSE when every task is regression with every label
    present, one model per target otherwise."""

    name = "catboost"

    def prepare(self, X: pd.DataFrame) -> Any:
        X = X.copy()
        for col in self.categories:
            X[col] = X[col].astype(str)
        return X

    def _cat_features(self) -> list[str]:
        return list(self.categories)

    def make(self, kind: str, n_classes: int) -> Any:
        import catboost as cb

        common = dict(random_seed=self.seed, thread_count=1, verbose=0,
                      cat_features=self._cat_features(), allow_writing_files=False)
        return cb.CatBoostRegressor(**common) if kind == "regression" else cb.CatBoostClassifier(**common)

    def fit(self, X: pd.DataFrame, y: pd.DataFrame, tasks: list[Task]) -> CatBoost:
        self.states = [fit_task(t, y) for t in tasks]
        joint = all(s.kind == "regression" for s in self.states) and len(self.states) > 1 \
            and not y[[s.task.source_columns[0] for s in self.states]].isna().any().any()
        if not joint:
            return super().fit(X, y, tasks)  # type: ignore[return-value]
        import catboost as cb

        self.categories = {c: None for c in X.columns if not pd.api.types.is_numeric_dtype(X[c].dtype)}
        self.joint = cb.CatBoostRegressor(loss_function="MultiRMSE", random_seed=self.seed,
                                          thread_count=1, verbose=0, allow_writing_files=False,
                                          cat_features=self._cat_features())
        self.joint.fit(self.prepare(X), np.column_stack([s.values(y) for s in self.states]))
        return self

    def outputs(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        if getattr(self, "joint", None) is None:
            return super().outputs(X)
        pred = np.asarray(self.joint.predict(self.prepare(X)), dtype=float)
        return {s.name: pred[:, j] for j, s in enumerate(self.states)}


class PyTabKit(PerTarget):
    """A pytabkit model with its tuned defaults (RealMLP-TD or TabM-D), one per target."""

    def __init__(self, model: str, seed: int = 0) -> None:
        super().__init__(seed)
        self.model = model
        self.name = {"realmlp": "RealMLP per target", "tabm": "TabM per target"}[model]

    def make(self, kind: str, n_classes: int) -> Any:
        import pytabkit

        prefix = {"realmlp": "RealMLP_TD", "tabm": "TabM_D"}[self.model]
        cls = getattr(pytabkit, f"{prefix}_{'Regressor' if kind == 'regression' else 'Classifier'}")
        # $POLYHEAD_BENCH_DEVICE (quality.py --device) fits them on a GPU: their fit times are
        # then not comparable with the CPU models' and the report leaves them out
        device = os.environ.get("POLYHEAD_BENCH_DEVICE", "cpu")
        extra: dict[str, Any] = {}
        if kind == "binary":
            # scored by AUC: pytabkit's docstring recommends picking the epoch by cross-entropy
            # (and RealMLP without label smoothing); its default, classification error, stops a
            # rare label at the first epoch (TabM's enron AUC was 0.51 with it)
            extra["val_metric_name"] = "cross_entropy"
            if self.model == "realmlp":
                extra["use_ls"] = False
        return cls(random_state=self.seed, n_threads=1, device=device, verbosity=0, **extra)


class Trivial(PerTarget):
    """The trivial predictor every family must beat: the training mean of each numeric
    target, the training class frequencies of each class target (AUC 0.5, the majority
    class's accuracy)."""

    name = "trivial"

    def make(self, kind: str, n_classes: int) -> Any:
        from sklearn.dummy import DummyClassifier, DummyRegressor

        return DummyRegressor() if kind == "regression" else DummyClassifier(strategy="prior")

    def prepare(self, X: pd.DataFrame) -> Any:
        return np.zeros((len(X), 1))


REFERENCES = {
    "trivial": lambda seed: Trivial(seed),
    "lightgbm": lambda seed: LightGBM(seed),
    "catboost": lambda seed: CatBoost(seed),
    "realmlp": lambda seed: PyTabKit("realmlp", seed),
    "tabm": lambda seed: PyTabKit("tabm", seed),
}
