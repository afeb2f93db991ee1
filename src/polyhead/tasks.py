"""Tasks: what each target is, how it is encoded, and how it is scored.

A :class:`Task` is a small frozen value (name, kind, source column(s), weight, loss) so that
estimators holding tasks can be cloned and grid-searched. :func:`resolve_tasks` turns what a user
passes as ``tasks=`` into a list of tasks with every kind decided, and :class:`FittedTask` holds
what is learnt from the training targets (classes, scale) and knows the kind's metrics.

Kind inference, used when a task gives no kind:

* strings, categories, booleans -> ``binary`` with 2 distinct values, else ``multiclass``;
* floats -> ``regression`` (but a float column holding only whole numbers *and* missing values
  is treated as the integer column pandas could not store, see next line);
* integers -> ``binary`` with exactly 2 distinct values, else ``regression``.

``multilabel`` is never inferred: it groups several 0/1 columns named by the user.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ._convert import as_float, plain, row_label
from .exceptions import TaskError

KINDS = ("regression", "binary", "multiclass", "multilabel")
CLASS_KINDS = frozenset({"binary", "multiclass", "multilabel"})
LOSSES: dict[str, tuple[str, ...]] = {
    "regression": ("mse", "huber", "mae"),
    "binary": ("log_loss",),
    "multiclass": ("log_loss",),
    "multilabel": ("log_loss",),
}
METRICS: dict[str, tuple[str, ...]] = {
    "regression": ("mae", "rmse", "r2"),
    "binary": ("accuracy", "roc_auc", "log_loss"),
    "multiclass": ("accuracy", "macro_f1", "log_loss"),
    "multilabel": ("hamming_loss", "micro_f1", "macro_f1", "subset_accuracy"),
}
_EPS = 1e-15
_SPEC = re.compile(r"^\s*(?P<name>[^:=]+?)\s*(?::\s*(?P<kind>[A-Za-z_]+)\s*)?(?:=(?P<cols>.+))?$")


@dataclass(frozen=True)
class Task:
    """One target to predict.

    Parameters
    ----------
    name : str
        The task's name; predictions come back under it.
    kind : {"regression", "binary", "multiclass", "multilabel"} or None
        None infers the kind from the target column (see the module docstring).
    column : str, optional
        The column of ``y`` to read, when it differs from ``name``; two tasks may read one column.
    columns : sequence of str, optional
        For ``multilabel`` tasks: the 0/1 columns that make up the labels.
    weight : float, default=1.0
        The task's weight in the training loss (and in early stopping's validation loss).
    loss : str, optional
        Regression: ``"mse"`` (default), ``"huber"`` or ``"mae"``. Classification: ``"log_loss"``.

    Examples
    --------
    >>> Task("rings_class", kind="multiclass", column="rings")
    Task(name='rings_class', kind='multiclass', column='rings')
    >>> Task.parse("tags:multilabel=a,b")
    Task(name='tags', kind='multilabel', columns=('a', 'b'))
    """

    name: str
    kind: str | None = None
    column: str | None = None
    columns: tuple[str, ...] | None = None
    weight: float = 1.0
    loss: str | None = None

    def __post_init__(self) -> None:
        # A list is accepted for convenience; a tuple keeps the value hashable.
        if self.columns is not None and not isinstance(self.columns, tuple):
            object.__setattr__(self, "columns", tuple(self.columns))

    def __repr__(self) -> str:
        parts = [f"name={self.name!r}"]
        for key, default in (("kind", None), ("column", None), ("columns", None),
                             ("weight", 1.0), ("loss", None)):
            value = getattr(self, key)
            if value != default:
                parts.append(f"{key}={value!r}")
        return f"Task({', '.join(parts)})"

    @classmethod
    def parse(cls, spec: str) -> Task:
        """Read ``"name[:kind][=column]"`` or ``"name:multilabel=col1,col2,..."``."""
        match = _SPEC.match(spec) if isinstance(spec, str) else None
        if match is None:
            raise TaskError(f"cannot read task spec {spec!r}: expected 'name[:kind][=column(s)]'")
        name, kind, cols = match["name"], match["kind"], match["cols"]
        if kind is not None and kind not in KINDS:
            raise TaskError(f"task {name!r}: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
        if cols is None:
            return cls(name, kind=kind)
        names = tuple(c.strip() for c in cols.split(",") if c.strip())
        if kind == "multilabel" or len(names) > 1:
            return cls(name, kind=kind, columns=names)
        return cls(name, kind=kind, column=names[0])

    @property
    def source_columns(self) -> tuple[str, ...]:
        """The columns of ``y`` this task reads."""
        if self.columns is not None:
            return self.columns
        return (self.column if self.column is not None else self.name,)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "column": self.column,
                "columns": list(self.columns) if self.columns is not None else None,
                "weight": self.weight, "loss": self.loss}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Task:
        return cls(str(data["name"]), kind=data.get("kind"), column=data.get("column"),
                   columns=data.get("columns"), weight=float(data.get("weight", 1.0)),
                   loss=data.get("loss"))


TaskSpec = Mapping[str, str | None] | Sequence[Task | str] | str | Task | None


def _as_task_list(tasks: TaskSpec, columns: Sequence[str]) -> list[Task]:
    if tasks is None:
        return [Task(str(c)) for c in columns]
    if isinstance(tasks, (str, Task)):
        tasks = [tasks]
    if isinstance(tasks, Mapping):
        out = []
        for name, kind in tasks.items():
            if isinstance(kind, Task):
                out.append(kind)
            elif kind is None or isinstance(kind, str):
                out.append(Task(str(name), kind=kind))
            else:
                raise TaskError(f"task {name!r}: kind must be a string, got {kind!r}")
        return out
    out = []
    for item in tasks:
        if isinstance(item, Task):
            out.append(item)
        elif isinstance(item, str):
            out.append(Task.parse(item))
        else:
            raise TaskError(f"tasks must be Task objects or 'name:kind' strings, got {item!r}")
    return out


def resolve_tasks(tasks: TaskSpec, y: pd.DataFrame) -> list[Task]:
    """Turn a ``tasks=`` argument into validated tasks with every kind decided.

    Raises a :class:`~polyhead.exceptions.TaskError` naming the task for an unknown kind, a
    missing column, a duplicate name, a bad weight or loss, or a target with no labels.
    """
    resolved: list[Task] = []
    seen: set[str] = set()
    for task in _as_task_list(tasks, list(y.columns)):
        if not isinstance(task.name, str) or not task.name:
            raise TaskError(f"task names must be non-empty strings, got {task.name!r}")
        if task.name in seen:
            raise TaskError(f"task {task.name!r} is defined twice")
        seen.add(task.name)
        if task.kind is not None and task.kind not in KINDS:
            raise TaskError(f"task {task.name!r}: unknown kind {task.kind!r}; "
                            f"expected one of {', '.join(KINDS)}")
        if task.columns is not None and task.kind not in (None, "multilabel"):
            raise TaskError(f"task {task.name!r}: several columns are only for multilabel tasks")
        if task.columns is not None and len(task.columns) == 0:
            raise TaskError(f"task {task.name!r}: a multilabel task needs at least one label "
                            "column; columns=[] names none")
        missing = [c for c in task.source_columns if c not in y.columns]
        if missing:
            shown = ", ".join(repr(c) for c in list(y.columns)[:20])
            raise TaskError(f"task {task.name!r} reads column {missing[0]!r}, which is not in y "
                            f"(columns: {shown})")
        kind = task.kind
        if kind is None:
            kind = "multilabel" if task.columns is not None else infer_kind(y[task.source_columns[0]])
        if not (isinstance(task.weight, (int, float)) and np.isfinite(task.weight) and task.weight >= 0):
            raise TaskError(f"task {task.name!r}: weight must be a finite number >= 0, got {task.weight!r}")
        if task.loss is not None and task.loss not in LOSSES[kind]:
            raise TaskError(f"task {task.name!r}: loss {task.loss!r} is not available for {kind} "
                            f"tasks; choose from {', '.join(LOSSES[kind])}")
        resolved.append(Task(task.name, kind=kind, column=task.column, columns=task.columns,
                             weight=float(task.weight), loss=task.loss or LOSSES[kind][0]))
    if not resolved:
        raise TaskError("no tasks: y has no columns")
    if all(t.weight == 0 for t in resolved):
        raise TaskError("every task has weight 0, so there is nothing to train; give at least "
                        "one task a positive weight")
    return resolved


def _numeric_kind(values: pd.Series) -> str | None:
    """'integer' or 'floating' when values are numbers (of any dtype), else None."""
    inferred = pd.api.types.infer_dtype(values, skipna=True)
    if inferred in ("integer",):
        return "integer"
    if inferred in ("floating", "mixed-integer-float", "decimal"):
        return "floating"
    return None


def infer_kind(column: pd.Series) -> str:
    """The kind a target column implies (rules in the module docstring)."""
    values = column.dropna()
    if pd.api.types.is_bool_dtype(column.dtype) or isinstance(column.dtype, pd.CategoricalDtype):
        return "binary" if values.nunique() == 2 else "multiclass"
    numeric = _numeric_kind(values)
    if numeric is None:
        return "binary" if values.nunique() == 2 else "multiclass"
    if numeric == "floating":
        as_float = values.astype(float)
        whole = bool(np.all(np.mod(as_float, 1) == 0)) if len(as_float) else False
        if not (whole and column.isna().any()):
            return "regression"
    return "binary" if values.nunique() == 2 else "regression"


def _class_labels(values: pd.Series) -> np.ndarray:
    """Sorted distinct labels, keeping their type; integral floats become ints."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        present = set(values.dropna().unique().tolist())
        return np.asarray([c for c in values.dtype.categories if c in present], dtype=object)
    observed = values.dropna()
    if _numeric_kind(observed) == "integer":  # ints in an object column (beside None) stay ints
        return np.unique(observed.to_numpy().astype(np.int64))
    if _numeric_kind(observed) == "floating":
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


