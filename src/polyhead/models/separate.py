"""``Separate``: one model per task, the baseline every joint model is compared with; and
``SingleTarget``: any single-output scikit-learn estimator under the task API."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone, is_classifier, is_regressor

from ..exceptions import PolyheadError
from ..registry import register_estimator
from ..tasks import TaskSpec
from .base import MultiTaskMixin
from .composite import CompositeMixin
from .sklearn_base import SklearnMultiTask, Slot, stack_targets


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

    Saved models are loaded with skops against polyhead's allow-list of types, so an estimator
    whose fitted state needs other types saves but will not load.
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

    def _for_kind(self, kind: str, task: str) -> Any:
        est = self.estimator
        if isinstance(est, dict):
            est = est.get(kind)
        if est is None:
            raise PolyheadError(f"task {task!r} is a {kind} task but no {kind} estimator was "
                                "given; pass {'regression': ..., 'classification': ...}")
        ok = is_regressor(est) if kind == "regression" else is_classifier(est)
        if not ok:
            raise PolyheadError(f"task {task!r} needs a {'regressor' if kind == 'regression' else 'classifier'}"
                                f", got {type(est).__name__}")
        return clone(est)

    def _fit_units(self, F: np.ndarray, slots: list[Slot]) -> list[tuple[list[str], Any]]:
        units = []
        for slot in slots:
            rows, y = stack_targets([slot])
            model = self._for_kind(slot.kind, slot.task)
            if self.random_state is not None and "random_state" in model.get_params():
                model.set_params(random_state=self.random_state)
            units.append(([slot.key], model.fit(F[rows], y)))
        return units


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

    def fit(self, X: Any, y: Any) -> Separate:
        """Fit one model per task on the same features."""
        Xf, yf = self._prepare_fit(X, y)
        template = self._template()
        self.estimators_ = []
        for t in self.task_states_:
            model = clone(template).set_params(tasks=[t.task])
            model.fit(Xf, yf[list(t.task.source_columns)])
            self.estimators_.append(model)
        return self

    def _predict_outputs(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        outputs = {}
        for model in self.estimators_:
            outputs.update(model._predict_outputs(model._check_X(X, fit=False)))
        return outputs
