"""Tasks: what each target is.

A :class:`Task` is a small frozen value (name, kind, source column(s), weight, loss, and the
options some kinds take) so that estimators holding tasks can be cloned and grid-searched.
:func:`resolve_tasks` turns what a user passes as ``tasks=`` into a list of tasks with every
kind decided; :func:`fit_task` fits a task to its training labels, which gives an instance of
its kind (:mod:`polyhead.kinds`), the object the rest of polyhead asks everything
kind-specific.

Kind inference, used when a task gives no kind (it never picks ordinal, count or quantile):

* strings, categories, booleans -> ``binary`` with 2 distinct values, else ``multiclass``;
* floats -> ``regression`` (but a float column holding only whole numbers *and* missing values
  is treated as the integer column pandas could not store, see next line);
* integers -> ``binary`` with exactly 2 distinct values, else ``regression``.

``multilabel`` is never inferred from one column: it groups several 0/1 columns named by the
user (``columns=``), or, with ``tasks=None``, a block of at least ``LABEL_BLOCK`` (8) label
columns (:func:`group_label_columns`): a label matrix is one task with a sigmoid per label, not
one binary head per label (174 binary heads trained 10x slower than one multilabel head of 174
labels, for about the same quality: ``benchmarks/label_block.py``), and a label that is all 0 in
the training rows stays a label instead of becoming a regression column.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .exceptions import TaskError
from .kinds import KINDS, Kind, get_kind
from .kinds._classes import numeric_kind

_SPEC = re.compile(r"^\s*(?P<name>[^:=]+?)\s*(?::\s*(?P<kind>[A-Za-z_]+)\s*"
                   r"(?:\((?P<args>[^)]*)\))?\s*)?(?:=(?P<cols>.+))?$")


def _number_or_text(text: str) -> Any:
    text = text.strip()
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


@dataclass(frozen=True)
class Task:
    """One target to predict.

    Parameters
    ----------
    name : str
        The task's name; predictions come back under it.
    kind : str or None
        "regression", "binary", "multiclass", "multilabel", "ordinal", "count", "quantile", or
        a registered kind. None infers regression, binary or multiclass from the column.
    column : str, optional
        The column of ``y`` to read, when it differs from ``name``; two tasks may read one column.
    columns : sequence of str, optional
        For ``multilabel`` tasks: the 0/1 columns that make up the labels.
    weight : float, default=1.0
        The task's weight in the training loss (and in early stopping's validation loss).
    loss : str, optional
        The kind's loss option: regression ``"mse"`` (default), ``"huber"``, ``"mae"``; count
        ``"poisson"`` (default), ``"negative_binomial"``.
    classes : sequence, optional
        For ``ordinal`` tasks: the classes from lowest to highest.
    quantiles : sequence of float, optional
        For ``quantile`` tasks: the quantiles to predict, sorted, in (0, 1).
    given : str, optional
        A condition: the task is only defined on rows where the binary task ``given`` is true
        (its second class), or, written ``"task=class"``, where that task's label is that class.
        Its loss counts only those rows; where the predicted condition is false it predicts
        ``otherwise``.
    otherwise : scalar, optional
        The prediction where the condition is false (None: missing).

    Examples
    --------
    >>> Task("rings_class", kind="multiclass", column="rings")
    Task(name='rings_class', kind='multiclass', column='rings')
    >>> Task.parse("tags:multilabel=a,b")
    Task(name='tags', kind='multilabel', columns=('a', 'b'))
    >>> Task.parse("y:quantile(0.1,0.9)")
    Task(name='y', kind='quantile', quantiles=(0.1, 0.9))
    """

    name: str
    kind: str | None = None
    column: str | None = None
    columns: tuple[str, ...] | None = None
    weight: float = 1.0
    loss: str | None = None
    classes: tuple[Any, ...] | None = None
    quantiles: tuple[float, ...] | None = None
    given: str | None = None
    otherwise: Any = None

    def __post_init__(self) -> None:
        # Lists are accepted for convenience; tuples keep the value hashable.
        for key in ("columns", "classes", "quantiles"):
            value = getattr(self, key)
            if value is not None and not isinstance(value, tuple):
                if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
                    raise TaskError(f"task {self.name!r}: {key}= must be a list, got {value!r}")
                object.__setattr__(self, key, tuple(value))

    _DEFAULTS = (("kind", None), ("column", None), ("columns", None), ("weight", 1.0),
                 ("loss", None), ("classes", None), ("quantiles", None), ("given", None),
                 ("otherwise", None))

    def __repr__(self) -> str:
        parts = [f"name={self.name!r}"]
        for key, default in self._DEFAULTS:
            value = getattr(self, key)
            if value != default:
                parts.append(f"{key}={value!r}")
        return f"Task({', '.join(parts)})"

    @classmethod
    def parse(cls, spec: str) -> Task:
        """Read ``"name[:kind[(args)]][=column(s)]"``.

        ``tags:multilabel=a,b,c`` groups three columns; ``y:quantile(0.05,0.5,0.95)`` gives the
        quantiles and ``grade:ordinal(low,mid,high)`` the order of the classes.
        """
        match = _SPEC.match(spec) if isinstance(spec, str) else None
        if match is None:
            raise TaskError(f"cannot read task spec {spec!r}: expected 'name[:kind][=column(s)]'")
        name, kind, args, cols = match["name"], match["kind"], match["args"], match["cols"]
        if kind is not None and kind not in KINDS:
            raise TaskError(f"task {name!r}: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
        options: dict[str, Any] = {}
        if args is not None:
            if kind is None:
                raise TaskError(f"task {name!r}: arguments ({args}) need a kind")
            values = [_number_or_text(a) for a in args.split(",") if a.strip()]
            options = get_kind(kind).parse_args(name, values)
        if cols is None:
            return cls(name, kind=kind, **options)
        names = tuple(c.strip() for c in cols.split(",") if c.strip())
        if len(names) > 1 or (kind is not None and "columns" in get_kind(kind).options):
            return cls(name, kind=kind, columns=names, **options)
        return cls(name, kind=kind, column=names[0], **options)

    @property
    def source_columns(self) -> tuple[str, ...]:
        """The columns of ``y`` this task reads."""
        if self.columns is not None:
            return self.columns
        return (self.column if self.column is not None else self.name,)

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "kind": self.kind, "column": self.column,
               "columns": list(self.columns) if self.columns is not None else None,
               "weight": self.weight, "loss": self.loss}
        for key in ("classes", "quantiles", "given", "otherwise"):
            value = getattr(self, key)
            if value is not None:
                out[key] = list(value) if isinstance(value, tuple) else _plain(value)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Task:
        if not isinstance(data, Mapping) or not isinstance(data.get("name"), str):
            raise TaskError(f"invalid task entry: {data!r}")
        weight = data.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise TaskError(f"task {data['name']!r}: invalid weight {weight!r}")
        for key in ("kind", "column", "loss", "given"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise TaskError(f"task {data['name']!r}: invalid {key} {data[key]!r}")
        for key in ("columns", "classes", "quantiles"):
            if data.get(key) is not None and not isinstance(data[key], list):
                raise TaskError(f"task {data['name']!r}: invalid {key} {data[key]!r}")
        return cls(str(data["name"]), kind=data.get("kind"), column=data.get("column"),
                   columns=data.get("columns"), weight=float(weight), loss=data.get("loss"),
                   classes=data.get("classes"), quantiles=data.get("quantiles"),
                   given=data.get("given"), otherwise=data.get("otherwise"))


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


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
    missing column, a duplicate name, a bad weight, loss or option, or a bad condition.
    """
    from .conditions import check_conditions

    resolved: list[Task] = []
    seen: set[str] = set()
    listed = _as_task_list(tasks, list(y.columns))
    if tasks is None:  # a block of 0/1 label columns is one multilabel task
        listed = group_label_columns(listed, y)
    for task in listed:
        if not isinstance(task.name, str) or not task.name:
            raise TaskError(f"task names must be non-empty strings, got {task.name!r}")
        if task.name in seen:
            raise TaskError(f"task {task.name!r} is defined twice")
        seen.add(task.name)
        if task.kind is not None and task.kind not in KINDS:
            raise TaskError(f"task {task.name!r}: unknown kind {task.kind!r}; "
                            f"expected one of {', '.join(KINDS)}")
        if task.columns is not None and task.kind is not None and \
                "columns" not in get_kind(task.kind).options:
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
        weight = task.weight
        if isinstance(weight, bool) or not (isinstance(weight, (int, float)) and math.isfinite(weight)
                                            and weight >= 0):
            raise TaskError(f"task {task.name!r}: weight must be a finite number >= 0, got {weight!r}")
        cls = get_kind(kind)
        task = Task(task.name, kind=kind, column=task.column, columns=task.columns,
                    weight=float(weight), loss=task.loss or (cls.losses[0] if cls.losses else None),
                    classes=task.classes, quantiles=task.quantiles, given=task.given,
                    otherwise=task.otherwise)
        cls.check_task(task)
        resolved.append(task)
    if not resolved:
        raise TaskError("no tasks: y has no columns")
    if all(t.weight == 0 for t in resolved):
        raise TaskError("every task has weight 0, so there is nothing to train; give at least "
                        "one task a positive weight")
    check_conditions(resolved)
    return resolved


