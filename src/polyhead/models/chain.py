"""``TaskChain``: each task sees the predictions of the tasks before it, built out of fold."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone

from .. import _params as P
from ..exceptions import PolyheadError
from ..registry import register_estimator
from ..tasks import FittedTask, TaskSpec
from .base import MultiTaskMixin
from .composite import CompositeMixin
from .separate import per_task_template


def chain_columns(state: FittedTask, outputs: np.ndarray) -> dict[str, np.ndarray]:
    """The feature columns a task's outputs add for the tasks after it."""
    name = f"chain:{state.name}"
    if state.kind in ("regression", "binary"):
        return {name: outputs}
    labels = state.task.source_columns if state.kind == "multilabel" else state.classes.tolist()  # type: ignore[union-attr]
    return {f"{name}={label}": outputs[:, j] for j, label in enumerate(labels)}


def _align_classes(out: np.ndarray, fold: FittedTask, full: FittedTask) -> np.ndarray:
    """A fold model's multiclass probabilities laid out over the full task's classes (a fold
    may not have seen every class)."""
    if full.kind != "multiclass" or fold.classes is None or full.classes is None:
        return out
    aligned = np.zeros((out.shape[0], len(full.classes)))
    position = {c: i for i, c in enumerate(full.classes.tolist())}
    aligned[:, [position[c] for c in fold.classes.tolist()]] = out
    return aligned


@register_estimator
class TaskChain(CompositeMixin, MultiTaskMixin, BaseEstimator):
    """Tasks fitted in order, each with the earlier tasks' predictions as extra features.

    During ``fit`` the extra features are *out-of-fold* predictions (``cv`` folds), so a task
    trains on the same kind of inputs it will see at prediction time, not on leaked labels.
    Regression tasks contribute their predicted value, binary tasks the probability of the
    second class, multiclass and multilabel tasks one probability per class or label.

    This covers "my regression depends on my class": with a hurdle-shaped target (zero for many
    rows, a positive amount otherwise), chain ``order=["is_positive", "amount"]`` and the amount
    model sees how likely the row is to be positive.

    Parameters
    ----------
    estimator : polyhead or scikit-learn estimator, default=None
        The model fitted for each task (see :class:`~polyhead.Separate`); None means
        ``MultiTaskNet()``.
    tasks : as in :class:`~polyhead.MultiTaskNet`
    order : list of str, optional
        Task names in chain order (default: the order of ``tasks``); every task must appear.
    cv : int, default=5
        Folds for the out-of-fold predictions.
    random_state : int or None
    """

    _parameter_constraints: dict[str, list[Any]] = {
        "cv": [P.Interval(int, 2, None)], "random_state": [P.SEED],
    }

    def __init__(self, estimator: Any = None, tasks: TaskSpec = None, *,
                 order: list[str] | None = None, cv: int = 5,
                 random_state: int | None = None) -> None:
        self.estimator = estimator
        self.tasks = tasks
        self.order = order
        self.cv = cv
        self.random_state = random_state

    def _template(self) -> Any:
        return per_task_template(self.estimator, self.random_state)

    def fit(self, X: Any, y: Any) -> TaskChain:
        """Fit the tasks in ``order``, each on the features plus out-of-fold earlier outputs."""
        from sklearn.model_selection import KFold

        P.validate_params(self, self._parameter_constraints)
        Xf, yf = self._prepare_fit(X, y)
        states = {t.name: t for t in self.task_states_}
        order = list(self.order) if self.order is not None else list(states)
        if sorted(order) != sorted(states):
            raise PolyheadError(f"order {order} must name every task exactly once: "
                                f"{sorted(states)}")
        if len(Xf) < self.cv:
            raise PolyheadError(f"TaskChain needs at least cv={self.cv} samples for its folds, "
                                f"got n_samples = {len(Xf)}")
        self.order_ = order
        template = self._template()
        folds = list(KFold(self.cv, shuffle=True, random_state=self.random_state).split(Xf))
        features = Xf.reset_index(drop=True)
        targets = yf.reset_index(drop=True)
        self.estimators_ = []
        for name in order:
            state = states[name]
            cols = list(state.task.source_columns)
            model = clone(template).set_params(tasks=[state.task]).fit(features, targets[cols])
            self.estimators_.append(model)
            if name == order[-1]:
                break
            oof = None
            for train, test in folds:
                fold_model = clone(template).set_params(tasks=[state.task])
                try:
                    fold_model.fit(features.iloc[train], targets[cols].iloc[train])
                except PolyheadError:
                    fold_model = model  # a fold without enough labels: fall back to the full fit
                out = fold_model._predict_outputs(fold_model._check_X(features.iloc[test], fit=False))[name]
                out = _align_classes(out, fold_model.task_states_[0], state)
                if oof is None:
                    oof = np.zeros((len(features), *out.shape[1:]))
                oof[test] = out
            assert oof is not None
            features = features.assign(**chain_columns(state, oof))
        return self

    def _predict_outputs(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        features = X.reset_index(drop=True)
        states = {t.name: t for t in self.task_states_}
        outputs: dict[str, np.ndarray] = {}
        for name, model in zip(self.order_, self.estimators_, strict=True):
            out = model._predict_outputs(model._check_X(features, fit=False))[name]
            outputs[name] = out
            features = features.assign(**chain_columns(states[name], out))
        return outputs

    def _extra_state(self) -> dict[str, Any]:
        return {"order": self.order_}

    def _set_state(self, manifest: dict[str, Any], tensors: dict[str, np.ndarray],
                   files: dict[str, bytes] | None = None) -> None:
        super()._set_state(manifest, tensors, files)
        self.order_ = list(manifest["order"])
