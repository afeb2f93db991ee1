"""``Calibrated``: temperature scaling of every class task's probabilities (Guo et al., 2017).

A model is fitted on part of the rows; on the held-out rows, each class task (each label of a
multilabel task) gets the temperature ``T`` that minimises its log loss, and its logits are
divided by ``T`` at prediction (``T > 1`` softens over-confident probabilities). Predicted
classes do not change (the order of the probabilities is kept); ``evaluate`` shows the
expected calibration error and the Brier score before (the wrapped model) and after.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone

from .. import _params as P
from ..exceptions import PolyheadError
from ..registry import register_estimator
from ..tasks import TaskSpec
from .base import MultiTaskMixin
from .composite import CompositeMixin
from .separate import per_task_template


def _log_loss(state: Any, y: pd.DataFrame, outputs: np.ndarray, label: int | None) -> float:
    metrics = state.metrics(y, outputs)
    if label is None:
        return float(metrics["log_loss"])
    truth = state.values(y)[:, label]
    keep = ~np.isnan(truth)
    p = np.clip(outputs[keep, label], 1e-12, 1 - 1e-12)
    t = truth[keep]
    return float(-(t * np.log(p) + (1 - t) * np.log(1 - p)).mean())


def _fit_temperatures(state: Any, y: pd.DataFrame, outputs: np.ndarray) -> list[float]:
    """The temperature(s) minimising the task's log loss on these rows."""
    from scipy.optimize import minimize_scalar

    n = state.n_temperatures()
    temps = [1.0] * n
    for j in range(n):
        label = j if n > 1 else None

        def loss(log_t: float, j: int = j, label: int | None = label) -> float:
            trial = list(temps)
            trial[j] = float(np.exp(log_t))
            return _log_loss(state, y, state.temper(outputs, np.asarray(trial if n > 1 else trial[0])), label)

        try:
            result = minimize_scalar(loss, bounds=(np.log(0.05), np.log(20.0)), method="bounded",
                                     options={"xatol": 1e-3})
            temps[j] = float(np.exp(result.x)) if np.isfinite(result.fun) else 1.0
        except (ValueError, FloatingPointError):  # no labels for it: leave it alone
            temps[j] = 1.0
    return temps


def fit_temperature(state: Any, y: pd.DataFrame, outputs: np.ndarray) -> list[float]:
    """The temperature(s) minimising the task's held-out log loss (one per multilabel label),
    kept only when they are confirmed out of sample: fitted on each half of the held-out rows,
    they must lower the log loss of the other half, and on all of them the expected
    calibration error. Otherwise T = 1 (an already calibrated model, or a T that few rows
    cannot pin down, would only add error)."""
    n = state.n_temperatures()
    ones = [1.0] * n
    temps = _fit_temperatures(state, y, outputs)
    if temps == ones:
        return temps

    def as_array(t: list[float]) -> np.ndarray:
        return np.asarray(t if n > 1 else t[0])

    halves = np.array_split(np.random.default_rng(0).permutation(len(y)), 2)
    for fit_rows, check_rows in (halves, halves[::-1]):
        half = _fit_temperatures(state, y.iloc[fit_rows], outputs[fit_rows])
        check_y, check_out = y.iloc[check_rows], outputs[check_rows]
        try:
            before = state.metrics(check_y, check_out)["log_loss"]
            after = state.metrics(check_y, state.temper(check_out, as_array(half)))["log_loss"]
        except (ValueError, KeyError):  # a half without labels of some class: no evidence
            return ones
        if not after < before:
            return ones
    if state.metrics(y, state.temper(outputs, as_array(temps)))["ece"] > state.metrics(y, outputs)["ece"]:
        return ones
    return temps


