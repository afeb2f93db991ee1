"""The shared machinery of the tree and linear families: tasks become output *slots*, a family
groups slots into fitted models ("units"), and predictions flow back into per-task outputs.

A slot is one output column: a regression task is one slot, a binary or multiclass task one
slot of class codes, a multilabel task one binary slot per label. Regression slots are fitted
on standardised targets, so multi-output models weigh every target alike.

Units are persisted without pickle: scikit-learn models with skops against an explicit
allow-list of types (:data:`TRUSTED_TYPES`), boosters in their own formats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from .. import _params as P
from ..exceptions import ModelFileError
from ..features import FeatureEncoder
from ..tasks import FittedTask, multilabel_values, regression_values
from .base import MultiTaskMixin

# Types a skops file may construct when loaded; anything else is refused (tampered file).
TRUSTED_TYPES = frozenset({
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.common.PREDICTOR_RECORD_DTYPE",
    "sklearn._loss.loss.HalfSquaredError", "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss", "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.LogitLink", "sklearn._loss.link.SymmetricMultinomialLogit",
    "sklearn._loss.link.Interval", "sklearn._loss._loss.CyHalfSquaredError",
    "sklearn._loss._loss.CyHalfBinomialLoss", "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn.utils._bunch.Bunch", "builtins.slice", "numpy.random._mt19937.MT19937",
    "numpy.random.mtrand.RandomState", "numpy.random._pickle.__randomstate_ctor",
    "numpy.random._pickle.__bit_generator_ctor", "numpy.dtype",
})


@dataclass
class Slot:
    """One output column of one task: values, observed-mask, and how to read it back."""

    task: str
    kind: str                 # "regression" or "classification"
    label: int | None         # label index for multilabel tasks
    n_classes: int            # 0 for regression
    values: np.ndarray = field(repr=False)
    mask: np.ndarray = field(repr=False)

    @property
    def key(self) -> str:
        return self.task if self.label is None else f"{self.task}[{self.label}]"


def make_slots(states: list[FittedTask], y: pd.DataFrame) -> list[Slot]:
    slots = []
    for t in states:
        if t.kind == "regression":
            raw = regression_values(t.task, y[t.task.source_columns[0]])
            mask = ~np.isnan(raw)
            z = np.where(mask, (raw - t.mean) / t.scale, 0.0)
            slots.append(Slot(t.name, "regression", None, 0, z, mask))
        elif t.kind == "multilabel":
            values = multilabel_values(t.task, y)
            for j in range(values.shape[1]):
                mask = ~np.isnan(values[:, j])
                slots.append(Slot(t.name, "classification", j, 2,
                                  np.where(mask, values[:, j], 0).astype(np.int64), mask))
        else:
            codes = t.class_codes(y[t.task.source_columns[0]])
            mask = codes >= 0
            slots.append(Slot(t.name, "classification", None, t.out_dim if t.kind == "multiclass" else 2,
                              np.where(mask, codes, 0).astype(np.int64), mask))
    return slots


def groups_by_kind(slots: list[Slot], *, joint: bool = True) -> list[list[Slot]]:
    """Slots grouped for multi-output models: one group per kind when every row has either all
    or none of the group's labels; otherwise (labels missing unevenly) one group per slot."""
    groups = []
    for kind in ("regression", "classification"):
        members = [s for s in slots if s.kind == kind]
        if not members:
            continue
        masks = np.column_stack([s.mask for s in members])
        consistent = bool(np.all(masks.all(axis=1) == masks.any(axis=1)))
        if joint and len(members) > 1 and consistent:
            groups.append(members)
        else:
            groups.extend([s] for s in members)
    return groups


def stack_targets(group: list[Slot]) -> tuple[np.ndarray, np.ndarray]:
    """Rows with every label of the group, and the (n,) or (n, k) target for them."""
    rows = np.flatnonzero(np.all(np.column_stack([s.mask for s in group]), axis=1))
    y = np.column_stack([s.values[rows] for s in group])
    return rows, (y[:, 0] if len(group) == 1 else y)


