"""``MultiTaskForest``: scikit-learn's random forests / extra trees, several outputs per forest."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _params as P
from ..kinds import Slot
from ..registry import register_estimator
from ..tasks import TaskSpec
from .sklearn_base import SklearnMultiTask, fit_params, groups_by_objective


@register_estimator
class MultiTaskForest(SklearnMultiTask):
    """Random forest (or extra trees) over several tasks, with shared splits.

    scikit-learn's forests predict several outputs natively: every tree splits on all of them
    at once. Tasks are grouped by kind: all class-like outputs (binary and multiclass tasks, and
    each label of a multilabel task) share one multi-output classifier forest, all regression
    tasks one multi-output regressor forest (fitted on standardised targets, so each task
    weighs the same in the split criterion).

    Missing labels: a group's forest is fitted on the rows that have every label of the group,
    which drops the rows whose labels are all missing. When labels are missing *unevenly*
    (some rows have one task's label but not another's), the group falls back to one forest per
    output, each fitted on the rows that have its label. A missing label never becomes a 0 or a
    class.

    Parameters
    ----------
    tasks : as in :class:`~polyhead.MultiTaskNet`
    kind : {"random_forest", "extra_trees"}, default="random_forest"
    n_estimators, max_depth, min_samples_leaf, max_features : as in scikit-learn's forests
        (``max_features`` default: "sqrt" for classifiers, 1.0 for regressors, as there).
    random_state : int or None
    n_jobs : int or None
        Threads, with scikit-learn's meaning; None follows polyhead's thread policy
        (:mod:`polyhead.parallel`).
    max_categories : int, default=64
        One-hot slots per categorical column; rarer categories share an "other" slot.

    Examples
    --------
    >>> from sklearn.datasets import make_multilabel_classification
    >>> X, Y = make_multilabel_classification(n_samples=100, n_features=10, n_classes=2,
    ...                                       n_labels=1, random_state=42)
    >>> MultiTaskForest(random_state=42).fit(X, Y).predict(X[:1]).shape
    (1, 2)
    """

    _standardize_features = False
    _parameter_constraints: dict[str, list[Any]] = {
        "kind": [P.options("random_forest", "extra_trees")],
        "n_estimators": [P.Interval(int, 1, None)],
        "max_depth": [P.NONE, P.Interval(int, 1, None)],
        "min_samples_leaf": [P.Interval(int, 1, None), P.Interval(float, 0, 1, "right")],
        "max_features": [P.NONE, P.options("sqrt", "log2", "auto"), P.Interval(int, 1, None),
                         P.Interval(float, 0, 1, "right")],
    }

    def __init__(self, tasks: TaskSpec = None, *, kind: str = "random_forest",
                 n_estimators: int = 100, max_depth: int | None = None,
                 min_samples_leaf: int | float = 1, max_features: Any = "auto",
                 random_state: int | None = None, n_jobs: int | None = None,
                 max_categories: int = 64) -> None:
        self.tasks = tasks
        self.kind = kind
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.max_categories = max_categories

    objectives = ("regression", "classification", "poisson")

    def _forest(self, objective: str) -> Any:
        from sklearn import ensemble

        regression = objective != "classification"
        name = {("random_forest", True): "RandomForestRegressor",
                ("random_forest", False): "RandomForestClassifier",
                ("extra_trees", True): "ExtraTreesRegressor",
                ("extra_trees", False): "ExtraTreesClassifier"}[(self.kind, regression)]
        kwargs: dict[str, Any] = {}
        if self.max_features != "auto":
            kwargs["max_features"] = self.max_features
        if objective == "poisson":
            kwargs["criterion"] = "poisson"
        return getattr(ensemble, name)(
            n_estimators=self.n_estimators, max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf, random_state=self.random_state,
            n_jobs=getattr(self, "_threads", 1), **kwargs)

    def _groups(self, slots: list[Slot]) -> list[list[Slot]]:
        return groups_by_objective(slots)

    def _fit_group(self, group: list[Slot], F: np.ndarray, y: np.ndarray,
                   weight: np.ndarray | None) -> Any:
        model = self._forest(group[0].objective)
        return model.fit(F, y, **fit_params(model, weight))
