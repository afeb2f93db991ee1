"""The shared machinery of the tree and linear families.

Each task's kind turns it into *slots* (:class:`~polyhead.kinds.Slot`): single-output problems,
each with an objective ("regression", "classification", "poisson", "quantile"). A family groups
slots into fitted models ("units"), fitting each with the estimator it has for that objective
(or refusing the task in one line), and each kind turns its slots' predictions back into its
outputs. Sample weights and condition masks reach every slot; a classification slot whose
labels are all one class (a constant multilabel label, common in a cross-validation fold) is a
:class:`ConstantUnit`, the same in every family.

Units are persisted without pickle: scikit-learn models as their arrays
(:mod:`polyhead.io.sklearn_arrays`, rebuilt from an allow-list of types), boosters in their own
formats, constants as JSON. Directories written by polyhead < 0.3 hold skops files; they are
refused with a line saying how to re-save them (``polyhead upgrade``, :mod:`polyhead.io.legacy`).
"""

from __future__ import annotations

import json
import math
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from .. import _params as P
from ..exceptions import ModelFileError, PolyheadError
from ..features import FeatureEncoder
from ..kinds import Kind, Slot
from .base import MultiTaskMixin

_EXTENSION = {"arrays": "safetensors"}
SlotInfo = tuple[str, str, str, int, Any]  # key, task, objective, n_classes, alpha


def make_slots(states: list[Kind], y: pd.DataFrame,
               weights: dict[str, np.ndarray | None]) -> list[tuple[str, Slot]]:
    """Every task's slots, with its training weights (missing labels, conditions, sample
    weights) folded into each slot's mask and weight: ``[(task name, slot), ...]``."""
    out = []
    for state in states:
        slots = state.slots(y)
        weight = weights.get(state.name)
        for j, slot in enumerate(slots):
            slot.task = state.name
            if weight is not None:
                w = weight[:, j] if weight.ndim == 2 else weight
                slot.mask = slot.mask & (w > 0)
                kept = w[slot.mask]
                slot.weight = None if np.all(kept == 1.0) else w
            out.append((state.name, slot))
    return out


def groups_by_objective(slots: list[Slot], objectives: tuple[str, ...] = (
        "regression", "classification", "poisson")) -> list[list[Slot]]:
    """Slots grouped for multi-output models: one group per objective when every row has
    either all or none of the group's labels and their weights agree; otherwise (labels missing
    unevenly, per-column weights) one group per slot."""
    groups: list[list[Slot]] = []
    for objective in objectives:
        members = [s for s in slots if s.objective == objective]
        if not members:
            continue
        masks = np.column_stack([s.mask for s in members])
        consistent = bool(np.all(masks.all(axis=1) == masks.any(axis=1)))
        same_weights = all(_same(s.weight, members[0].weight) for s in members)
        if len(members) > 1 and consistent and same_weights:
            groups.append(members)
        else:
            groups.extend([s] for s in members)
    groups.extend([s] for s in slots if s.objective not in objectives)
    return groups


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return bool(np.array_equal(a, b))


