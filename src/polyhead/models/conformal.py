"""``Conformal``: prediction intervals and sets per task, and coverage across tasks at once.

Split conformal prediction (Vovk et al.; Lei et al., 2018) around any polyhead estimator: fit it
on part of the rows, score how badly each held-out label disagrees with its prediction (each
kind says how: :meth:`polyhead.kinds.Kind.conformity`), and take the score quantile that
``1 - alpha`` of new rows will fall under. Per task the region covers the label with
probability at least ``1 - alpha``, whatever the model, if rows are exchangeable.

* ``joint=True``: every task of a row covered at once, with probability at least ``1 - alpha``.
  Each task's scores become their rank among that task's calibration scores (a p-value scale
  shared by all tasks), a row's joint score is the largest rank over the tasks it has labels
  for, and the joint threshold is mapped back to a threshold per task (the max-rank method).
  A calibration score's rank counts one more than the scores below it (the new row's may be
  too), which keeps the guarantee exact rather than approximate.
  Rows with missing labels count with the tasks they have, so the guarantee holds for new rows
  labelled like the calibration rows (all tasks of a fully labelled row are covered a little
  less often when calibration rows lacked some labels).
* ``groups=`` (Mondrian): thresholds per value of a column, so coverage holds within each group.
* ``method="cv"``: K fold models; every row is a calibration row (out of fold), and predictions
  average the K models (cross-conformal; slightly conservative).
* Regression and count scores can be normalised by a difficulty estimate (``normalize=``):
  by default the ensemble members' spread for a ``MultiTaskNet(n_ensemble > 1)``, plus a
  per-task constant chosen on the calibration rows (``scale_offsets_``, saved with the model).
* ``calibrate=True`` temperature-scales class probabilities on the calibration rows first (see
  :class:`Calibrated`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone

from .. import _params as P
from .. import conditions
from ..exceptions import ModelFileError, PolyheadError
from ..registry import register_estimator
from ..tasks import TaskSpec
from .base import MultiTaskMixin
from .calibrated import fit_temperature
from .composite import CompositeMixin
from .separate import per_task_template

JOINT = "joint"


def conformal_quantile(scores: np.ndarray, alpha: float, what: str) -> float:
    """The ``ceil((n + 1)(1 - alpha)) / n`` empirical quantile of the observed scores."""
    s = np.sort(scores[~np.isnan(scores)])
    n = len(s)
    rank = math.ceil((n + 1) * (1 - alpha))
    if n == 0:
        raise PolyheadError(f"{what} has no calibration labels")
    if rank > n:
        need = math.ceil(1 / alpha - 1)
        raise PolyheadError(f"{what}: alpha={alpha} needs at least {need} calibration labels, "
                            f"got {n}; raise calibration_fraction or alpha, or use method='cv'")
    return float(s[rank - 1])


def _ranks(scores: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Each score's position among the reference scores, scaled to (0, 1]: the p-value scale
    every task shares in the joint score. NaN stays NaN."""
    ref = np.sort(reference[~np.isnan(reference)])
    out = np.searchsorted(ref, scores, side="left") / (len(ref) + 1)
    return np.where(np.isnan(scores), np.nan, out)


