"""``MultiTaskLinear``: regression tasks fitted jointly (MultiTaskElasticNet), classification
tasks with logistic regression, on standardised and one-hot-encoded features."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _params as P
from ..kinds import Slot
from ..registry import register_estimator
from ..tasks import TaskSpec
from .sklearn_base import SklearnMultiTask, fit_params, groups_by_objective

#: folds of the cross-fitted predictions ``alpha="auto"`` and ``shrinkage="auto"`` measure
FOLDS = 5
#: strengths ``alpha="auto"`` tries
N_ALPHAS = 10
#: the strength of the count and quantile outputs under ``alpha="auto"`` (and the old default)
FIXED_ALPHA = 0.01
#: inverse strengths ``C="auto"`` tries for the logistic regressions, strongest penalty first
CS = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)


@register_estimator
class MultiTaskLinear(SklearnMultiTask):
    """Linear models under the multi-task API.

    Regression tasks are fitted together with scikit-learn's ``MultiTaskElasticNet`` on
    standardised targets: its L2,1 penalty selects the same features for every task (the
    MultiTaskLasso idea). When regression labels are missing unevenly across tasks (or sample
    weights differ per target), each task gets its own ``ElasticNet`` on its labelled rows
    instead. Class outputs (binary, multiclass, each label of a multilabel task, each "above
    class k" question of an ordinal task) get a ``LogisticRegression``, count tasks a
    ``PoissonRegressor`` and each quantile of a quantile task a ``QuantileRegressor``. Features are standardised and
    one-hot encoded inside (:class:`~polyhead.features.FeatureEncoder`).

    Parameters
    ----------
    tasks : as in :class:`~polyhead.MultiTaskNet`
    alpha : float or "auto", default="auto"
        Regularisation strength of the (multi-task) elastic net, on standardised targets. "auto"
        (the default): chosen among ``N_ALPHAS`` (10) strengths, from the smallest that zeroes
        every coefficient down to a thousandth of it, by the squared error of predictions
        cross-fitted on ``FOLDS`` (5) folds (the same folds ``shrinkage`` measures); ``alphas_``
        holds each regression output's strength. Count and quantile outputs then use 0.01. On
        ``benchmarks/quality.py``'s 13 sets with a regression task, "auto" against the old fixed
        0.01: 1.108 against 1.126 of per-target LightGBM's error, better on 8 sets (oes97 0.4213
        against 0.4643, atp7d 0.5623 against 0.5944, atp1d 0.4119 against 0.4412), worse on 4
        (scpf 0.9140 against 0.8898, edm 0.7843 against 0.7738), at 2.10x LightGBM's fit time
        against 0.66x.
    l1_ratio : float, default=0.5
    C : float or "auto", default="auto"
        Inverse regularisation of the logistic regressions. "auto" (the default): each class
        output's chosen among ``CS`` (0.001 to 100, by tens) by the log loss of predictions
        cross-fitted on ``FOLDS`` (5) folds. On ``benchmarks/quality.py``'s 10 sets with a class
        task, "auto" against the old fixed 1.0: 1.071 against 1.170 of per-target LightGBM's
        error, better on 7 sets (scene 0.0748 against 0.1173, tox21 0.2111 against 0.2743, enron
        0.2656 against 0.3096, yeast 0.3147 against 0.3332), worse on 3 (emotions 0.1817 against
        0.1754, penguins 0.1884 against 0.1874, flags by 0.0003), at 1.73x LightGBM's fit time
        against 0.23x.
    max_iter : int, default=2000
    random_state : int or None
        The shuffle of the cross-fitted folds (None: the same shuffle as 0, so a fit is
        deterministic).
    n_jobs : int or None
        Threads for BLAS, with scikit-learn's meaning; None follows polyhead's thread policy
        (:mod:`polyhead.parallel`).
    max_categories : int, default=64
        One-hot slots per categorical column; rarer categories share an "other" slot.
    shrinkage : {"auto", "none"}, default="auto"
        "auto": each regression output is pulled toward its training mean by the least-squares
        factor measured on predictions cross-fitted on ``FOLDS`` (5) folds, where that lowers
        their squared error beyond the noise (:mod:`polyhead.models.shrinkage`); ``shrinkage_``
        maps each shrunk output to its (factor, mean). An output the model cannot predict then
        scores like the mean instead of worse. "none": predictions as the fitted models make
        them.
    """

    _parameter_constraints: dict[str, list[Any]] = {
        "alpha": [P.options("auto"), P.Interval(float, 0, None)],
        "shrinkage": [P.options("auto", "none")],
        "l1_ratio": [P.Interval(float, 0, 1)],
        "C": [P.options("auto"), P.Interval(float, 0, None, "neither")],
        "max_iter": [P.Interval(int, 1, None)],
    }

    def __init__(self, tasks: TaskSpec = None, *, alpha: float | str = "auto", l1_ratio: float = 0.5,
                 C: float | str = "auto", max_iter: int = 2000, random_state: int | None = None,
                 n_jobs: int | None = None, max_categories: int = 64, shrinkage: str = "auto") -> None:
        self.tasks = tasks
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.C = C
        self.max_iter = max_iter
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.max_categories = max_categories
        self.shrinkage = shrinkage

    objectives = ("regression", "classification", "poisson", "quantile")

    def _groups(self, slots: list[Slot]) -> list[list[Slot]]:
        # regression outputs jointly (MultiTaskElasticNet); the others each on their own rows
        return groups_by_objective(slots, ("regression",))

    def _fit_group(self, group: list[Slot], F: np.ndarray, y: np.ndarray,
                   weight: np.ndarray | None) -> Any:
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import (
            ElasticNet,
            LogisticRegression,
            MultiTaskElasticNet,
            PoissonRegressor,
            QuantileRegressor,
        )

        objective = group[0].objective
        fixed = FIXED_ALPHA if self.alpha == "auto" else float(self.alpha)
        model: Any
        if objective == "regression":
            cls = MultiTaskElasticNet if y.ndim == 2 else ElasticNet
            model = cls(alpha=fixed, l1_ratio=self.l1_ratio, max_iter=self.max_iter,
                        random_state=self.random_state)
        elif objective == "classification":
            model = LogisticRegression(C=1.0 if self.C == "auto" else self.C, max_iter=self.max_iter,
                                       random_state=self.random_state)
        elif objective == "poisson":
            model = PoissonRegressor(alpha=fixed, max_iter=self.max_iter)
        else:
            model = QuantileRegressor(quantile=group[0].alpha, alpha=fixed, solver="highs")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if objective == "regression" and (self.alpha == "auto" or self.shrinkage == "auto"):
                alphas = self._alphas(F, y) if self.alpha == "auto" else [fixed]
                chosen, held = self._cross_fitted(model, F, y, weight, alphas)
                model.set_params(alpha=chosen)
                self._heldout = held
            elif objective == "classification" and self.C == "auto":
                model.set_params(C=self._choose_C(model, F, y, weight))
            return model.fit(F, y, **fit_params(model, weight))

    def _choose_C(self, model: Any, F: np.ndarray, y: np.ndarray, weight: np.ndarray | None) -> float:
        """``C="auto"``: the inverse strength in ``CS`` with the lowest log loss of predictions
        cross-fitted on ``FOLDS`` folds (a fold whose training rows hold one class is skipped;
        each fold walks ``CS`` from the strongest penalty, warm-started)."""
        from sklearn.base import clone

        if len(y) < 2 * FOLDS:
            return 1.0
        chunks = self._folds(len(y))
        losses = np.zeros(len(CS))
        w = np.ones(len(y)) if weight is None else weight
        for i, rows in enumerate(chunks):
            fit = np.concatenate(chunks[:i] + chunks[i + 1:])
            if len(np.unique(y[fit])) < 2:
                continue
            part = clone(model).set_params(warm_start=True)
            for j, C in enumerate(CS):
                part.set_params(C=C).fit(F[fit], y[fit], **fit_params(model, None if weight is None else weight[fit]))
                proba = part.predict_proba(F[rows])
                column = np.searchsorted(part.classes_, y[rows]).clip(0, len(part.classes_) - 1)
                seen = part.classes_[column] == y[rows]  # a class the fold's training lacked: 0
                picked = np.where(seen, proba[np.arange(len(rows)), column], 0.0)
                losses[j] -= float(np.sum(w[rows] * np.log(np.clip(picked, 1e-6, 1.0))))
        return float(CS[int(np.argmin(losses))])

    def _folds(self, n: int) -> list[np.ndarray]:
        """``FOLDS`` random folds of ``n`` rows, fixed by ``random_state`` (None: seed 0, so the
        linear model stays deterministic, as scikit-learn's ElasticNetCV is)."""
        rng = np.random.default_rng(0 if self.random_state is None else self.random_state)
        return np.array_split(rng.permutation(n), FOLDS)

    @property
    def alphas_(self) -> dict[str, float]:
        """The strength of each regression output's elastic net (chosen by ``alpha="auto"``)."""
        by_key = {s[0]: s for s in self.slots_}
        return {key: float(unit.alpha) for keys, unit in self.units_ for key in keys
                if by_key[key][2] == "regression" and hasattr(unit, "alpha")}

    def _alphas(self, F: np.ndarray, y: np.ndarray) -> list[float]:
        """``N_ALPHAS`` strengths from the smallest that zeroes every coefficient down to a
        thousandth of it (scikit-learn's ElasticNetCV grid, coarser), strongest first."""
        Y = y.reshape(len(y), -1)
        top = float(np.max(np.linalg.norm(F.T @ (Y - Y.mean(0)), axis=1))) / (len(y) * max(self.l1_ratio, 1e-3))
        top = top if np.isfinite(top) and top > 0 else 1.0
        return [float(a) for a in top * np.logspace(0, -3, N_ALPHAS)]

    def _cross_fitted(self, model: Any, F: np.ndarray, y: np.ndarray, weight: np.ndarray | None,
                      alphas: list[float]) -> tuple[float, tuple[np.ndarray, np.ndarray] | None]:
        """The strength in ``alphas`` with the lowest squared error over ``FOLDS`` cross-fitted
        folds, and every row's prediction by the copy of ``model`` (at that strength) fitted on
        the other folds (what ``shrinkage="auto"`` measures). Each fold walks the strengths from
        the strongest, each fit starting from the last one's coefficients. With fewer than two
        rows per fold: the one strength given, or ``FIXED_ALPHA`` when choosing, nothing held out."""
        from sklearn.base import clone

        if len(y) < 2 * FOLDS:
            return alphas[0] if len(alphas) == 1 else FIXED_ALPHA, None
        chunks = self._folds(len(y))
        pred = np.zeros((len(alphas), len(y), 1 if y.ndim == 1 else y.shape[1]))
        for i, rows in enumerate(chunks):
            fit = np.concatenate(chunks[:i] + chunks[i + 1:])
            part = clone(model).set_params(warm_start=True)
            for j, alpha in enumerate(alphas):
                part.set_params(alpha=alpha).fit(F[fit], y[fit], **fit_params(
                    model, None if weight is None else weight[fit]))
                pred[j, rows] = np.asarray(part.predict(F[rows])).reshape(len(rows), -1)
        w = np.ones(len(y)) if weight is None else weight
        errors = [float(np.average(((p - y.reshape(len(y), -1)) ** 2).sum(1), weights=w)) for p in pred]
        best = int(np.argmin(errors))
        return alphas[best], (np.arange(len(y)), pred[best])