@dataclass
class FittedTask:
    """A task plus what was learnt from its training targets.

    ``outputs`` exchanged with models are, per kind: regression -> values in the target's units
    ``(n,)``; binary -> probability of ``classes[1]`` ``(n,)``; multiclass -> probabilities
    ``(n, n_classes)``; multilabel -> probability of each label ``(n, n_labels)``.
    """

    task: Task
    classes: np.ndarray | None = None
    mean: float = 0.0
    scale: float = 1.0
    n_labels: int = 0
    _index: pd.Index | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def kind(self) -> str:
        assert self.task.kind is not None
        return self.task.kind

    @property
    def out_dim(self) -> int:
        if self.kind == "multiclass":
            assert self.classes is not None
            return len(self.classes)
        if self.kind == "multilabel":
            return len(self.task.source_columns)
        return 1

    @property
    def output_columns(self) -> list[str]:
        """The prediction columns this task produces."""
        return list(self.task.source_columns) if self.kind == "multilabel" else [self.name]

    # -- fitting -------------------------------------------------------------------------
    @classmethod
    def fit(cls, task: Task, y: pd.DataFrame) -> FittedTask:
        """Check the task's target column(s) and learn its classes or scale."""
        cols = task.source_columns
        present = y[list(cols)].notna().to_numpy().any(axis=0) if len(y) else np.zeros(len(cols), bool)
        if not present.any():
            raise TaskError(f"task {task.name!r} has no labels: column {cols[0]!r} is all missing")
        fitted = cls(task)
        if task.kind == "regression":
            values = regression_values(task, y[cols[0]])
            observed = values[~np.isnan(values)]
            fitted.mean = float(observed.mean())
            std = float(observed.std())
            fitted.scale = std if std > 0 and np.isfinite(std) else 1.0
        elif task.kind == "multilabel":
            for col, has in zip(cols, np.asarray(present).tolist(), strict=True):
                if not has:
                    raise TaskError(f"task {task.name!r}: label column {col!r} is all missing")
            multilabel_values(task, y)
            fitted.n_labels = len(cols)
        else:
            column = y[cols[0]]
            classes = _class_labels(column)
            if len(classes) < 2:
                raise TaskError(f"task {task.name!r}: column {cols[0]!r} has only one class "
                                f"({classes[0]!r}); a classification task needs at least two")
            if task.kind == "binary" and len(classes) > 2:
                raise TaskError(f"task {task.name!r}: binary task has {len(classes)} classes "
                                f"(e.g. {', '.join(map(repr, map(plain, classes[:4].tolist())))}); "
                                "use kind='multiclass'")
            fitted.classes = classes
        return fitted

    # -- encoding ------------------------------------------------------------------------
    def encode(self, y: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Training targets and their observed-mask.

        Regression: standardised float32 ``(n,)``; binary: float32 0/1 ``(n,)``; multiclass:
        int64 class index ``(n,)`` (-1 where missing or unseen); multilabel: float32 ``(n, k)``.
        """
        cols = self.task.source_columns
        if self.kind == "regression":
            values = regression_values(self.task, y[cols[0]])
            mask = ~np.isnan(values)
            z = np.where(mask, (values - self.mean) / self.scale, 0.0)
            return z.astype(np.float32), mask
        if self.kind == "multilabel":
            values = multilabel_values(self.task, y)
            mask = ~np.isnan(values)
            return np.where(mask, values, 0.0).astype(np.float32), mask
        codes = self.class_codes(y[cols[0]])
        mask = codes >= 0
        if self.kind == "binary":
            return np.where(mask, codes, 0).astype(np.float32), mask
        return codes.astype(np.int64), mask

    def class_codes(self, column: pd.Series) -> np.ndarray:
        """Index of each label in ``classes``: -1 for missing labels, -2 for unseen classes."""
        assert self.classes is not None
        missing = column.isna().to_numpy()
        values = column.to_numpy(dtype=object)
        if self._index is None:
            self._index = pd.Index(self.classes.tolist(), dtype=object)
        codes = self._index.get_indexer(pd.Index(values.tolist(), dtype=object))
        if self.classes.dtype.kind in "iuf":  # 3 and 3.0 are the same class
            numeric = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
            unmatched = (codes < 0) & ~np.isnan(numeric)
            if unmatched.any():
                codes[unmatched] = self._index.get_indexer(pd.Index(numeric[unmatched].tolist()))
        codes = np.where(codes < 0, -2, codes)
        codes[missing] = -1
        return codes.astype(np.int64)

    # -- predictions -----------------------------------------------------------------------
    def predict(self, outputs: np.ndarray) -> np.ndarray:
        """Labels (or values) from a model's outputs for this task."""
        if self.kind == "regression":
            return outputs
        if self.kind == "multilabel":
            return (outputs >= 0.5).astype(np.int64)
        assert self.classes is not None
        idx = (outputs >= 0.5).astype(np.int64) if self.kind == "binary" else outputs.argmax(axis=1)
        return self.classes[idx]

    def proba_frame(self, outputs: np.ndarray, index: pd.Index) -> pd.DataFrame:
        """Probabilities as a DataFrame: one column per class (or per label)."""
        if self.kind == "binary":
            outputs = np.column_stack([1.0 - outputs, outputs])
        if self.kind == "multilabel":
            columns: list[Any] = list(self.task.source_columns)
        else:
            assert self.classes is not None
            columns = self.classes.tolist()
        return pd.DataFrame(outputs, index=index, columns=columns)

    def proba_array(self, outputs: np.ndarray) -> np.ndarray:
        return np.column_stack([1.0 - outputs, outputs]) if self.kind == "binary" else outputs

    # -- metrics ---------------------------------------------------------------------------
    def metrics(self, y: pd.DataFrame, outputs: np.ndarray) -> dict[str, float]:
        """This kind's metrics on the rows where the label is present (``n`` counts them).

        A class never seen in training counts as a wrong prediction (and a probability of 0 in
        log loss, clipped at 1e-15), never as an error.
        """
        from sklearn import metrics as skm

        cols = self.task.source_columns
        if self.kind == "regression":
            values = regression_values(self.task, y[cols[0]])
            keep = ~np.isnan(values)
            t, p = values[keep], outputs[keep]
            if not len(t):
                return {"n": 0.0, "mae": np.nan, "rmse": np.nan, "r2": np.nan}
            err = p - t
            r2 = float(skm.r2_score(t, p)) if len(t) > 1 else np.nan
            return {"n": float(len(t)), "mae": float(np.abs(err).mean()),
                    "rmse": float(np.sqrt((err ** 2).mean())), "r2": r2}
        if self.kind == "multilabel":
            return self._multilabel_metrics(multilabel_values(self.task, y), outputs)
        codes = self.class_codes(y[cols[0]])
        keep = codes != -1
        codes = codes[keep]
        proba = self.proba_array(outputs)[keep]
        if not len(codes):
            return {"n": 0.0, **{m: np.nan for m in METRICS[self.kind]}}
        pred = proba.argmax(axis=1)
        p_true = np.where(codes >= 0, proba[np.arange(len(codes)), np.maximum(codes, 0)], 0.0)
        out = {"n": float(len(codes)), "accuracy": float((pred == codes).mean()),
               "log_loss": float(-np.log(np.clip(p_true, _EPS, 1.0)).mean())}
        if self.kind == "binary":
            y_bin = codes == 1
            both = y_bin.any() and (~y_bin).any()
            out["roc_auc"] = float(skm.roc_auc_score(y_bin, proba[:, 1])) if both else np.nan
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out["macro_f1"] = float(skm.f1_score(codes, pred, average="macro", zero_division=0))
        return {"n": out["n"], **{m: out[m] for m in METRICS[self.kind]}}

    def _multilabel_metrics(self, truth: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
        observed = ~np.isnan(truth)
        rows = observed.any(axis=1)
        if not rows.any():
            return {"n": 0.0, **{m: np.nan for m in METRICS["multilabel"]}}
        t = np.where(observed, truth, 0) > 0.5
        p = outputs >= 0.5
        wrong = (t != p) & observed
        tp = (t & p & observed).sum(axis=0)
        fp = (~t & p & observed).sum(axis=0)
        fn = (t & ~p & observed).sum(axis=0)

        def f1(tp: Any, fp: Any, fn: Any) -> Any:
            denom = 2 * tp + fp + fn
            return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)

        return {"n": float(rows.sum()),
                "hamming_loss": float(wrong.sum() / observed.sum()),
                "micro_f1": float(f1(tp.sum(), fp.sum(), fn.sum())),
                "macro_f1": float(f1(tp, fp, fn).mean()),
                "subset_accuracy": float((~wrong[rows]).all(axis=1).mean())}

    def score(self, y: pd.DataFrame, outputs: np.ndarray) -> float:
        """R² for regression, accuracy for binary/multiclass, subset accuracy for multilabel."""
        m = self.metrics(y, outputs)
        key = {"regression": "r2", "multilabel": "subset_accuracy"}.get(self.kind, "accuracy")
        return m[key]

    # -- persistence -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        classes = None
        if self.classes is not None:
            classes = [c.item() if isinstance(c, np.generic) else c for c in self.classes.tolist()]
        return {"task": self.task.to_dict(), "classes": classes,
                "classes_dtype": None if self.classes is None else self.classes.dtype.str,
                "mean": self.mean, "scale": self.scale, "n_labels": self.n_labels}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FittedTask:
        classes = data.get("classes")
        array = None
        if classes is not None:
            dtype = np.dtype(data["classes_dtype"]) if data.get("classes_dtype") else np.dtype(object)
            if dtype.kind not in "biuf":
                dtype = np.dtype(object)
            array = np.asarray(classes, dtype=dtype)
        return cls(Task.from_dict(data["task"]), classes=array, mean=float(data["mean"]),
                   scale=float(data["scale"]), n_labels=int(data.get("n_labels", 0)))


def regression_values(task: Task, column: pd.Series) -> np.ndarray:
    """A regression target as float64 with NaN for missing; errors name bad values and rows."""
    return as_float(column, f"task {task.name!r}: regression target {column.name!r}", TaskError)


def multilabel_values(task: Task, y: pd.DataFrame) -> np.ndarray:
    """Multilabel targets as float64 0/1 with NaN for missing; anything else is an error."""
    out = np.empty((len(y), len(task.source_columns)), dtype=float)
    for j, col in enumerate(task.source_columns):
        column = y[col]
        values = pd.to_numeric(column.astype(object), errors="coerce").to_numpy(dtype=float)
        bad = column.notna().to_numpy() & ~np.isin(values, (0.0, 1.0))
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise TaskError(f"task {task.name!r}: multilabel column {col!r} must hold 0/1 "
                            f"values, found {plain(column.iloc[first])!r} at row "
                            f"{row_label(column.index, first)!r}")
        out[:, j] = values
    return out


def describe_tasks(tasks: Iterable[FittedTask]) -> pd.DataFrame:
    """A table of tasks: kind, columns, weight, loss, classes."""
    rows = []
    for t in tasks:
        classes = "" if t.classes is None else ", ".join(map(str, t.classes.tolist()[:8]))
        if t.classes is not None and len(t.classes) > 8:
            classes += f", ... ({len(t.classes)})"
        rows.append({"task": t.name, "kind": t.kind, "columns": ", ".join(t.task.source_columns),
                     "weight": t.task.weight, "loss": t.task.loss, "classes": classes})
    return pd.DataFrame(rows).set_index("task")