@register_estimator
class Conformal(CompositeMixin, MultiTaskMixin, BaseEstimator):
    """Conformal prediction intervals and sets around any polyhead estimator.

    Parameters
    ----------
    estimator : polyhead estimator, default=None
        The model (None: ``MultiTaskNet()``); cloned and fitted with this wrapper's tasks.
    tasks : as in :class:`~polyhead.MultiTaskNet`
    alpha : float, default=0.1
        Miscoverage: regions cover with probability at least ``1 - alpha``.
    method : {"split", "cv"}, default="split"
    cv : int, default=5
        Folds for ``method="cv"``.
    calibration_fraction : float, default=0.2
        Rows held out for calibration with ``method="split"``.
    joint : bool, default=False
        Cover every task of a row at once (see the module docstring).
    groups : str or None, default=None
        A column of X: thresholds per value of it (Mondrian conformal prediction). A value
        unseen at calibration gets the overall threshold.
    scores : {"auto", "lac", "aps"}, default="auto"
        Class sets: "lac" (smallest sets) or "aps" (adaptive sets); "auto" is each kind's
        default (LAC, chosen by ``benchmarks/uncertainty.py``).
    normalize : {"auto", "spread", "residual", "none"}, default="auto"
        The difficulty estimate that scales regression and count intervals: the ensemble
        members' spread ("spread"), a small boosting model of the training residuals
        ("residual"), or none. "auto": the spread for an ensemble, none otherwise.
    calibrate : bool, default=False
        Temperature-scale class probabilities on the calibration rows first.
    random_state : int or None

    Examples
    --------
    >>> import polyhead
    >>> model = polyhead.Conformal(polyhead.MultiTaskGBM(), alpha=0.1, joint=True)
    """

    _parameter_constraints: dict[str, list[Any]] = {
        "alpha": [P.Interval(float, 0, 1, "neither")],
        "method": [P.options("split", "cv")],
        "cv": [P.Interval(int, 2, None)],
        "calibration_fraction": [P.Interval(float, 0, 1, "neither")],
        "joint": [P.BOOL],
        "groups": [P.NONE, P.is_instance(str)],
        "scores": [P.options("auto", "lac", "aps")],
        "normalize": [P.options("auto", "spread", "residual", "none")],
        "calibrate": [P.BOOL],
        "random_state": [P.SEED],
    }

    def __init__(self, estimator: Any = None, tasks: TaskSpec = None, *, alpha: float = 0.1,
                 method: str = "split", cv: int = 5, calibration_fraction: float = 0.2,
                 joint: bool = False, groups: str | None = None, scores: str = "auto",
                 normalize: str = "auto", calibrate: bool = False,
                 random_state: int | None = None) -> None:
        self.estimator = estimator
        self.tasks = tasks
        self.alpha = alpha
        self.method = method
        self.cv = cv
        self.calibration_fraction = calibration_fraction
        self.joint = joint
        self.groups = groups
        self.scores = scores
        self.normalize = normalize
        self.calibrate = calibrate
        self.random_state = random_state

    # -- fit -----------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> Conformal:
        """Fit the model(s) and calibrate on held-out rows (or out of fold)."""
        self._check_params()
        Xf, yf = self._prepare_fit(X, y, sample_weight)
        if self.groups is not None and self.groups not in Xf.columns:
            raise PolyheadError(f"groups={self.groups!r} is not a column of X")
        template = per_task_template(self.estimator, self.random_state)
        tasks = [t.task for t in self.task_states_]
        self.scale_offsets_: dict[str, float] | None = None  # calibration reads the raw spread
        n = len(Xf)
        rng = np.random.default_rng(self.random_state)
        if self.method == "split":
            n_cal = round(n * self.calibration_fraction)
            if n_cal < 1 or n - n_cal < 2:
                raise PolyheadError(f"calibration_fraction={self.calibration_fraction} leaves no "
                                    f"calibration or training rows out of {n}")
            perm = rng.permutation(n)
            folds = [(np.sort(perm[n_cal:]), np.sort(perm[:n_cal]))]
        else:
            if n < self.cv:
                raise PolyheadError(f"cv={self.cv} folds need at least {self.cv} rows, got {n}")
            from sklearn.model_selection import KFold

            folds = list(KFold(self.cv, shuffle=True, random_state=self.random_state).split(Xf))
        self.estimators_ = []
        self.residual_models_: list[Any] = []
        cal_rows, cal_outputs, cal_scales = [], [], []
        weights = sample_weight
        for train, test in folds:
            model = clone(template).set_params(tasks=tasks)
            kwargs = {} if weights is None else {"sample_weight": (
                weights.iloc[train] if isinstance(weights, pd.DataFrame) else np.asarray(weights)[train])}
            model.fit(Xf.iloc[train], yf.iloc[train], **kwargs)
            self.estimators_.append(model)
            residual = self._fit_residuals(model, Xf.iloc[train], yf.iloc[train])
            self.residual_models_.append(residual)
            outputs = self._model_outputs(model, Xf.iloc[test])
            cal_rows.append(test)
            cal_outputs.append(outputs)
            cal_scales.append(self._scales(model, residual, Xf.iloc[test]))
        rows = np.concatenate(cal_rows)
        self.calibration_rows_ = rows
        outputs = {t.name: np.concatenate([o[t.name] for o in cal_outputs]) for t in self.task_states_}
        scales = {t.name: (None if cal_scales[0][t.name] is None else
                           np.concatenate([s[t.name] for s in cal_scales])) for t in self.task_states_}
        y_cal = yf.iloc[rows]
        self.temperatures_ = ({t.name: fit_temperature(t, y_cal, outputs[t.name])
                               for t in self.task_states_ if t.has_proba}
                              if self.calibrate else {})
        outputs = self._tempered(outputs)
        outputs = conditions.apply(self.task_states_, outputs)
        self.scale_offsets_ = {}
        if self._normalizer(self.estimators_[0]) == "spread":
            for t in self.task_states_:
                spread = scales[t.name]
                if spread is not None:
                    offset = self._choose_offset(t, y_cal, outputs[t.name], spread)
                    self.scale_offsets_[t.name] = offset
                    scales[t.name] = spread + offset
        self.scores_ = {t.name: t.conformity(y_cal, outputs[t.name], scales[t.name],
                                             self._method_for(t))
                        for t in self.task_states_}
        self.groups_ = (None if self.groups is None else
                        Xf[self.groups].iloc[rows].astype(str).to_numpy())
        self.thresholds_ = self._thresholds(self.alpha)
        return self

    #: Offsets tried, in units of the median calibration spread: from nearly pure spread
    #: normalisation to, in effect, none (a constant scale).
    OFFSETS = (1e-3, 0.1, 0.3, 1.0, 3.0, 1e3)

    def _choose_offset(self, state: Any, y: pd.DataFrame, outputs: np.ndarray, spread: np.ndarray) -> float:
        """The constant added to the ensemble's spread before it scales a task's intervals.

        A spread near zero on some rows makes their intervals needlessly narrow and every other
        row's wider; a large offset gives plain absolute intervals. Chosen per task by the mean
        width at ``alpha`` on half of the calibration rows with the threshold from the other
        half, both ways round (the thresholds are then set on all of them): pure spread won
        where members disagree in proportion to the error, the offset elsewhere
        (``benchmarks/uncertainty.py``)."""
        median = float(np.median(spread)) + 1e-12
        method = self._method_for(state)
        probe = state.conformity(y, outputs, spread + median, method)
        labelled = np.flatnonzero(~np.isnan(probe))
        if len(labelled) < 40:
            return 1e-3 * median
        perm = np.random.default_rng(self.random_state).permutation(labelled)
        halves = (perm[: len(perm) // 2], perm[len(perm) // 2:])
        widths = []
        for factor in self.OFFSETS:
            scale = spread + factor * median
            scores = state.conformity(y, outputs, scale, method)
            width = sum(float(np.quantile(scores[a], 1 - self.alpha)) * float(scale[b].mean())
                        for a, b in (halves, halves[::-1]))
            widths.append(width)
        return float(self.OFFSETS[int(np.argmin(widths))] * median)

    def _method_for(self, state: Any) -> str:
        methods = state.conformal_methods
        if not methods:
            raise PolyheadError(f"task {state.name!r}: {state.kind} tasks have no conformal scores")
        return self.scores if self.scores in methods else methods[0]

    def _model_outputs(self, model: Any, X: pd.DataFrame) -> dict[str, np.ndarray]:
        return model._predict_outputs(model._check_X(X, fit=False))

    def _fit_residuals(self, model: Any, X: pd.DataFrame, y: pd.DataFrame) -> dict[str, Any]:
        """Per regression or count task, a small model of the absolute training residuals
        (the difficulty estimate when there is no ensemble spread)."""
        if self._normalizer(model) != "residual":
            return {}
        from sklearn.ensemble import HistGradientBoostingRegressor

        from .sklearn_base import fit_params

        outputs = self._model_outputs(model, X)
        F = model.feature_encoder().transform(X)
        out = {}
        for t in self.task_states_:
            if not t.point_value:
                continue
            truth = t.values(y)  # type: ignore[attr-defined]
            keep = ~np.isnan(truth)
            if keep.sum() < 20:
                continue
            target = np.log(np.abs(truth[keep] - outputs[t.name][keep]) + 1e-6)
            reg = HistGradientBoostingRegressor(max_iter=50, max_leaf_nodes=8, learning_rate=0.1,
                                                random_state=self.random_state)
            out[t.name] = reg.fit(F[keep], target, **fit_params(reg, None))
        return out

    def _normalizer(self, model: Any) -> str:
        """"auto": the ensemble's spread when the model is an ensemble (free, and measured on
        held-out rows), otherwise none (a residual model fitted on in-sample residuals made
        intervals wider in benchmarks/uncertainty.py)."""
        if self.normalize != "auto":
            return self.normalize
        return "spread" if getattr(model, "n_ensemble_", 1) > 1 else "none"

    def _scales(self, model: Any, residual: dict[str, Any], X: pd.DataFrame) -> dict[str, Any]:
        how = self._normalizer(model)
        scales: dict[str, Any] = {t.name: None for t in self.task_states_}
        if how == "spread" and getattr(model, "n_ensemble_", 1) > 1:
            members = model._member_outputs(model._check_X(X, fit=False))
            for t in self.task_states_:
                if t.point_value:
                    spread = members[t.name].std(axis=0)
                    offsets = getattr(self, "scale_offsets_", None)
                    if offsets is None:  # calibrating: the raw spread (offsets come next)
                        scales[t.name] = spread
                    elif t.name in offsets:
                        scales[t.name] = spread + offsets[t.name]
                    else:  # a file from before fitted offsets
                        scales[t.name] = spread + 1e-3 * (np.median(spread) + 1e-12)
        elif how == "residual" and residual:
            F = model.feature_encoder().transform(X)
            for name, reg in residual.items():
                scales[name] = np.exp(reg.predict(F))
        return scales

    def _tempered(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        temps = getattr(self, "temperatures_", {})
        if not temps:
            return outputs
        out = dict(outputs)
        for t in self.task_states_:
            if t.name in temps:
                out[t.name] = t.temper(out[t.name], np.asarray(temps[t.name]))
        return out

    def _thresholds(self, alpha: float) -> dict[str, Any]:
        """Per group (``""``: everyone), per task, the score threshold (per label for
        multilabel tasks)."""
        groups = {"": np.ones(len(next(iter(self.scores_.values()))), dtype=bool)}
        if self.groups_ is not None:
            groups.update({g: self.groups_ == g for g in np.unique(self.groups_)})
        out: dict[str, Any] = {}
        for group, rows in groups.items():
            where = f" in group {self.groups}={group!r}" if group else ""
            if self.joint:
                out[group] = self._joint_thresholds({k: v[rows] for k, v in self.scores_.items()},
                                                    alpha, where)
                continue
            thresholds: dict[str, Any] = {}
            for t in self.task_states_:
                scores = self.scores_[t.name][rows]
                if scores.ndim == 2:
                    thresholds[t.name] = [conformal_quantile(scores[:, j], alpha,
                                                             f"task {t.name!r} label {j}{where}")
                                          for j in range(scores.shape[1])]
                else:
                    thresholds[t.name] = conformal_quantile(scores, alpha, f"task {t.name!r}{where}")
            out[group] = thresholds
        return out

    def _joint_thresholds(self, scores: dict[str, np.ndarray], alpha: float, where: str) -> dict[str, Any]:
        columns = []
        for t in self.task_states_:
            s = scores[t.name]
            for j in range(s.shape[1] if s.ndim == 2 else 1):
                col = s[:, j] if s.ndim == 2 else s
                if np.isnan(col).all():
                    raise PolyheadError(f"task {t.name!r}{where} has no calibration labels")
                # A calibration score's rank counts the other calibration scores below it, plus
                # one: the new row's score may lie below it too. Without that one, a new row
                # (ranked against all n calibration scores) ranks a little higher than the rows
                # that set the threshold, and with many tasks the max over them fell short of
                # 1 - alpha (0.767 at alpha 0.2 on benchmarks/uncertainty.py's sets).
                n = int((~np.isnan(col)).sum())
                columns.append((t.name, j, col, _ranks(col, col) + 1.0 / (n + 1)))
        ranks = np.column_stack([c[3] for c in columns])
        observed = ~np.isnan(ranks).all(axis=1)
        joint = np.where(observed, np.nanmax(np.where(np.isnan(ranks), -np.inf, ranks), axis=1), np.nan)
        level = conformal_quantile(joint, alpha, f"the joint score{where}")
        thresholds: dict[str, Any] = {}
        for name, _label, col, _ in columns:
            # a score's rank is #(smaller scores) / (n + 1), so rank <= k / (n + 1) exactly
            # when the score is at most the (k + 1)-th smallest
            ref = np.sort(col[~np.isnan(col)])
            k = round(level * (len(ref) + 1))
            value = float(ref[min(k, len(ref) - 1)])
            if isinstance(thresholds.get(name), list) or (scores[name].ndim == 2):
                thresholds.setdefault(name, []).append(value)
            else:
                thresholds[name] = value
        thresholds[JOINT] = level
        return thresholds

    # -- predict -------------------------------------------------------------------------------
    def _predict_outputs(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        from ..kinds import align_outputs

        outputs = [self._model_outputs(m, X) for m in self.estimators_]
        mean = {t.name: np.mean([align_outputs(o[t.name], m.task_states_[i], t)
                                 for o, m in zip(outputs, self.estimators_, strict=True)], axis=0)
                for i, t in enumerate(self.task_states_)}
        return self._tempered(mean)

    def predict_intervals(self, X: Any, alpha: float | None = None) -> dict[str, pd.DataFrame]:
        """Per task, its prediction region for every row of X: ``lower`` and ``upper`` for
        regression, count and quantile tasks; a bool column per class for binary, multiclass
        and ordinal tasks (a contiguous range for ordinal); ``label:0`` / ``label:1`` per label
        for multilabel tasks. ``alpha`` (default: the fitted one) may be changed without
        refitting: the calibration scores are kept."""
        outputs, index = self._outputs(X)
        outputs = conditions.apply(self.task_states_, outputs)
        Xf = self._check_X(X, fit=False)
        thresholds = self.thresholds_ if alpha is None or alpha == self.alpha else self._thresholds(
            self._checked_alpha(alpha))
        scales = self._mean_scales(Xf)
        group = (np.full(len(Xf), "") if self.groups_ is None
                 else Xf[self.groups].astype(str).to_numpy())
        regions = {}
        for t in self.task_states_:
            per_row = self._per_row_threshold(thresholds, t.name, group)
            regions[t.name] = t.region(outputs[t.name], per_row, scales[t.name],
                                       self._method_for(t), index)
        return regions

    def interval_frame(self, X: Any, alpha: float | None = None) -> pd.DataFrame:
        """Every task's region as columns of one frame (for files and the service): numbers
        as ``task:lower`` / ``task:upper``, sets as a bool column ``task:set=class`` per class
        (``task:set=label:0`` / ``task:set=label:1`` per label of a multilabel task)."""
        regions = self.predict_intervals(X, alpha)
        columns: dict[str, Any] = {}
        for name, region in regions.items():
            for col in region.columns:
                key = f"{name}:{col}" if col in ("lower", "upper") else f"{name}:set={col}"
                columns[key] = region[col].to_numpy()
        return pd.DataFrame(columns, index=next(iter(regions.values())).index)

    def _checked_alpha(self, alpha: float) -> float:
        if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
            raise PolyheadError(f"alpha={alpha!r} must lie strictly between 0 and 1")
        return float(alpha)

    def _per_row_threshold(self, thresholds: dict[str, Any], name: str, group: np.ndarray) -> np.ndarray:
        overall = np.asarray(thresholds[""][name], dtype=float)
        values = np.empty((len(group), *overall.shape))
        for g in np.unique(group):
            chosen = thresholds.get(g, thresholds[""])[name]
            values[group == g] = np.asarray(chosen, dtype=float)
        return values

    def _mean_scales(self, X: pd.DataFrame) -> dict[str, Any]:
        parts = [self._scales(m, r, X) for m, r in zip(self.estimators_, self.residual_models_, strict=True)]
        return {t.name: (None if parts[0][t.name] is None else np.mean([p[t.name] for p in parts], axis=0))
                for t in self.task_states_}

    def evaluate_intervals(self, X: Any, y: Any, alpha: float | None = None) -> pd.DataFrame:
        """Per task: ``coverage`` (share of labelled rows whose label the region holds) and
        ``size`` (mean interval width, or mean number of classes in the set), and a ``joint``
        row: the share of rows whose every labelled task is covered."""
        regions = self.predict_intervals(X, alpha)
        n_rows = len(next(iter(regions.values())))
        yf = self._check_eval_y(y, n_rows)
        rows = []
        all_covered = np.ones(n_rows, dtype=bool)
        any_label = np.zeros(n_rows, dtype=bool)
        for t in self.task_states_:
            covered, size = t.region_stats(yf, regions[t.name])
            labelled = ~np.isnan(covered)
            all_covered &= np.where(labelled, covered == 1, True)
            any_label |= labelled
            rows.append({"task": t.name, "kind": t.kind, "n": int(labelled.sum()),
                         "coverage": float(np.nanmean(covered)) if labelled.any() else math.nan,
                         "size": float(size[labelled].mean()) if labelled.any() else math.nan})
        rows.append({"task": JOINT, "kind": "", "n": int(any_label.sum()),
                     "coverage": float(all_covered[any_label].mean()) if any_label.any() else math.nan,
                     "size": math.nan})
        table = pd.DataFrame(rows).set_index("task")
        table["target"] = 1 - (self.alpha if alpha is None else alpha)
        return table

    def evaluate(self, X: Any, y: Any) -> pd.DataFrame:
        """The wrapped model's metrics per task (as any polyhead estimator's ``evaluate``), with
        the regions' ``coverage`` and ``size`` beside them and a ``joint`` row."""
        table = super().evaluate(X, y)
        intervals = self.evaluate_intervals(X, y)
        table = table.join(intervals[["coverage", "size"]])
        joint = intervals.loc[[JOINT], ["kind", "n", "coverage", "size"]]
        return pd.concat([table, joint])

    # -- files ----------------------------------------------------------------------------------
    @classmethod
    def _check_manifest(cls, manifest: dict[str, Any], states: list[Any], encoder: Any) -> None:
        from ..exceptions import ModelFileError
        from ..persistence import check_manifest

        subs = manifest.get("estimators")
        if not (isinstance(subs, list) and subs and all(isinstance(s, dict) for s in subs)):
            raise ModelFileError("invalid estimators: Conformal wraps one model per fold")
        names = [s.name for s in states]
        for i, sub in enumerate(subs):
            check_manifest(sub)
            if [t.get("task", {}).get("name") for t in sub.get("tasks", [])] != names:
                raise ModelFileError(f"sub-model {i} does not predict the wrapper's tasks")
        thresholds = manifest.get("thresholds")

        def number(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

        if not isinstance(thresholds, dict) or "" not in thresholds or not all(
                isinstance(g, dict) and all(name in g and (number(g[name]) or (
                    isinstance(g[name], list) and all(number(v) for v in g[name]))) for name in names)
                for g in thresholds.values()):
            raise ModelFileError("invalid thresholds")
        groups = manifest.get("groups")
        if groups is not None and not (isinstance(groups, list) and all(isinstance(g, str) for g in groups)):
            raise ModelFileError("invalid groups")
        offsets = manifest.get("scale_offsets")
        if offsets is not None and not (isinstance(offsets, dict) and set(offsets) <= set(names) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
                for v in offsets.values())):
            raise ModelFileError("invalid scale_offsets")
        residual = manifest.get("residual_tasks", [])
        if not (isinstance(residual, list) and len(residual) in (0, len(subs)) and all(
                isinstance(r, list) and set(r) <= set(names) for r in residual)):
            raise ModelFileError("invalid residual_tasks")

    def _extra_state(self) -> dict[str, Any]:
        return {"thresholds": self.thresholds_, "temperatures": self.temperatures_,
                "scale_offsets": self.scale_offsets_,
                "groups": None if self.groups_ is None else self.groups_.tolist(),
                "residual_tasks": [sorted(r) for r in self.residual_models_]}

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        state, tensors = super()._get_state()
        for name, scores in self.scores_.items():
            tensors[f"scores/{name}"] = np.asarray(scores, dtype=np.float64)
        self._files.update(self._residual_files())
        return state, tensors

    def _residual_files(self) -> dict[str, bytes]:
        from ..io import sklearn_arrays

        return {f"residual{i}_{j}.safetensors": sklearn_arrays.dumps(models[name])
                for i, models in enumerate(self.residual_models_)
                for j, name in enumerate(sorted(models))}

    def _set_state(self, manifest: dict[str, Any], tensors: dict[str, np.ndarray],
                   files: dict[str, bytes] | None = None) -> None:
        files = files or {}
        super()._set_state(manifest, {k: v for k, v in tensors.items() if not k.startswith("scores/")},
                           {k: v for k, v in files.items() if not k.startswith("residual")})
        self.scores_ = {t.name: tensors[f"scores/{t.name}"] for t in self.task_states_}
        self.thresholds_ = manifest["thresholds"]
        self.temperatures_ = manifest.get("temperatures") or {}
        self.scale_offsets_ = manifest.get("scale_offsets")  # None: a file from before them
        groups = manifest.get("groups")
        self.groups_ = None if groups is None else np.asarray(groups, dtype=object)
        self.residual_models_ = [
            {name: _residual_model(files, i, j, name) for j, name in enumerate(names)}
            for i, names in enumerate(manifest.get("residual_tasks") or [[] for _ in self.estimators_])]


def _residual_model(files: dict[str, bytes], i: int, j: int, name: str) -> Any:
    """The residual model of task ``name`` (estimator ``i``): arrays, or an old skops file."""
    from ..io import legacy, sklearn_arrays

    if f"residual{i}_{j}.safetensors" in files:
        return sklearn_arrays.loads(files[f"residual{i}_{j}.safetensors"])
    if f"residual{i}__{name}.skops" in files:
        return legacy.load_skops(files[f"residual{i}__{name}.skops"])
    raise ModelFileError(f"the residual model of task {name!r} is missing")
