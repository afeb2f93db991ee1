"""What every polyhead estimator shares: input checks, tasks, output formats, evaluate and score.

A model family implements ``fit`` (calling :meth:`MultiTaskMixin._prepare_fit`) and
``_predict_outputs`` (per task, the outputs its kind documents, see :mod:`polyhead.kinds`);
everything a user sees on the way out - DataFrames named per task, ``predict_proba``,
``evaluate``, ``score``, ``save``, conditions - comes from here, so every family behaves the
same. Nothing here branches on a kind's name: it asks the kind.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.utils import Tags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from .. import conditions
from ..exceptions import PolyheadError
from ..frames import check_flat_values, check_unique_columns
from ..kinds import Kind
from ..tasks import Task, TaskSpec, fit_tasks, resolve_tasks

_Y_FORMATS = ("frame", "series", "1d", "2d")


def _is_sparse(X: Any) -> bool:
    from scipy import sparse

    return bool(sparse.issparse(X))


def _has_class_task(estimator: Any) -> bool:
    states = getattr(estimator, "task_states_", None)
    return states is None or any(t.has_proba for t in states)


class MultiTaskMixin:
    """Shared behaviour of polyhead estimators (see the module docstring)."""

    tasks: TaskSpec
    task_states_: list[Kind]
    _training_weights: dict[str, np.ndarray | None]
    _y_format: str
    feature_names_in_: np.ndarray
    n_features_in_: int

    def __sklearn_tags__(self) -> Tags:
        tags = super().__sklearn_tags__()  # type: ignore[misc]
        tags.target_tags.required = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        tags.input_tags.allow_nan = True  # missing features are imputed
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        return tags

    def _check_params(self) -> None:
        """Every parameter against the rules the class declares (``_parameter_constraints``,
        and ``_common`` for the tree and linear families): one PolyheadError naming it."""
        from .._params import validate_params

        rules = {**getattr(self, "_common", {}), **getattr(self, "_parameter_constraints", {})}
        validate_params(self, rules)

    # -- inputs ------------------------------------------------------------------------------
    def _check_X(self, X: Any, *, fit: bool) -> pd.DataFrame:
        """X as a DataFrame with string column names, checked against what fit saw."""
        name = type(self).__name__
        if type(X).__name__ == "ParquetSource":
            raise PolyheadError(f"{name} cannot train from a stream; MultiTaskNet and "
                                "MultiTaskGBM(backend='xgboost') can. Read it into memory (frame "
                                "= source.read(); fit(frame[features], frame[targets]))")
        if _is_sparse(X):
            raise TypeError(f"{name} does not accept sparse input; pass a dense array "
                            "(X.toarray()) or a DataFrame")
        if isinstance(X, pd.Series):
            raise PolyheadError(f"{name}: X must be 2-dimensional (a DataFrame or 2-D array), "
                                "got a Series; use X.to_frame()")
        if isinstance(X, pd.DataFrame):
            check_unique_columns(X, "X")
            frame = X
            from_frame = True
        else:
            array = np.asarray(X)
            if array.ndim != 2:
                raise PolyheadError(f"{name}: expected a 2D array or DataFrame for X, got "
                                    f"{array.ndim}D. Reshape your data with X.reshape(-1, 1) "
                                    "for one feature or X.reshape(1, -1) for one row")
            if array.dtype.kind == "c":
                raise PolyheadError(f"{name}: Complex data not supported")
            frame = pd.DataFrame(array, columns=[f"x{i}" for i in range(array.shape[1])])
            from_frame = False
        if frame.shape[1] == 0:
            raise PolyheadError(f"{name}: found array with 0 feature(s) (shape={frame.shape}) "
                                "while a minimum of 1 is required.")
        if frame.shape[0] == 0:
            raise PolyheadError(f"{name}: found array with 0 sample(s) (shape={frame.shape}) "
                                "while a minimum of 1 is required")
        if fit:
            check_flat_values(frame, "X")
            self.n_features_in_ = frame.shape[1]
            if from_frame and all(isinstance(c, str) for c in frame.columns):
                self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
            frame = frame.copy(deep=False)
            frame.columns = [str(c) for c in frame.columns] if from_frame else frame.columns
            self._feature_columns = list(frame.columns)
            return frame
        columns: list[str] = self._feature_columns
        if from_frame and hasattr(self, "feature_names_in_"):
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise PolyheadError(f"{name}: X is missing feature column {missing[0]!r} seen at "
                                    f"fit ({len(missing)} missing: {', '.join(map(repr, missing[:5]))})")
            check_flat_values(frame, "X", columns)
            # no copy: the encoders read the fitted columns by name and ignore any others
            return frame
        if frame.shape[1] != self.n_features_in_:
            raise PolyheadError(f"{name}: X has {frame.shape[1]} features, but {name} is "
                                f"expecting {self.n_features_in_} features as input")
        frame = frame.copy(deep=False)
        frame.columns = columns
        check_flat_values(frame, "X")
        return frame

    def _check_y(self, y: Any, n_rows: int) -> pd.DataFrame:
        """y as a DataFrame with string column names; remembers its format for outputs."""
        name = type(self).__name__
        if y is None:
            raise PolyheadError(f"{name} requires y to be passed, but the target y is None")
        if _is_sparse(y):
            raise TypeError(f"{name} does not accept a sparse y; pass a dense array or DataFrame")
        if isinstance(y, pd.DataFrame):
            check_unique_columns(y, "y")
            frame, fmt = y, "frame"
        elif isinstance(y, pd.Series):
            frame, fmt = y.to_frame(name=y.name if y.name is not None else "y"), "series"
        else:
            array = np.asarray(y)
            if array.ndim == 1:
                frame, fmt = pd.DataFrame({"y": array}), "1d"
            elif array.ndim == 2:
                columns = [f"y{i}" for i in range(array.shape[1])]
                frame, fmt = pd.DataFrame(array, columns=columns), "2d"
                frame = frame.infer_objects()
            else:
                raise PolyheadError(f"{name}: y must be 1- or 2-dimensional, got {array.ndim}D")
        if len(frame) != n_rows:
            raise PolyheadError(f"{name}: X has {n_rows} rows but y has {len(frame)}; "
                                "they must describe the same rows")
        frame = frame.copy(deep=False)
        frame.columns = [str(c) for c in frame.columns]
        check_flat_values(frame, "y")
        if fmt == "2d":
            frame = self._name_array_columns(frame)
        self._y_format = fmt
        return frame

    def _name_array_columns(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Columns of an unnamed 2-D y take the tasks' names, in order, when counts match."""
        spec = self.tasks
        if spec is None or isinstance(spec, (str, Task)):
            return frame
        names = list(spec.keys()) if isinstance(spec, Mapping) else [
            (t if isinstance(t, Task) else Task.parse(t)) for t in spec]
        tasks = [Task(n) if isinstance(n, str) else n for n in names]
        if len(tasks) != frame.shape[1] or any(
                t.column is not None or t.columns is not None or t.name in frame.columns for t in tasks):
            return frame
        frame.columns = [t.name for t in tasks]
        return frame

    def _prepare_fit(self, X: Any, y: Any, sample_weight: Any = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Check X, y and sample weights, resolve the tasks and fit them to their labels.

        Afterwards ``self._training_weights`` holds, per task, None (every label present, equal
        weights) or float weights shaped like its mask: 0 where the label is missing or the
        task's condition does not hold, the sample weight elsewhere.
        """
        Xf = self._check_X(X, fit=True)
        yf = self._check_y(y, len(Xf))
        tasks = resolve_tasks(self.tasks, yf)
        check_no_leak(Xf, yf, tasks)
        per_column = _sample_weights(sample_weight, yf)
        self.task_states_ = fit_tasks(tasks, yf, per_column)
        self._training_weights = training_weights(self.task_states_, yf, per_column)
        return Xf, yf

    # -- fitted attributes ---------------------------------------------------------------------
    @property
    def tasks_(self) -> dict[str, Task]:
        """The resolved tasks (every kind decided), by name."""
        check_is_fitted(self, "task_states_")
        return {t.name: t.task for t in self.task_states_}

    @property
    def classes_(self) -> dict[str, np.ndarray]:
        """Class labels per class task (label columns for multilabel tasks)."""
        check_is_fitted(self, "task_states_")
        out = {}
        for t in self.task_states_:
            if t.classes is not None:
                out[t.name] = t.classes
            elif t.has_proba:
                out[t.name] = np.asarray(t.output_columns, dtype=object)
        return out

    def feature_encoder(self) -> Any:
        """The fitted :class:`~polyhead.features.FeatureEncoder` of the raw input features (for a
        composite model, that of its first sub-model, which reads exactly the input columns)."""
        check_is_fitted(self, "task_states_")
        encoder = getattr(self, "features_", None)
        if encoder is None:
            encoder = self.estimators_[0].feature_encoder()  # type: ignore[attr-defined]
        return encoder

    # -- outputs -----------------------------------------------------------------------------
    def _predict_outputs(self, X: pd.DataFrame) -> dict[str, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def _outputs(self, X: Any) -> tuple[dict[str, np.ndarray], pd.Index]:
        """The model's outputs per task, checked finite (conditions not applied)."""
        check_is_fitted(self, "task_states_")
        Xf = self._check_X(X, fit=False)
        index = X.index if isinstance(X, pd.DataFrame) else pd.RangeIndex(len(Xf))
        outputs = self._predict_outputs(Xf)
        check_outputs(outputs, index)
        return outputs, index

    def predict_frame(self, X: Any, *, proba: bool = False, expected: bool = False) -> pd.DataFrame:
        """Predictions as a DataFrame whatever ``y`` was: the prediction columns of every task
        and, with ``proba=True``, a ``task:class`` column per class probability. Used by the
        command line and the prediction service."""
        outputs, index = self._outputs(X)
        columns: dict[str, Any] = self._label_columns(outputs, expected)
        if proba:
            mixed = conditions.mixture(self.task_states_, outputs)
            for t in self.task_states_:
                if t.has_proba:
                    frame = t.proba_frame(mixed[t.name], index)
                    for col in frame.columns:
                        columns[f"{t.name}:{col}"] = frame[col].to_numpy()
        return pd.DataFrame(columns, index=index)

    def predict(self, X: Any, *, expected: bool = False) -> Any:
        """Predictions per task, in the form of the ``y`` given to ``fit``.

        DataFrame ``y`` -> DataFrame with the prediction columns of every task (a multilabel
        task gives its label columns, a quantile task one column per quantile), indexed like
        ``X``; Series -> Series; 1-D array -> 1-D array; 2-D array -> 2-D array. Class tasks
        give class labels as they were in ``y``.

        ``expected=True`` gives expected values instead where a kind has them: an ordinal
        task's expected class value, a multilabel task's probabilities, and a conditional
        task's ``P(condition) * value + (1 - P(condition)) * otherwise``.
        """
        outputs, index = self._outputs(X)
        return self._format(outputs, index, expected)

    def _label_columns(self, outputs: dict[str, np.ndarray], expected: bool = False) -> dict[str, np.ndarray]:
        """Prediction columns of every task, conditions applied."""
        applied = conditions.apply(self.task_states_, outputs, expected=expected)
        columns: dict[str, np.ndarray] = {}
        for t in self.task_states_:
            columns.update(t.columns(applied[t.name], expected=expected))
        return columns

    def _format(self, outputs: dict[str, np.ndarray], index: pd.Index, expected: bool = False) -> Any:
        """Per-task outputs as predictions in the format of fit's ``y``."""
        columns = self._label_columns(outputs, expected)
        if self._y_format == "frame":
            return pd.DataFrame(columns, index=index)
        if self._y_format == "series":
            name = next(iter(columns))
            return pd.Series(columns[name], index=index, name=name)
        arrays = list(columns.values())
        if self._y_format == "1d":
            return arrays[0]
        kinds = {a.dtype.kind for a in arrays}
        dtype = arrays[0].dtype if len(kinds) == 1 and kinds <= set("biuf") else object
        if kinds <= set("biuf") and len(kinds) > 1:
            dtype = np.dtype(float)
        return np.column_stack([a.astype(dtype) for a in arrays])

    @available_if(_has_class_task)
    def predict_proba(self, X: Any) -> Any:
        """Class probabilities per task that has them (binary, multiclass, multilabel, ordinal).

        A dict ``{task: DataFrame}`` with one column per class (per label for multilabel tasks),
        each row summing to 1 for single-label tasks. When ``y`` was a 1-D array with a single
        class task, an ``(n, n_classes)`` array, as scikit-learn classifiers do. A conditional
        task gives its marginal distribution (see :mod:`polyhead.conditions`).
        """
        outputs, index = self._outputs(X)
        outputs = conditions.mixture(self.task_states_, outputs)
        class_tasks = [t for t in self.task_states_ if t.has_proba]
        if self._y_format == "1d":
            return class_tasks[0].proba_array(outputs[class_tasks[0].name])
        if self._y_format == "2d":
            return {t.name: t.proba_array(outputs[t.name]) for t in class_tasks}
        return {t.name: t.proba_frame(outputs[t.name], index) for t in class_tasks}

    def evaluate(self, X: Any, y: Any) -> pd.DataFrame:
        """One row per task: its kind, ``n`` (rows with a label) and its kind's metrics.

        Regression: MAE, RMSE, R²; binary: accuracy, ROC AUC, log loss; multiclass: accuracy,
        macro-F1, log loss; multilabel: Hamming loss, micro/macro-F1, subset accuracy, log
        loss; ordinal: accuracy, MAE, quadratic weighted kappa, log loss; count: Poisson
        deviance, D², MAE, RMSE; quantile: pinball loss (mean and per quantile), coverage and
        width of the outer band. Metrics that do not apply to a kind are NaN. Rows whose label
        is missing are left out per task.
        """
        outputs, _ = self._outputs(X)
        yf = self._check_eval_y(y, len(next(iter(outputs.values()))))
        applied = conditions.apply(self.task_states_, outputs)
        rows = []
        for t in self.task_states_:
            rows.append({"task": t.name, "kind": t.kind, **t.metrics(yf, applied[t.name])})
        table = pd.DataFrame(rows).set_index("task")
        order = ["kind", "n"]
        for row in rows:
            order += [m for m in row if m not in order and m != "task"]
        table = table[order]
        table["n"] = table["n"].astype(int)
        return table

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean over tasks of each kind's score (higher is better): R² (regression), accuracy
        (binary, multiclass, ordinal), subset accuracy (multilabel), D² (count), minus the
        pinball loss in standard deviations (quantile). So it can drive grid search."""
        if sample_weight is not None:
            raise PolyheadError(f"{type(self).__name__}.score does not support sample_weight; "
                                "use evaluate() per task")
        outputs, _ = self._outputs(X)
        yf = self._check_eval_y(y, len(next(iter(outputs.values()))))
        applied = conditions.apply(self.task_states_, outputs)
        scores = [t.score(yf, applied[t.name]) for t in self.task_states_]
        return float(np.nanmean(scores)) if not all(np.isnan(scores)) else float("nan")

    def _check_eval_y(self, y: Any, n_rows: int) -> pd.DataFrame:
        fmt = self._y_format
        try:
            yf = self._check_y(y, n_rows)
        finally:
            self._y_format = fmt
        needed = {c for t in self.task_states_ for c in t.task.source_columns}
        missing = sorted(needed - set(yf.columns))
        if missing and yf.shape[1] == len(needed) and not (needed & set(yf.columns)):
            # an unnamed array or renamed frame: match columns by position, in fit's order
            ordered = list(dict.fromkeys(c for t in self.task_states_ for c in t.task.source_columns))
            yf.columns = ordered
        elif missing:
            raise PolyheadError(f"y is missing target column {missing[0]!r} of task(s) "
                                f"{', '.join(t.name for t in self.task_states_ if missing[0] in t.task.source_columns)}")
        return yf

    # -- persistence -----------------------------------------------------------------------------
    def to_onnx(self, path: Any, *, overwrite: bool = False) -> Any:
        """Write the fitted model, feature encoder and decoding included, as one ONNX file
        that onnxruntime runs without torch (MultiTaskNet, MultiTaskForest, MultiTaskLinear;
        see :mod:`polyhead.io.onnx` for its inputs and outputs; others refuse in one line).
        Needs ``pip install 'polyhead[onnx]'``; returns the path."""
        from ..io.onnx import to_onnx

        return to_onnx(self, path, overwrite=overwrite)

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
        """Write the fitted model to a directory (JSON manifest + safetensors; no pickle).

        The directory is written next to its final place and moved in at the end, so a failed
        save never leaves a half-written model. An existing directory is only replaced with
        ``overwrite=True``.
        """
        from ..persistence import save

        save(self, path, overwrite=overwrite)


def check_outputs(outputs: Mapping[str, np.ndarray], index: pd.Index) -> None:
    """A model's outputs must be finite: a NaN never becomes a class label or a prediction."""
    for name, values in outputs.items():
        array = np.asarray(values, dtype=float)
        bad = ~np.isfinite(array)
        if bad.any():
            row = int(np.flatnonzero(bad.reshape(len(array), -1).any(axis=1))[0])
            raise PolyheadError(f"task {name!r}: the model's output for row {index[row]!r} is not "
                                "finite; its features are probably far outside the range seen "
                                "at fit")


def check_no_leak(X: pd.DataFrame, y: pd.DataFrame, tasks: list[Task]) -> None:
    """A target column must not also be a feature (validation scores would be perfect and
    the model useless): refused when X has a column of the same name and the same values."""
    for task in tasks:
        for col in task.source_columns:
            if col in X.columns and col in y.columns:
                a, b = X[col], y[col]
                if len(a) and a.reset_index(drop=True).equals(b.reset_index(drop=True)):
                    raise PolyheadError(f"feature column {col!r} is the target of task "
                                        f"{task.name!r}; a target cannot also be a feature "
                                        f"(drop it from X)")


def training_weights(states: list[Kind], y: pd.DataFrame,
                     per_column: dict[str, np.ndarray] | None = None, *,
                     require_labels: bool = True) -> dict[str, np.ndarray | None]:
    """Per task: None when every label is present and weights are equal, else float weights
    shaped like the task's mask (``(n,)``, or ``(n, k)`` for multilabel tasks): 0 where the
    label is missing or the task's condition does not hold, the sample weight elsewhere.

    ``per_column``: sample weights per target column (:func:`_sample_weights`), or None.
    A task needs a positive weight on some labelled row (unless ``require_labels=False``: a
    batch of a streamed table may hold none of a sparse task's labels).
    """
    n = len(y)
    masks = conditions.masks(states, y)
    out: dict[str, np.ndarray | None] = {}
    for t in states:
        observed = t.observed(y)
        if t.name in masks:
            cond = masks[t.name]
            observed = observed & (cond[:, None] if observed.ndim == 2 else cond)
        cols = t.task.source_columns
        if per_column is None:
            weight = None
        elif observed.ndim == 2:
            weight = np.column_stack([per_column.get(c, np.ones(n)) for c in cols])
        else:
            weight = per_column.get(cols[0], np.ones(n))
        if weight is None and observed.all():
            out[t.name] = None
            continue
        full = observed.astype(np.float64) if weight is None else np.where(observed, weight, 0.0)
        if require_labels and not (full > 0).any():
            why = "its condition never holds on a labelled row" if t.name in masks else \
                "the sample weights of its labelled rows are all zero"
            raise PolyheadError(f"task {t.name!r} has nothing to learn from: {why}")
        out[t.name] = full
    return out


def _sample_weights(sample_weight: Any, y: pd.DataFrame) -> dict[str, np.ndarray] | None:
    """Sample weights per target column, checked (None when not given).

    ``sample_weight``: one weight per row (array-like), or a DataFrame shaped like ``y``
    (columns named as ``y``'s, one weight per row and target column; columns it lacks weigh 1).
    Weights must be finite and >= 0.
    """
    if sample_weight is None:
        return None
    n = len(y)
    if isinstance(sample_weight, pd.DataFrame):
        if len(sample_weight) != n:
            raise PolyheadError(f"sample_weight has {len(sample_weight)} rows but y has {n}")
        unknown = [c for c in map(str, sample_weight.columns) if c not in y.columns]
        if unknown:
            raise PolyheadError(f"sample_weight column {unknown[0]!r} is not a column of y; a "
                                "weight frame is shaped like y")
        columns = {str(c): _check_weights(sample_weight[c], f"sample_weight column {c!r}")
                   for c in sample_weight.columns}
        return {c: columns.get(c, np.ones(n)) for c in y.columns}
    array = np.asarray(sample_weight)
    if array.ndim != 1 or len(array) != n:
        raise PolyheadError(f"sample_weight must hold one weight per row ({n}) or be a "
                            f"DataFrame shaped like y, got shape {array.shape}")
    weights = _check_weights(pd.Series(array), "sample_weight")
    return {c: weights for c in y.columns}


def _check_weights(values: pd.Series, what: str) -> np.ndarray:
    from .._convert import as_float

    weights = as_float(pd.Series(values).reset_index(drop=True), what, PolyheadError)
    bad = np.isnan(weights) | (weights < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise PolyheadError(f"{what} must be finite and >= 0, got {weights[i]} at row {i}")
    return weights
