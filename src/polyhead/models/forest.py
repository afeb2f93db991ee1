"""``MultiTaskForest``: scikit-learn's random forests / extra trees, several outputs per forest."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _params as P
from ..kinds import Slot
from ..registry import register_estimator
from ..tasks import TaskSpec
from .sklearn_base import SklearnMultiTask, fit_params, groups_by_objective

#: what "auto" means for ``max_features`` and ``min_samples_leaf``, per forest kind and forest
#: (the regressor's, the classifier's)
AUTO: dict[str, dict[str, tuple[Any, int]]] = {
    "random_forest": {"regression": (0.5, 1), "classification": ("sqrt", 5)},
    "extra_trees": {"regression": (1.0, 1), "classification": ("sqrt", 1)},
}


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
    n_estimators, max_depth : as in scikit-learn's forests
    max_features, min_samples_leaf : as in scikit-learn's forests, or "auto" (the default):
        for random forests, 0.5 and 1 for the regressor forest, "sqrt" and 5 for the classifier
        forest (``AUTO``); for extra trees, scikit-learn's defaults (1.0 and 1, "sqrt" and 1).
        Chosen by ``benchmarks/quality.py`` on 19 sets (README, "Against the trivial
        predictor"): a random half of the features per split makes the regressor trees less
        alike (scikit-learn's regressors consider every feature), and leaves of at least five
        rows give the classifiers' probabilities, hence their AUC, fewer ties at 0 and 1.
        ``max_features=1.0, min_samples_leaf=1`` for regression and ``"sqrt", 1`` for
        classification are scikit-learn's own forests.
    random_state : int or None
    n_jobs : int or None
        Threads, with scikit-learn's meaning; None follows polyhead's thread policy
        (:mod:`polyhead.parallel`).
    max_categories : int, default=64
        One-hot slots per categorical column; rarer categories share an "other" slot.
    shrinkage : {"auto", "none"}, default="auto"
        "auto": each regression output is pulled toward its training mean by the least-squares
        factor measured on its out-of-bag rows (random forests; extra trees draw no bootstrap
        sample and are never shrunk), where that lowers their squared error beyond the noise
        (:mod:`polyhead.models.shrinkage`); ``shrinkage_`` maps each shrunk output to its
        (factor, mean). An output the model cannot predict then scores like the mean instead of
        worse. "none": predictions as the fitted models make them.

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
        "shrinkage": [P.options("auto", "none")],
        "n_estimators": [P.Interval(int, 1, None)],
        "max_depth": [P.NONE, P.Interval(int, 1, None)],
        "min_samples_leaf": [P.options("auto"), P.Interval(int, 1, None),
                             P.Interval(float, 0, 1, "right")],
        "max_features": [P.NONE, P.options("sqrt", "log2", "auto"), P.Interval(int, 1, None),
                         P.Interval(float, 0, 1, "right")],
    }

    def __init__(self, tasks: TaskSpec = None, *, kind: str = "random_forest",
                 n_estimators: int = 100, max_depth: int | None = None,
                 min_samples_leaf: int | float | str = "auto", max_features: Any = "auto",
                 random_state: int | None = None, n_jobs: int | None = None,
                 max_categories: int = 64, shrinkage: str = "auto") -> None:
        self.tasks = tasks
        self.kind = kind
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.max_categories = max_categories
        self.shrinkage = shrinkage

    objectives = ("regression", "classification", "poisson")

    def _forest(self, objective: str) -> Any:
        from sklearn import ensemble

        regression = objective != "classification"
        name = {("random_forest", True): "RandomForestRegressor",
                ("random_forest", False): "RandomForestClassifier",
                ("extra_trees", True): "ExtraTreesRegressor",
                ("extra_trees", False): "ExtraTreesClassifier"}[(self.kind, regression)]
        max_features, min_leaf = AUTO[self.kind]["regression" if regression else "classification"]
        kwargs: dict[str, Any] = {
            "max_features": max_features if self.max_features == "auto" else self.max_features}
        if objective == "poisson":
            kwargs["criterion"] = "poisson"
        return getattr(ensemble, name)(
            n_estimators=self.n_estimators, max_depth=self.max_depth,
            min_samples_leaf=min_leaf if self.min_samples_leaf == "auto" else self.min_samples_leaf,
            random_state=self.random_state,
            n_jobs=getattr(self, "_threads", 1), **kwargs)

    def _groups(self, slots: list[Slot]) -> list[list[Slot]]:
        return groups_by_objective(slots)

    def _fit_group(self, group: list[Slot], F: np.ndarray, y: np.ndarray,
                   weight: np.ndarray | None) -> Any:
        model = self._forest(group[0].objective)
        model.fit(F, y, **fit_params(model, weight))
        if (self.shrinkage == "auto" and group[0].objective == "regression"
                and getattr(model, "bootstrap", False)):
            self._heldout = out_of_bag(model, F)
        return model


def out_of_bag(forest: Any, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's prediction by the trees whose bootstrap sample left it out: the positions of
    the rows some tree left out (with 100 trees, all of them), and their predictions."""
    n = len(F)
    total, count = np.zeros((n, forest.n_outputs_)), np.zeros(n)
    for tree, drawn in zip(forest.estimators_, forest.estimators_samples_, strict=True):
        left_out = np.ones(n, dtype=bool)
        left_out[drawn] = False
        if not left_out.any():  # a tiny sample: this tree drew every row
            continue
        total[left_out] += tree.predict(F[left_out]).reshape(int(left_out.sum()), -1)
        count[left_out] += 1
    seen = np.flatnonzero(count > 0)
    return seen, total[seen] / count[seen, None]
