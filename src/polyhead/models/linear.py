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

#: folds of the cross-fitted predictions ``shrinkage="auto"`` measures
FOLDS = 5


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
    alpha : float, default=0.01
        Regularisation strength of the (multi-task) elastic net, on standardised targets.
    l1_ratio : float, default=0.5
    C : float, default=1.0
        Inverse regularisation of the logistic regressions.
    max_iter : int, default=2000
    random_state : int or None
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
        "alpha": [P.Interval(float, 0, None)],
        "shrinkage": [P.options("auto", "none")],
        "l1_ratio": [P.Interval(float, 0, 1)],
        "C": [P.Interval(float, 0, None, "neither")],
        "max_iter": [P.Interval(int, 1, None)],
    }

    def __init__(self, tasks: TaskSpec = None, *, alpha: float = 0.01, l1_ratio: float = 0.5,
                 C: float = 1.0, max_iter: int = 2000, random_state: int | None = None,
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
        model: Any
        if objective == "regression":
            cls = MultiTaskElasticNet if y.ndim == 2 else ElasticNet
            model = cls(alpha=self.alpha, l1_ratio=self.l1_ratio, max_iter=self.max_iter,
                        random_state=self.random_state)
        elif objective == "classification":
            model = LogisticRegression(C=self.C, max_iter=self.max_iter,
                                       random_state=self.random_state)
        elif objective == "poisson":
            model = PoissonRegressor(alpha=self.alpha, max_iter=self.max_iter)
        else:
            model = QuantileRegressor(quantile=group[0].alpha, alpha=self.alpha, solver="highs")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            if objective == "regression" and self.shrinkage == "auto":
                self._heldout = self._cross_fitted(model, F, y, weight)
            return model.fit(F, y, **fit_params(model, weight))

    def _cross_fitted(self, model: Any, F: np.ndarray, y: np.ndarray,
                      weight: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
        """Every row predicted by a copy of ``model`` fitted on the other ``FOLDS - 1`` folds
        (what ``shrinkage="auto"`` measures); None with fewer than two rows per fold."""
        from sklearn.base import clone

        if len(y) < 2 * FOLDS:
            return None
        chunks = np.array_split(np.random.default_rng(self.random_state).permutation(len(y)), FOLDS)
        pred = np.zeros((len(y), 1 if y.ndim == 1 else y.shape[1]))
        for i, rows in enumerate(chunks):
            fit = np.concatenate(chunks[:i] + chunks[i + 1:])
            part = clone(model).fit(F[fit], y[fit], **fit_params(model, None if weight is None else weight[fit]))
            pred[rows] = np.asarray(part.predict(F[rows])).reshape(len(rows), -1)
        return np.arange(len(y)), pred
