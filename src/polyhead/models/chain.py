"""``TaskChain``: each task sees the predictions of the tasks before it, built out of fold."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from .. import _params as P
from ..exceptions import PolyheadError
from ..kinds import align_outputs
from ..registry import register_estimator
from ..tasks import TaskSpec
from .base import MultiTaskMixin
from .composite import CompositeMixin
from .separate import fit_one, per_task_template


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

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> TaskChain:
        """Fit the tasks in ``order``, each on the features plus out-of-fold earlier outputs."""
        from sklearn.model_selection import KFold

        self._check_params()
        Xf, yf = self._prepare_fit(X, y, sample_weight)
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
        weights = (sample_weight.reset_index(drop=True) if isinstance(sample_weight, pd.DataFrame)
                   else sample_weight)
        self.estimators_ = []
        for name in order:
            state = states[name]
            model = fit_one(template, state, features, targets, self.task_states_, weights)
            self.estimators_.append(model)
            if name == order[-1]:
                break
            oof = None
            for train, test in folds:
                fold_y = targets.iloc[train]
                fold_w = None if weights is None else (
                    weights.iloc[train] if isinstance(weights, pd.DataFrame) else np.asarray(weights)[train])
                try:
                    fold_model = fit_one(template, state, features.iloc[train], fold_y,
                                         self.task_states_, fold_w)
                except PolyheadError:
                    fold_model = model  # a fold without enough labels: fall back to the full fit
                out = fold_model._predict_outputs(fold_model._check_X(features.iloc[test], fit=False))[name]
                out = align_outputs(out, fold_model.task_states_[0], state)
                if oof is None:
                    oof = np.zeros((len(features), *out.shape[1:]))
                oof[test] = out
            assert oof is not None
            features = features.assign(**state.chain_features(oof))
        return self

    def _predict_outputs(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        features = X.reset_index(drop=True)
        states = {t.name: t for t in self.task_states_}
        outputs: dict[str, np.ndarray] = {}
        for name, model in zip(self.order_, self.estimators_, strict=True):
            out = model._predict_outputs(model._check_X(features, fit=False))[name]
            outputs[name] = out
            features = features.assign(**states[name].chain_features(out))
        return outputs

    def _extra_state(self) -> dict[str, Any]:
        return {"order": self.order_}

    def _set_state(self, manifest: dict[str, Any], tensors: dict[str, np.ndarray],
                   files: dict[str, bytes] | None = None) -> None:
        super()._set_state(manifest, tensors, files)
        self.order_ = list(manifest["order"])