#: tasks=None groups this many label columns (or more) into one multilabel task
LABEL_BLOCK = 8


def is_label_column(column: pd.Series) -> bool:
    """Whether a target column holds 0/1 labels: booleans, or integers (floats with missing
    values, the integers pandas could not store) whose values are all 0 or 1, including a
    column that is constant at one of them."""
    values = column.dropna()
    if len(values) == 0 or isinstance(column.dtype, pd.CategoricalDtype):
        return False
    if pd.api.types.is_bool_dtype(column.dtype):
        return True
    numeric = numeric_kind(values)
    if numeric is None or not bool(values.isin([0, 1]).all()):
        return False
    return bool(pd.api.types.is_integer_dtype(column.dtype)
                or (column.isna().any() and numeric == "floating"))


def group_label_columns(tasks: list[Task], y: pd.DataFrame, name: str = "labels",
                        taken: Iterable[str] = ()) -> list[Task]:
    """``tasks`` with their 0/1 label columns as one multilabel task, where at least
    ``LABEL_BLOCK`` of them are plain tasks of one column with no kind given (what
    ``tasks=None`` makes); the task takes the first label's place and is called ``name`` (with
    a suffix where a task, a column or one of ``taken`` has that name). Fewer label columns
    stay binary tasks."""
    def plain(t: Task) -> bool:
        return (t.kind is None and t.columns is None and t.weight == 1.0 and t.loss is None
                and t.given is None and t.otherwise is None and t.source_columns[0] in y.columns)

    labels = [t for t in tasks if plain(t) and is_label_column(y[t.source_columns[0]])]
    if len(labels) < LABEL_BLOCK:
        return tasks
    taken = {t.name for t in tasks} | {str(c) for c in y.columns} | set(taken)
    unique, n = name, 1
    while unique in taken:
        unique, n = f"{name}_{n}", n + 1
    block = Task(unique, kind="multilabel", columns=tuple(t.source_columns[0] for t in labels))
    grouped = {id(t) for t in labels}
    out: list[Task] = []
    for t in tasks:
        if id(t) not in grouped:
            out.append(t)
        elif t is labels[0]:
            out.append(block)
    return out