class SklearnMultiTask(MultiTaskMixin, BaseEstimator):
    """Base of the estimator families built from scikit-learn-style models.

    Subclasses implement ``_fit_units(F, slots)`` returning ``[(slot keys, model), ...]`` and
    may override ``_predict_unit``/``_unit_to_bytes``/``_unit_from_bytes`` for non-sklearn
    models (boosters).
    """

    _standardize_features = True
    _common: dict[str, list[Any]] = {"random_state": [P.SEED], "n_jobs": [P.NONE, P.Interval(int, -1, None)],
                                     "max_categories": [P.Interval(int, 1, None)]}
    max_categories: int

    def fit(self, X: Any, y: Any) -> Any:
        """Fit on features ``X`` and targets ``y`` (one column per task)."""
        P.validate_params(self, {**self._common, **self._parameter_constraints})
        Xf, yf = self._prepare_fit(X, y)
        self.features_ = FeatureEncoder(numeric="standard" if self._standardize_features else "none",
                                        max_categories=self.max_categories).fit(Xf)
        F = self.features_.transform(Xf)
        slots = make_slots(self.task_states_, yf)
        self.slots_ = [(s.key, s.task, s.kind, s.label, s.n_classes) for s in slots]
        self.units_ = self._fit_units(F, slots)
        return self

    def _fit_units(self, F: np.ndarray, slots: list[Slot]) -> list[tuple[list[str], Any]]:  # pragma: no cover
        raise NotImplementedError

    # -- predict -------------------------------------------------------------------------------
    def _predict_unit(self, model: Any, F: np.ndarray, slots: list[tuple]) -> list[np.ndarray]:
        """Per slot: regression -> standardised values (n,); classification -> (n, n_classes)."""
        if slots[0][2] == "regression":
            pred = np.asarray(model.predict(F), dtype=float).reshape(len(F), -1)
            return [pred[:, j] for j in range(len(slots))]
        proba = model.predict_proba(F)
        probas = proba if isinstance(proba, list) else [proba]
        classes = model.classes_ if isinstance(model.classes_, list) else [model.classes_]
        return [_align(p, c, s[4]) for p, c, s in zip(probas, classes, slots, strict=True)]

    def _predict_outputs(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        F = self.features_.transform(X)
        by_key = {s[0]: s for s in self.slots_}
        results: dict[str, np.ndarray] = {}
        for keys, model in self.units_:
            for key, out in zip(keys, self._predict_unit(model, F, [by_key[k] for k in keys]), strict=True):
                results[key] = out
        outputs = {}
        for t in self.task_states_:
            if t.kind == "regression":
                outputs[t.name] = results[t.name] * t.scale + t.mean
            elif t.kind == "binary":
                outputs[t.name] = results[t.name][:, 1]
            elif t.kind == "multiclass":
                outputs[t.name] = results[t.name]
            else:
                outputs[t.name] = np.column_stack(
                    [results[f"{t.name}[{j}]"][:, 1] for j in range(t.out_dim)])
        return outputs

    # -- persistence -------------------------------------------------------------------------
    def _unit_to_bytes(self, model: Any) -> tuple[str, bytes]:
        import skops.io as sio

        return "skops", sio.dumps(model)

    def _unit_from_bytes(self, fmt: str, data: bytes) -> Any:
        if fmt != "skops":
            raise ModelFileError(f"unexpected model format {fmt!r} for {type(self).__name__}")
        return load_skops(data)

    def _get_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        units: list[dict[str, Any]] = []
        state = {"slots": [list(s) for s in self.slots_], "units": units,
                 "feature_standardize": self._standardize_features}
        self._files: dict[str, bytes] = {}
        for i, (keys, model) in enumerate(self.units_):
            fmt, data = self._unit_to_bytes(model)
            name = f"unit{i}.{fmt}"
            self._files[name] = data
            units.append({"slots": keys, "file": name, "format": fmt,
                                   "model": type(model).__name__})
        return state, {}

    def _get_files(self) -> dict[str, bytes]:
        return self._files

    def _set_state(self, manifest: dict[str, Any], tensors: dict[str, np.ndarray],
                   files: dict[str, bytes] | None = None) -> None:
        files = files or {}
        self.slots_ = [tuple(s) for s in manifest["slots"]]
        units = []
        for unit in manifest["units"]:
            if unit["file"] not in files:
                raise ModelFileError(f"model file {unit['file']} is missing")
            units.append((list(unit["slots"]), self._unit_from_bytes(unit["format"], files[unit["file"]])))
        self.units_ = units


def _align(proba: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities over all ``n_classes`` codes (classes absent in training get 0)."""
    full = np.zeros((proba.shape[0], n_classes))
    full[:, np.asarray(classes, dtype=int)] = proba
    return full


def load_skops(data: bytes) -> Any:
    """Load skops bytes, trusting only :data:`TRUSTED_TYPES`; anything else is refused."""
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # skops raises assorted errors on damaged archives
        raise ModelFileError(f"model file cannot be read: {type(exc).__name__}: {exc}") from None
    refused = sorted(set(untrusted) - TRUSTED_TYPES)
    if refused:
        raise ModelFileError(f"model file asks to load untrusted types: {', '.join(refused[:5])}")
    try:
        return sio.loads(data, trusted=list(untrusted))
    except Exception as exc:
        raise ModelFileError(f"model file cannot be loaded: {type(exc).__name__}: {exc}") from None
