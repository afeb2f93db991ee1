"""``Separate``: one model per task, the baseline every joint model is compared with; and
``SingleTarget``: any single-output scikit-learn estimator under the task API."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone, is_classifier, is_regressor

from ..exceptions import PolyheadError
from ..kinds import Slot
from ..registry import register_estimator
from ..tasks import TaskSpec
from .base import MultiTaskMixin
from .composite import CompositeMixin
from .sklearn_base import SklearnMultiTask, fit_params


def is_polyhead(estimator: Any) -> bool:
    return isinstance(estimator, MultiTaskMixin)


@register_estimator
class SingleTarget(SklearnMultiTask):
    """One clone of a single-output scikit-learn estimator per output, under the task API.

    Parameters
    ----------
    estimator : estimator or dict
        A regressor, a classifier, or ``{"regression": ..., "classification": ...}``; each
        task's outputs use the one of its kind (each label of a multilabel task gets its own
        classifier). Regressors see standardised targets; features are encoded by
        :class:`~polyhead.features.FeatureEncoder`.
    tasks : as in :class:`~polyhead.MultiTaskNet`

    Saved models store each fitted estimator as its arrays (:mod:`polyhead.io.sklearn_arrays`):
    linear models, trees, forests and HistGradientBoosting. Saving another type is refused in
    one line naming it (polyhead writes no pickle).
    """

    _parameter_constraints: dict[str, list[Any]] = {}

    def __init__(self, estimator: Any = None, tasks: TaskSpec = None, *,
                 random_state: int | None = None, n_jobs: int | None = None,
                 max_categories: int = 64) -> None:
        self.estimator = estimator
        self.tasks = tasks
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.max_categories = max_categories

    def _for_objective(self, objective: str, task: str) -> Any:
        kind = "regression" if objective == "regression" else "classification"
        est = self.estimator
        if isinstance(est, dict):
            est = est.get(kind)
        if est is None:
            raise PolyheadError(f"task {task!r} needs a {kind} estimator but none was given; "
                                "pass {'regression': ..., 'classification': ...}")
        ok = is_regressor(est) if kind == "regression" else is_classifier(est)
        if not ok:
            raise PolyheadError(f"task {task!r} needs a {'regressor' if kind == 'regression' else 'classifier'}"
                                f", got {type(est).__name__}")
        return clone(est)

    def _fit_group(self, group: list[Slot], F: np.ndarray, y: np.ndarray,
                   weight: np.ndarray | None) -> Any:
        model = self._for_objective(group[0].objective, group[0].task or group[0].key)
        if self.random_state is not None and "random_state" in model.get_params():
            model.set_params(random_state=self.random_state)
        return model.fit(F, y, **fit_params(model, weight))


def fit_one(template: Any, state: Any, X: pd.DataFrame, y: pd.DataFrame, states: list[Any],
            sample_weight: Any = None) -> Any:
    """A clone of ``template`` fitted to one task: on the rows where its condition holds (the
    composite applies the condition at prediction), with its columns' sample weights."""
    from ..conditions import condition_rows

    rows = condition_rows(states, y, state.name)
    task = replace(state.task, given=None, otherwise=None)
    cols = list(state.task.source_columns)
    model = clone(template).set_params(tasks=[task])
    kwargs = {}
    if sample_weight is not None:
        weights = (sample_weight[[c for c in cols if c in sample_weight.columns]]
                   if isinstance(sample_weight, pd.DataFrame) else np.asarray(sample_weight))
        kwargs["sample_weight"] = (weights.iloc[rows] if isinstance(weights, pd.DataFrame)
                                   else weights[rows])
    return model.fit(X.iloc[rows], y[cols].iloc[rows], **kwargs)


def per_task_template(estimator: Any, random_state: int | None) -> Any:
    """The unfitted model a composite fits once per task: a polyhead estimator as given, a
    scikit-learn one wrapped in :class:`SingleTarget`, None as ``MultiTaskNet()``; with the
    composite's ``random_state`` where the model has one."""
    from .net import MultiTaskNet

    est = estimator if estimator is not None else MultiTaskNet()
    est = clone(est if is_polyhead(est) else SingleTarget(est))
    if random_state is not None and "random_state" in est.get_params():
        est.set_params(random_state=random_state)
    return est


@register_estimator
class Separate(CompositeMixin, MultiTaskMixin, BaseEstimator):
    """One independent model per task.

    Parameters
    ----------
    estimator : polyhead estimator, scikit-learn estimator or dict, default=None
        A polyhead estimator (e.g. ``MultiTaskNet(...)``) is cloned once per task with
        ``tasks=[that task]``. A scikit-learn single-output estimator (or a dict
        ``{"regression": ..., "classification": ...}``) is wrapped in :class:`SingleTarget`.
        None means ``MultiTaskNet()``.
    tasks : as in :class:`~polyhead.MultiTaskNet`
    random_state : int or None
        Passed to every per-task model that has one.

    Examples
    --------
    >>> from polyhead import MultiTaskNet, Separate
    >>> baseline = Separate(MultiTaskNet(max_epochs=50), tasks={"rings": "regression",
    ...                                                          "rings_class": "multiclass"})
    """

    def __init__(self, estimator: Any = None, tasks: TaskSpec = None, *,
                 random_state: int | None = None) -> None:
        self.estimator = estimator
        self.tasks = tasks
        self.random_state = random_state

    def _template(self) -> Any:
        return per_task_template(self.estimator, self.random_state)

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Separate:
        """Fit one model per task on the same features (a conditional task on the rows where
        its condition holds)."""
        Xf, yf = self._prepare_fit(X, y, sample_weight)
        template = self._template()
        self.estimators_ = [fit_one(template, t, Xf, yf, self.task_states_, sample_weight)
                            for t in self.task_states_]
        return self

    def _predict_outputs(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        outputs = {}
        for model in self.estimators_:
            outputs.update(model._predict_outputs(model._check_X(X, fit=False)))
        return outputs