def infer_kind(column: pd.Series) -> str:
    """The kind a target column implies (rules in the module docstring)."""
    values = column.dropna()
    if pd.api.types.is_bool_dtype(column.dtype) or isinstance(column.dtype, pd.CategoricalDtype):
        return "binary" if values.nunique() == 2 else "multiclass"
    numeric = numeric_kind(values)
    if numeric is None:
        return "binary" if values.nunique() == 2 else "multiclass"
    if numeric == "floating":
        as_float = values.astype(float)
        whole = bool(np.all(np.mod(as_float, 1) == 0)) if len(as_float) else False
        if not (whole and column.isna().any()):
            return "regression"
    return "binary" if values.nunique() == 2 else "regression"


def fit_task(task: Task, y: pd.DataFrame) -> Kind:
    """``task`` fitted to its training labels: an instance of its kind."""
    return get_kind(str(task.kind)).from_labels(task, y)


def fit_tasks(tasks: list[Task], y: pd.DataFrame,
              weights: Mapping[str, np.ndarray] | None = None) -> list[Kind]:
    """Every task fitted to the labels it trains on: a conditional task only to rows where its
    condition holds, and no task to labels whose sample weight is 0 (those count as missing,
    also for its scale and classes). Conditions are checked against the fitted classes."""
    from .conditions import check_condition_classes, parse_given

    fitted: dict[str, Kind] = {}
    pending = list(tasks)
    while pending:
        ready = [t for t in pending if t.given is None or parse_given(t.given)[0] in fitted]
        if not ready:  # pragma: no cover - check_conditions refuses cycles first
            raise TaskError("conditions form a cycle")
        for task in ready:
            fitted[task.name] = fit_task(task, _training_labels(task, y, fitted, weights))
            pending.remove(task)
    states = [fitted[t.name] for t in tasks]
    check_condition_classes(states)
    return states