def stack_targets(group: list[Slot]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Rows with every label of the group, the (n,) or (n, k) target, and the rows' weights."""
    rows = np.flatnonzero(np.all(np.column_stack([s.mask for s in group]), axis=1))
    y = np.column_stack([s.values[rows] for s in group])
    weight = None if group[0].weight is None else group[0].weight[rows]
    return rows, (y[:, 0] if len(group) == 1 else y), weight


class ConstantUnit:
    """The prediction of a classification slot that saw a single class: that class, with
    probability 1 (what a forest fitted on such a label predicts)."""

    def __init__(self, code: int, n_classes: int) -> None:
        self.code = int(code)
        self.n_classes = int(n_classes)
        self.classes_ = np.arange(self.n_classes)

    def predict_proba(self, F: np.ndarray) -> np.ndarray:
        proba = np.zeros((len(F), self.n_classes))
        proba[:, self.code] = 1.0
        return proba

    def to_bytes(self) -> bytes:
        return json.dumps({"code": self.code, "n_classes": self.n_classes}).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ConstantUnit:
        try:
            meta = json.loads(data)
            code, n = meta["code"], meta["n_classes"]
        except (ValueError, KeyError, TypeError):
            raise ModelFileError("a constant unit is malformed") from None
        if not (isinstance(code, int) and isinstance(n, int) and 0 <= code < n <= 10**6):
            raise ModelFileError("a constant unit is malformed")
        return cls(code, n)


class SklearnMultiTask(MultiTaskMixin, BaseEstimator):
    """Base of the estimator families built from scikit-learn-style models.

    Subclasses list the ``objectives`` they can fit, implement ``_fit_group(group, F, y, w)``
    returning a fitted model, and may override ``_groups`` (which slots share a model),
    ``_predict_unit`` and ``_unit_to_bytes``/``_unit_from_bytes`` (boosters).
    """

    _standardize_features = True
    objectives: ClassVar[tuple[str, ...]] = ("regression", "classification")
    _common: dict[str, list[Any]] = {"random_state": [P.SEED], "n_jobs": [P.NONE, P.Interval(int, -1, None)],
                                     "max_categories": [P.Interval(int, 1, None)]}
    max_categories: int
    #: what ``_fit_group`` leaves for ``shrinkage="auto"``: (positions, held-out predictions)
    _heldout: tuple[np.ndarray, np.ndarray] | None = None

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> Any:
        """Fit on features ``X`` and targets ``y`` (one column per task).

        ``sample_weight``: one weight per row, or a DataFrame shaped like ``y`` with a weight
        per row and target column.
        """
        self._check_params()
        if type(X).__name__ == "ParquetSource":
            if y is not None or sample_weight is not None:
                raise PolyheadError("fit(source): a ParquetSource holds its own targets; pass no "
                                    "y (and sample weights are not available when streaming)")
            self._fit_source(X)
            return self
        Xf, yf = self._prepare_fit(X, y, sample_weight)
        self._check_objectives(yf)
        self.features_ = FeatureEncoder(numeric="standard" if self._standardize_features else "none",
                                        max_categories=self.max_categories).fit(Xf)
        F = self.features_.transform(Xf)
        pairs = make_slots(self.task_states_, yf, self._training_weights)
        slots = [s for _, s in pairs]
        self.slots_: list[SlotInfo] = [(s.key, task, s.objective, s.n_classes, s.alpha)
                                       for task, s in pairs]
        self.units_ = self._fit_units(F, slots)
        return self

    def _check_objectives(self, y: pd.DataFrame) -> None:
        for state in self.task_states_:
            needed = {s.objective for s in state.slots(y.iloc[:0])}
            missing = sorted(needed - set(self.objectives))
            if missing:
                raise PolyheadError(f"{type(self).__name__} cannot fit task {state.name!r} "
                                    f"({state.kind}): it has no {missing[0]} objective")

    def _fit_source(self, source: Any) -> None:
        """Training from a :class:`~polyhead.io.ParquetSource` (families that can stream
        override this)."""
        raise PolyheadError(f"{type(self).__name__} cannot train from a stream; MultiTaskNet and "
                            "MultiTaskGBM(backend='xgboost') can. Read it into memory (frame = "
                            "source.read(); fit(frame[features], frame[targets]))")

    def _groups(self, slots: list[Slot]) -> list[list[Slot]]:
        return [[s] for s in slots]

    def _fit_units(self, F: np.ndarray, slots: list[Slot]) -> list[tuple[list[str], Any]]:
        from threadpoolctl import threadpool_limits

        from ..parallel import tree_threads

        # one thread count for the whole fit (see polyhead.parallel): the libraries' own
        # threads (n_jobs below) and their BLAS / OpenMP pools alike
        self._threads = tree_threads(len(F), getattr(self, "n_jobs", None))
        with threadpool_limits(limits=self._threads):
            return self._fit_each(F, slots)

    def _fit_each(self, F: np.ndarray, slots: list[Slot]) -> list[tuple[list[str], Any]]:
        units = []
        self.shrinkage_: dict[str, tuple[float, float]] = {}
        for group in self._groups(slots):
            rows, y, weight = stack_targets(group)
            keys = [s.key for s in group]
            if not len(rows):
                raise PolyheadError(f"output {group[0].key!r} has no labelled row to learn from")
            if len(group) == 1 and group[0].objective == "classification":
                present = np.unique(y)
                if len(present) < 2:
                    units.append((keys, ConstantUnit(int(present[0]), group[0].n_classes)))
                    continue
            self._heldout = None
            units.append((keys, self._fit_group(group, F[rows], y, weight)))
            self._shrink_group(group, y, weight)
        return units

    def _shrink_group(self, group: list[Slot], y: np.ndarray, weight: np.ndarray | None) -> None:
        """``shrinkage="auto"``: each regression output of the group gets the factor its
        held-out predictions support (:mod:`polyhead.models.shrinkage`); ``_fit_group`` leaves
        them in ``self._heldout`` as (positions in the group's rows, predictions)."""
        from . import shrinkage

        held, self._heldout = self._heldout, None
        if held is None or getattr(self, "shrinkage", "none") != "auto" or group[0].objective != "regression":
            return
        positions, pred = held
        if not len(positions):
            return
        pred = np.asarray(pred, dtype=float).reshape(len(positions), -1)
        Y = y.reshape(len(y), -1)
        for j, slot in enumerate(group):
            mean = shrinkage.training_mean(Y[:, j], weight)
            factor = shrinkage.choose(pred[:, j], Y[positions, j], mean,
                                      None if weight is None else weight[positions])
            if factor is not None:
                self.shrinkage_[slot.key] = (factor, mean)

    def _fit_group(self, group: list[Slot], F: np.ndarray, y: np.ndarray,
                   weight: np.ndarray | None) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- predict -------------------------------------------------------------------------------
    def _predict_unit(self, model: Any, F: np.ndarray, slots: list[SlotInfo]) -> list[np.ndarray]:
        """Per slot: standardised values (regression, quantile), counts (poisson), or
        ``(n, n_classes)`` probabilities (classification)."""
        if slots[0][2] != "classification":
            pred = np.asarray(model.predict(F), dtype=float).reshape(len(F), -1)
            return [pred[:, j] for j in range(len(slots))]
        proba = model.predict_proba(F)
        probas = proba if isinstance(proba, list) else [proba]
        classes = model.classes_ if isinstance(model.classes_, list) else [model.classes_]
        return [_align(p, c, s[3]) for p, c, s in zip(probas, classes, slots, strict=True)]

    def _predict_outputs(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        from threadpoolctl import threadpool_limits

        from ..parallel import tree_threads
        from . import shrinkage

        F = self.features_.transform(X)
        by_key = {s[0]: s for s in self.slots_}
        results: dict[str, np.ndarray] = {}
        with threadpool_limits(limits=tree_threads(len(F), getattr(self, "n_jobs", None))):
            for keys, model in self.units_:
                for key, out in zip(keys, self._predict_unit(model, F, [by_key[k] for k in keys]), strict=True):
                    results[key] = out
        for key, (factor, mean) in getattr(self, "shrinkage_", {}).items():
            results[key] = shrinkage.apply(results[key], factor, mean)
        return {t.name: t.from_slots(results) for t in self.task_states_}

    # -- persistence -------------------------------------------------------------------------
    def _unit_to_bytes(self, model: Any) -> tuple[str, bytes]:
        if isinstance(model, ConstantUnit):
            return "constant", model.to_bytes()
        from ..io import sklearn_arrays

        return "arrays", sklearn_arrays.dumps(model)

    def _unit_from_bytes(self, fmt: str, data: bytes) -> Any:
        if fmt == "constant":
            return ConstantUnit.from_bytes(data)
        if fmt == "arrays":
            from ..io import sklearn_arrays

            return sklearn_arrays.loads(data)
        if fmt == "skops":
            from ..io.legacy import load_skops

            return load_skops(data)
        raise ModelFileError(f"unexpected model format {fmt!r} for {type(self).__name__}")

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        units: list[dict[str, Any]] = []
        state = {"slots": [list(s) for s in self.slots_], "units": units,
                 "feature_standardize": self._standardize_features,
                 "n_inputs": self.features_.n_outputs_,
                 "shrinkage": {k: list(v) for k, v in getattr(self, "shrinkage_", {}).items()}}
        self._files: dict[str, bytes] = {}
        for i, (keys, model) in enumerate(self.units_):
            fmt, data = self._unit_to_bytes(model)
            name = f"unit{i}.{_EXTENSION.get(fmt, fmt)}"
            self._files[name] = data
            units.append({"slots": keys, "file": name, "format": fmt,
                          "model": type(model).__name__})
        return state, {}

    def _get_files(self) -> dict[str, bytes]:
        return self._files

    @classmethod
    def _check_manifest(cls, manifest: dict[str, Any], states: list[Any], encoder: Any) -> None:
        """Slots must be exactly those the tasks' kinds imply, and every slot must belong to
        exactly one unit."""
        slots, units = manifest.get("slots"), manifest.get("units")
        if encoder is None or not isinstance(slots, list) or not isinstance(units, list):
            raise ModelFileError("invalid model section: features, slots and units are needed")
        if manifest.get("n_inputs", encoder.n_outputs_) != encoder.n_outputs_:
            raise ModelFileError(f"invalid features: the encoder makes {encoder.n_outputs_} "
                                 f"inputs, the models were fitted on {manifest.get('n_inputs')!r}")
        expected = [[s.key, state.name, s.objective, s.n_classes, s.alpha]
                    for state in states for s in state.slots(_empty_labels(state))]
        if slots != expected:
            raise ModelFileError("invalid slots: they differ from what the tasks imply")
        keys: list[str] = []
        for unit in units:
            if not (isinstance(unit, dict) and isinstance(unit.get("slots"), list)
                    and isinstance(unit.get("file"), str) and isinstance(unit.get("format"), str)):
                raise ModelFileError(f"invalid unit entry {unit!r}")
            keys += unit["slots"]
        if sorted(map(str, keys)) != sorted(s[0] for s in expected):
            raise ModelFileError("invalid units: every output needs exactly one fitted model")

    def _set_state(self, manifest: dict[str, Any], tensors: dict[str, np.ndarray],
                   files: dict[str, bytes] | None = None) -> None:
        files = files or {}
        slots = manifest.get("slots")
        if not isinstance(slots, list):
            raise ModelFileError("the manifest has no list of slots")
        self.slots_ = []
        for s in slots:
            if not (isinstance(s, list) and len(s) == 5 and isinstance(s[0], str)):
                raise ModelFileError(f"invalid slot entry {s!r}")
            key, task, objective, n_classes, alpha = s
            if objective in ("regression", "classification") and not isinstance(n_classes, int):
                raise ModelFileError(f"invalid slot entry {s!r}")
            self.slots_.append((key, task, objective, n_classes, alpha))
        known = {s[0] for s in self.slots_}
        units = []
        for unit in manifest.get("units") or []:
            if not isinstance(unit, dict) or unit.get("file") not in files:
                raise ModelFileError(f"model file {unit.get('file') if isinstance(unit, dict) else unit} is missing")
            keys = unit.get("slots")
            if not isinstance(keys, list) or not set(keys) <= known:
                raise ModelFileError(f"unit {unit['file']} names unknown outputs")
            model = self._unit_from_bytes(unit["format"], files[unit["file"]])
            width = _unit_width(model)
            if width is not None and width != self.features_.n_outputs_:
                raise ModelFileError(f"unit {unit['file']} was fitted on {width} inputs; the "
                                     f"feature encoder makes {self.features_.n_outputs_}")
            units.append((list(keys), model))
        self.units_ = units
        self.shrinkage_ = _read_shrinkage(manifest.get("shrinkage", {}), self.slots_)


def _read_shrinkage(entries: Any, slots: list[SlotInfo]) -> dict[str, tuple[float, float]]:
    """A model file's shrinkage factors, checked: regression outputs only, a factor in [0, 1)
    and a finite mean."""
    regression = {s[0] for s in slots if s[2] == "regression"}
    if not isinstance(entries, dict):
        raise ModelFileError("invalid shrinkage: a mapping from output to [factor, mean] is needed")
    out: dict[str, tuple[float, float]] = {}
    for key, value in entries.items():
        ok = (key in regression and isinstance(value, list) and len(value) == 2
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))
        if not ok or not (0 <= value[0] < 1 and math.isfinite(value[1])):
            raise ModelFileError(f"invalid shrinkage entry {key!r}: {value!r}")
        out[key] = (float(value[0]), float(value[1]))
    return out


def _unit_width(model: Any) -> int | None:
    """How many inputs a fitted unit expects (None: any, a constant)."""
    if isinstance(model, ConstantUnit):
        return None
    width = getattr(model, "n_features_in_", None)
    if width is None and hasattr(model, "n_inputs"):
        width = model.n_inputs()
    return None if width is None else int(width)


def _empty_labels(state: Kind) -> pd.DataFrame:
    """A zero-row frame with a task's columns (what its slots look like, without data)."""
    return pd.DataFrame({c: pd.Series([], dtype=float) for c in state.task.source_columns})


def _align(proba: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities over all ``n_classes`` codes (classes absent in training get 0)."""
    full = np.zeros((proba.shape[0], n_classes))
    full[:, np.asarray(classes, dtype=int)] = proba
    return full


def fit_params(model: Any, weight: np.ndarray | None) -> dict[str, Any]:
    """``sample_weight`` for ``model.fit`` when there are weights (an error if it cannot take
    them)."""
    if weight is None:
        return {}
    from sklearn.utils.validation import has_fit_parameter

    if not has_fit_parameter(model, "sample_weight"):
        raise PolyheadError(f"{type(model).__name__} does not take sample_weight")
    return {"sample_weight": weight}