@register_estimator
class Calibrated(CompositeMixin, MultiTaskMixin, BaseEstimator):
    """Temperature-scaled class probabilities around any polyhead estimator.

    Parameters
    ----------
    estimator : polyhead estimator, default=None
        The model (None: ``MultiTaskNet()``), fitted on ``1 - calibration_fraction`` of the rows.
    tasks : as in :class:`~polyhead.MultiTaskNet`
    calibration_fraction : float, default=0.2
        Rows held out to fit the temperatures.
    random_state : int or None

    Attributes
    ----------
    temperatures_ : dict of str to list of float
        Per class task, its temperature (one per label for multilabel tasks).
    """

    _parameter_constraints: dict[str, list[Any]] = {
        "calibration_fraction": [P.Interval(float, 0, 1, "neither")],
        "random_state": [P.SEED],
    }

    def __init__(self, estimator: Any = None, tasks: TaskSpec = None, *,
                 calibration_fraction: float = 0.2, random_state: int | None = None) -> None:
        self.estimator = estimator
        self.tasks = tasks
        self.calibration_fraction = calibration_fraction
        self.random_state = random_state

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Calibrated:
        """Fit the model on most rows and the temperatures on the rest."""
        self._check_params()
        Xf, yf = self._prepare_fit(X, y, sample_weight)
        if not any(t.has_proba for t in self.task_states_):
            raise PolyheadError("Calibrated needs at least one task with probabilities "
                                "(binary, multiclass, multilabel, ordinal)")
        n = len(Xf)
        n_cal = round(n * self.calibration_fraction)
        if n_cal < 1 or n - n_cal < 2:
            raise PolyheadError(f"calibration_fraction={self.calibration_fraction} leaves no "
                                f"calibration or training rows out of {n}")
        perm = np.random.default_rng(self.random_state).permutation(n)
        train, cal = np.sort(perm[n_cal:]), np.sort(perm[:n_cal])
        model = clone(per_task_template(self.estimator, self.random_state)).set_params(
            tasks=[t.task for t in self.task_states_])
        kwargs = {} if sample_weight is None else {"sample_weight": (
            sample_weight.iloc[train] if isinstance(sample_weight, pd.DataFrame)
            else np.asarray(sample_weight)[train])}
        model.fit(Xf.iloc[train], yf.iloc[train], **kwargs)
        self.estimators_ = [model]
        outputs = model._predict_outputs(model._check_X(Xf.iloc[cal], fit=False))
        self.temperatures_ = {t.name: fit_temperature(t, yf.iloc[cal], outputs[t.name])
                              for t in self.task_states_ if t.has_proba}
        return self

    def _predict_outputs(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        model = self.estimators_[0]
        outputs = dict(model._predict_outputs(model._check_X(X, fit=False)))
        for t in self.task_states_:
            if t.name in self.temperatures_:
                temps = self.temperatures_[t.name]
                outputs[t.name] = t.temper(outputs[t.name], np.asarray(temps if len(temps) > 1 else temps[0]))
        return outputs

    def _extra_state(self) -> dict[str, Any]:
        return {"temperatures": self.temperatures_}

    @classmethod
    def _check_manifest(cls, manifest: dict[str, Any], states: list[Any], encoder: Any) -> None:
        from ..exceptions import ModelFileError
        from ..persistence import check_manifest

        subs = manifest.get("estimators")
        temps = manifest.get("temperatures")
        if not (isinstance(subs, list) and len(subs) == 1 and isinstance(subs[0], dict)):
            raise ModelFileError("invalid estimators: Calibrated wraps one model")
        check_manifest(subs[0])
        if not isinstance(temps, dict) or not all(
                isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                            and 0 < x < 1e6 for x in v) for v in temps.values()):
            raise ModelFileError("invalid temperatures")

    def _set_state(self, manifest: dict[str, Any], tensors: dict[str, np.ndarray],
                   files: dict[str, bytes] | None = None) -> None:
        super()._set_state(manifest, tensors, files)
        self.temperatures_ = {k: [float(x) for x in v] for k, v in manifest["temperatures"].items()}
