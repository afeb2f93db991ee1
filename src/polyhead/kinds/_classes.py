"""What kinds with class labels share: learning the classes, coding labels, scoring classes."""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .._convert import plain
from ..exceptions import TaskError
from .base import EPS, Kind

#: the label dtypes a model file may name (numpy's ``dtype.str``); anything else is refused
_NUMBER_DTYPE = re.compile(r"[<>|=]?(b1|[iu][1248]|f[248])")
_OTHER_DTYPE = re.compile(r"[<>|=]?(O|[US][0-9]{1,6})")


def numeric_kind(values: pd.Series) -> str | None:
    """'integer' or 'floating' when values are numbers (of any dtype), else None."""
    inferred = pd.api.types.infer_dtype(values, skipna=True)
    if inferred in ("integer",):
        return "integer"
    if inferred in ("floating", "mixed-integer-float", "decimal"):
        return "floating"
    return None


def class_labels(values: pd.Series) -> np.ndarray:
    """Sorted distinct labels, keeping their type; integral floats become ints."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        present = set(values.dropna().unique().tolist())
        return np.asarray([c for c in values.dtype.categories if c in present], dtype=object)
    observed = values.dropna()
    if numeric_kind(observed) == "integer":  # ints in an object column (beside None) stay ints
        return np.unique(observed.to_numpy().astype(np.int64))
    if numeric_kind(observed) == "floating":
        as_float = observed.astype(float).to_numpy()
        if np.all(np.mod(as_float, 1) == 0):
            return np.unique(as_float.astype(np.int64))
        return np.unique(as_float)
    raw = observed.to_numpy()
    try:
        labels = np.unique(raw)
    except TypeError:  # mixed types cannot be ordered: order by their text
        labels = np.asarray(sorted(set(raw.tolist()), key=str), dtype=object)
    if labels.dtype.kind in "OUST" or str(labels.dtype) == "str":
        labels = np.asarray(labels.tolist(), dtype=object)
    return labels


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """ECE: the mean gap between confidence and accuracy over ``bins`` equal-width confidence
    bins, weighted by how many rows fall in each (Guo et al., 2017)."""
    if not len(confidence):
        return float("nan")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        rows = which == b
        if rows.any():
            total += rows.sum() * abs(confidence[rows].mean() - correct[rows].mean())
    return float(total / len(confidence))


def labels_json_type(classes: np.ndarray) -> dict[str, Any]:
    kinds = {type(plain(c)) for c in classes.tolist()}
    if kinds <= {bool}:
        return {"type": "boolean"}
    if kinds <= {int}:
        return {"type": "integer"}
    if kinds <= {int, float}:
        return {"type": "number"}
    if kinds <= {str}:
        return {"type": "string"}
    return {}


class ClassKind(Kind):
    """A kind whose target is one column of class labels (binary, multiclass, ordinal)."""

    has_proba = True
    can_condition = True
    _classes: np.ndarray | None = None
    _index: pd.Index | None = None

    @property
    def classes(self) -> np.ndarray | None:
        return self._classes

    def fit_classes(self, y: pd.DataFrame, most: int | None = None) -> None:
        """Learn the classes of the task's column: at least two, at most ``most``."""
        column = self.column(y)
        classes = class_labels(column)
        if len(classes) < 2:
            raise TaskError(f"task {self.name!r}: column {column.name!r} has only one class "
                            f"({plain(classes[0])!r}); a classification task needs at least two")
        if most is not None and len(classes) > most:
            raise TaskError(f"task {self.name!r}: {self.kind} task has {len(classes)} classes "
                            f"(e.g. {', '.join(map(repr, map(plain, classes[:4].tolist())))}); "
                            "use kind='multiclass'")
        self.set_classes(classes, column)

    def set_classes(self, classes: np.ndarray, column: pd.Series | None = None) -> None:
        self._classes = classes
        self._index = None
        if column is not None:
            self.learn_prior(self.class_codes(column))

    def class_codes(self, column: pd.Series) -> np.ndarray:
        """Index of each label in ``classes``: -1 for missing labels, -2 for unseen classes."""
        assert self._classes is not None
        missing = column.isna().to_numpy()
        values = column.to_numpy(dtype=object)
        if self._index is None:
            self._index = pd.Index(self._classes.tolist(), dtype=object)
        codes = self._index.get_indexer(pd.Index(values.tolist(), dtype=object))
        if self._classes.dtype.kind in "iuf":  # 3 and 3.0 are the same class
            numeric = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
            unmatched = (codes < 0) & ~np.isnan(numeric)
            if unmatched.any():
                codes[unmatched] = self._index.get_indexer(pd.Index(numeric[unmatched].tolist()))
        codes = np.where(codes < 0, -2, codes)
        codes[missing] = -1
        return codes.astype(np.int64)

    _prior: np.ndarray | None = None

    def learn_prior(self, codes: np.ndarray) -> None:
        """Class frequencies of the training labels (for :meth:`head_bias`)."""
        assert self._classes is not None
        known = codes[codes >= 0]
        counts = np.bincount(known, minlength=len(self._classes)).astype(float)
        self._prior = (counts + 0.5) / (counts.sum() + 0.5 * len(counts))

    def proba_array(self, outputs: np.ndarray) -> np.ndarray:
        """Outputs as ``(n, n_classes)`` probabilities."""
        return outputs

    def proba_frame(self, outputs: np.ndarray, index: pd.Index) -> pd.DataFrame:
        assert self._classes is not None
        return pd.DataFrame(self.proba_array(outputs), index=index, columns=self._classes.tolist())

    def predict(self, outputs: np.ndarray) -> np.ndarray:
        assert self._classes is not None
        return self._classes[self.proba_array(outputs).argmax(axis=1)]

    def export_decode(self, outputs: Any) -> tuple[Any, Any]:
        return outputs.argmax(dim=-1), outputs

    def otherwise_output(self, value: Any, n: int) -> np.ndarray:
        """Outputs that say "class ``value``" for ``n`` rows (NaN when value is None)."""
        assert self._classes is not None
        proba = np.full((n, len(self._classes)), np.nan if value is None else 0.0)
        if value is not None:
            code = self.class_codes(pd.Series([value]))[0]
            if code < 0:
                raise TaskError(f"task {self.name!r}: otherwise={value!r} is not one of its "
                                f"classes ({', '.join(map(repr, self._classes.tolist()[:8]))})")
            proba[:, code] = 1.0
        return self.from_proba(proba)

    def from_proba(self, proba: np.ndarray) -> np.ndarray:
        """Outputs from ``(n, n_classes)`` probabilities (the inverse of proba_array)."""
        return proba

    def class_metrics(self, y: pd.DataFrame, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, float]] | None:
        """Codes and probabilities of the labelled rows, with accuracy and log loss; None
        when no row is labelled. A class never seen in training counts as a wrong prediction
        (and a probability of 0 in log loss, clipped at 1e-15), never as an error."""
        codes = self.class_codes(self.column(y))
        proba = self.proba_array(outputs)
        keep = (codes != -1) & np.isfinite(proba).all(axis=1)
        codes, proba = codes[keep], proba[keep]
        if not len(codes):
            return None
        pred = proba.argmax(axis=1)
        p_true = np.where(codes >= 0, proba[np.arange(len(codes)), np.maximum(codes, 0)], 0.0)
        onehot = np.zeros_like(proba)
        known = codes >= 0
        onehot[np.flatnonzero(known), codes[known]] = 1.0
        return codes, proba, {"n": float(len(codes)), "accuracy": float((pred == codes).mean()),
                              "log_loss": float(-np.log(np.clip(p_true, EPS, 1.0)).mean()),
                              "brier": float(((proba - onehot) ** 2).sum(axis=1).mean()),
                              "ece": expected_calibration_error(proba.max(axis=1), pred == codes)}

    def macro_f1(self, codes: np.ndarray, pred: np.ndarray) -> float:
        from sklearn import metrics as skm

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(skm.f1_score(codes, pred, average="macro", zero_division=0))

    def chain_features(self, outputs: np.ndarray) -> dict[str, np.ndarray]:
        assert self._classes is not None
        proba = self.proba_array(outputs)
        return {f"chain:{self.name}={label}": proba[:, j]
                for j, label in enumerate(self._classes.tolist())}

    def json_type(self) -> dict[str, Any]:
        assert self._classes is not None
        return labels_json_type(self._classes)

    # -- uncertainty ---------------------------------------------------------------------------------
    conformal_methods: tuple[str, ...] = ("lac", "aps")

    @staticmethod
    def class_scores(proba: np.ndarray, method: str) -> np.ndarray:
        """The score each class would have as the label: LAC ``1 - p_c`` (Sadinle et al.,
        2019), or APS the probability mass of the classes at least as likely as c (Romano et
        al., 2020), ``(n, n_classes)``."""
        if method == "lac":
            return 1.0 - proba
        order = np.argsort(-proba, axis=1, kind="stable")
        cumulative = np.cumsum(np.take_along_axis(proba, order, axis=1), axis=1)
        scores = np.empty_like(proba)
        np.put_along_axis(scores, order, cumulative, axis=1)
        return scores

    def conformity(self, y: pd.DataFrame, outputs: np.ndarray, scale: np.ndarray | None,
                   method: str) -> np.ndarray:
        codes = self.class_codes(self.column(y))
        scores = self.class_scores(self.proba_array(outputs), method)
        picked = scores[np.arange(len(codes)), np.maximum(codes, 0)]
        picked = np.where(codes == -2, np.inf, picked)  # a class never seen: never covered
        return np.where(codes == -1, np.nan, picked)

    def region(self, outputs: np.ndarray, threshold: np.ndarray, scale: np.ndarray | None,
               method: str, index: pd.Index) -> pd.DataFrame:
        assert self._classes is not None
        inside = self.class_scores(self.proba_array(outputs), method) <= np.reshape(threshold, (-1, 1))
        return pd.DataFrame(inside, index=index, columns=self._classes.tolist())

    def region_stats(self, y: pd.DataFrame, region: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        codes = self.class_codes(self.column(y))
        inside = region.to_numpy(dtype=bool)
        covered = np.where(codes >= 0, inside[np.arange(len(codes)), np.maximum(codes, 0)], False)
        return np.where(codes == -1, np.nan, covered), inside.sum(axis=1).astype(float)

    def reliability(self, y: pd.DataFrame, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The top class's probability and whether it was right, per labelled row."""
        scored = self.class_metrics(y, outputs)
        if scored is None:
            return None
        codes, proba, _ = scored
        return proba.max(axis=1), proba.argmax(axis=1) == codes

    def temper(self, outputs: np.ndarray, temperature: np.ndarray) -> np.ndarray:
        """``softmax(log p / T)``: T > 1 softens over-confident probabilities."""
        logp = np.log(np.clip(self.proba_array(outputs), 1e-12, 1.0)) / float(np.ravel(temperature)[0])
        logp -= logp.max(axis=1, keepdims=True)
        proba = np.exp(logp)
        return self.from_proba(proba / proba.sum(axis=1, keepdims=True))

    def figure(self, y: pd.DataFrame, outputs: np.ndarray, title: str) -> Any:
        from ..evaluation import plots

        column = self.column(y)
        keep = column.notna().to_numpy() & np.isfinite(self.proba_array(outputs)).all(axis=1)
        return plots.confusion(column[keep].tolist(), self.predict(outputs[keep]).tolist(), title)

    # -- files -------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        assert self._classes is not None
        return {"classes": [plain(c) for c in self._classes.tolist()],
                "classes_dtype": self._classes.dtype.str}

    def load_state(self, state: Mapping[str, Any]) -> None:
        classes = state.get("classes")
        if not isinstance(classes, list) or len(classes) < 2 or not all(
                isinstance(c, (str, int, float, bool)) and not (isinstance(c, float) and c != c)
                for c in classes):
            raise TaskError(f"task {self.name!r}: classes must be a list of at least two labels")
        if not pd.Index(classes, dtype=object).is_unique:  # pandas' equality: True == 1
            raise TaskError(f"task {self.name!r}: classes are not distinct")
        dtype_text = state.get("classes_dtype")
        # an allow-list, not numpy's parser: np.dtype() evaluates comma strings and tuples
        if dtype_text is None:
            dtype = np.dtype(object)
        elif isinstance(dtype_text, str) and _NUMBER_DTYPE.fullmatch(dtype_text):
            dtype = np.dtype(dtype_text)
        elif isinstance(dtype_text, str) and _OTHER_DTYPE.fullmatch(dtype_text):
            dtype = np.dtype(object)
        else:
            raise TaskError(f"task {self.name!r}: invalid classes_dtype {dtype_text!r}")
        if dtype.kind not in "biuf":
            dtype = np.dtype(object)
        try:
            array = np.asarray(classes, dtype=dtype)
        except (ValueError, OverflowError, TypeError):
            raise TaskError(f"task {self.name!r}: classes do not fit {dtype_text!r}") from None
        if not pd.Index(array.tolist(), dtype=object).is_unique or (
                dtype.kind in "iub" and array.tolist() != classes):
            raise TaskError(f"task {self.name!r}: classes do not fit {dtype_text!r}")
        self.set_classes(array)