def _training_labels(task: Task, y: pd.DataFrame, fitted: Mapping[str, Kind],
                     weights: Mapping[str, np.ndarray] | None) -> pd.DataFrame:
    """The task's columns with the labels it does not train on blanked."""
    from .conditions import label_mask

    cols = list(task.source_columns)
    keep = np.ones((len(y), len(cols)), dtype=bool)
    if task.given is not None:
        probe = get_kind(str(task.kind))(task)  # only its task is read to follow the chain
        mask = label_mask(probe, [*fitted.values(), probe], y)
        assert mask is not None
        keep &= mask[:, None]
    if weights is not None:
        for j, col in enumerate(cols):
            if col in weights:
                keep[:, j] &= weights[col] > 0
    if keep.all():
        return y[cols]
    labelled = y[cols].notna().to_numpy()
    if labelled.any() and not (labelled & keep).any():
        why = ("its condition never holds on a labelled row" if task.given is not None and
               weights is None else "the sample weights of its labelled rows are all zero, or "
               "its condition never holds on them")
        raise TaskError(f"task {task.name!r} has nothing to learn from: {why}")
    return y[cols].astype(object).where(pd.DataFrame(keep, index=y.index, columns=cols))


def task_from_dict(data: Mapping[str, Any]) -> Kind:
    """A fitted task from :meth:`Kind.to_dict` (or a format-1 manifest entry)."""
    if not isinstance(data, Mapping):
        raise TaskError(f"invalid fitted task entry: {data!r}")
    task = Task.from_dict(data.get("task", {}))
    if not task.name or not (math.isfinite(task.weight) and task.weight >= 0):
        raise TaskError(f"task {task.name!r}: invalid name or weight")
    cls = get_kind(str(task.kind))
    cls.check_task(task)
    fitted = cls(task)
    state = data.get("state")
    if state is None:  # format 1: classes, mean and scale beside the task
        state = {k: data.get(k) for k in ("classes", "classes_dtype", "mean", "scale")}
    if not isinstance(state, Mapping):
        raise TaskError(f"task {task.name!r}: invalid state {state!r}")
    fitted.load_state(state)
    return fitted


def describe_tasks(tasks: Iterable[Kind]) -> pd.DataFrame:
    """A table of tasks: kind, columns, weight, loss, classes, condition."""
    rows = []
    for t in tasks:
        classes = "" if t.classes is None else ", ".join(map(str, t.classes.tolist()[:8]))
        if t.classes is not None and len(t.classes) > 8:
            classes += f", ... ({len(t.classes)})"
        if t.task.quantiles is not None:
            classes = "quantiles " + ", ".join(f"{q:g}" for q in t.task.quantiles)
        rows.append({"task": t.name, "kind": t.kind, "columns": ", ".join(t.task.source_columns),
                     "weight": t.task.weight, "loss": t.task.loss, "classes": classes,
                     "given": "" if t.task.given is None else t.task.given})
    table = pd.DataFrame(rows).set_index("task")
    if not (table["given"] != "").any():
        table = table.drop(columns="given")
    return table
