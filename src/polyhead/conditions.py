"""Conditional tasks: a target that only exists when another task's label says so.

``Task("amount", kind="regression", given="buys", otherwise=0.0)``: the amount is defined on
rows where the binary task ``buys`` is true (its second class); ``given="grade=high"`` names a
class of a multiclass or ordinal task. Conditions may chain (``buys`` may itself be given
``visits``).

* **Training**, in every family: the task's labels count only on rows whose condition holds in
  the *labels* (and, for a chain, whose every condition up the chain holds). A row whose
  condition label is missing does not count.
* **Prediction** (``predict``): ``otherwise`` wherever the *predicted* condition is false (None
  gives a missing value). With ``predict(X, expected=True)``, numbers are
  ``P(condition) * value + (1 - P(condition)) * otherwise``, and ``predict_proba`` of a
  conditional class task is always that mixture, the task's marginal distribution.
* ``evaluate`` and ``score`` measure what ``predict`` returns.

A cycle, a condition naming a task that does not exist, a condition on a task that is not
binary, multiclass or ordinal, a multiclass or ordinal condition without a class, or a class
the task does not have is a one-line :class:`~polyhead.exceptions.TaskError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .exceptions import TaskError
from .kinds import get_kind

if TYPE_CHECKING:  # pragma: no cover
    from .kinds import Kind
    from .tasks import Task

def parse_given(given: str) -> tuple[str, str | None]:
    """``"buys"`` -> ("buys", None); ``"grade=high"`` -> ("grade", "high")."""
    name, sep, label = given.partition("=")
    return name.strip(), (label.strip() if sep else None)


def check_conditions(tasks: Sequence[Task]) -> None:
    """Conditions name existing tasks of a kind that has classes, and form no cycle."""
    by_name = {t.name: t for t in tasks}
    for task in tasks:
        if task.given is None:
            if task.otherwise is not None:
                raise TaskError(f"task {task.name!r}: otherwise= needs a condition (given=)")
            continue
        if not isinstance(task.given, str) or not task.given.strip():
            raise TaskError(f"task {task.name!r}: given= must name a task, got {task.given!r}")
        name, label = parse_given(task.given)
        if name not in by_name:
            raise TaskError(f"task {task.name!r} is given {name!r}, which is not a task "
                            f"(tasks: {', '.join(by_name)})")
        if name == task.name:
            raise TaskError(f"task {task.name!r} cannot be given itself")
        parent = by_name[name]
        parent_kind = get_kind(str(parent.kind))
        if not parent_kind.can_condition:
            raise TaskError(f"task {task.name!r} is given {name!r}, a {parent.kind} task; a "
                            "condition must be a task with classes (binary, multiclass, ordinal)")
        if parent_kind.default_condition is None and label is None:
            raise TaskError(f"task {task.name!r} is given {name!r}, a {parent.kind} task: name "
                            f"the class, e.g. given=\"{name}=<class>\"")
    for task in tasks:  # cycles: follow the chain of conditions
        seen = [task.name]
        current = task
        while current.given is not None:
            name, _ = parse_given(current.given)
            if name in seen:
                raise TaskError("conditions form a cycle: " + " -> ".join([*seen, name]))
            seen.append(name)
            current = by_name[name]


def check_condition_classes(states: Sequence[Kind]) -> None:
    """The class a condition names exists, and ``otherwise`` fits its task (after fitting)."""
    by_name = {s.name: s for s in states}
    for state in states:
        if state.task.given is None:
            continue
        _condition_code(state, by_name)
        state.otherwise_output(state.task.otherwise, 1)  # raises for a bad otherwise


def _condition_code(state: Kind, by_name: Mapping[str, Kind]) -> tuple[Kind, int]:
    name, label = parse_given(str(state.task.given))
    parent = by_name[name]
    assert parent.classes is not None
    if label is None:
        return parent, int(parent.default_condition or 0)
    codes = parent.class_codes(pd.Series([label], dtype=object))  # type: ignore[attr-defined]
    if codes[0] < 0:
        raise TaskError(f"task {state.name!r} is given {name}={label!r}, but task {name!r} has no "
                        f"class {label!r} (classes: {', '.join(map(str, parent.classes.tolist()[:8]))})")
    return parent, int(codes[0])


def has_conditions(states: Sequence[Kind]) -> bool:
    return any(s.task.given is not None for s in states)


def label_mask(state: Kind, states: Sequence[Kind], y: pd.DataFrame) -> np.ndarray | None:
    """Rows whose condition holds in the labels (every condition up the chain); None when
    ``state`` has no condition."""
    if state.task.given is None:
        return None
    by_name = {s.name: s for s in states}
    parent, code = _condition_code(state, by_name)
    codes = parent.class_codes(parent.column(y))  # type: ignore[attr-defined]
    holds = codes == code
    above = label_mask(parent, states, y)
    return holds if above is None else holds & above


def masks(states: Sequence[Kind], y: pd.DataFrame) -> dict[str, np.ndarray]:
    """Condition masks of the conditional tasks, by task name."""
    out = {}
    for state in states:
        mask = label_mask(state, states, y)
        if mask is not None:
            out[state.name] = mask
    return out


def _predicted(state: Kind, by_name: Mapping[str, Kind], outputs: Mapping[str, np.ndarray],
               cache: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(the condition predicted to hold, P(condition holds)) per row, up the chain."""
    if state.name in cache:
        return cache[state.name]
    parent, code = _condition_code(state, by_name)
    proba = parent.proba_array(outputs[parent.name])
    holds = parent.proba_array(outputs[parent.name]).argmax(axis=1) == code
    p = proba[:, code]
    if parent.task.given is not None:
        parent_holds, parent_p = _predicted(parent, by_name, outputs, cache)
        # the parent's prediction is already its own conditional one: where the parent's
        # condition is false the parent is its `otherwise` class
        fallback = parent.otherwise_output(parent.task.otherwise, 1)
        other_p = 0.0 if parent.task.otherwise is None else float(parent.proba_array(fallback)[0, code])
        holds = np.where(parent_holds, holds, other_p >= 0.5)
        p = parent_p * p + (1 - parent_p) * other_p
    cache[state.name] = (holds, p)
    return holds, p


def apply(states: Sequence[Kind], outputs: Mapping[str, np.ndarray], *,
          expected: bool = False) -> dict[str, np.ndarray]:
    """Outputs with every condition applied: ``otherwise`` where the predicted condition is
    false, or, with ``expected``, the probability-weighted mixture."""
    return _combine(states, outputs, "expected" if expected else "hard")


def mixture(states: Sequence[Kind], outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs of conditional class tasks as their marginal distribution (for predict_proba);
    a task with ``otherwise=None`` keeps its conditional probabilities."""
    return _combine(states, outputs, "mixture")


def _combine(states: Sequence[Kind], outputs: Mapping[str, np.ndarray], how: str) -> dict[str, np.ndarray]:
    out = dict(outputs)
    if not has_conditions(states):
        return out
    by_name = {s.name: s for s in states}
    cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for state in states:
        if state.task.given is None:
            continue
        if how == "mixture" and (not state.has_proba or state.task.otherwise is None):
            continue
        if how == "expected" and state.task.otherwise is None:
            raise TaskError(f"task {state.name!r}: expected=True needs the value where its "
                            "condition is false: Task(..., otherwise=...)")
        holds, p = _predicted(state, by_name, outputs, cache)
        values = np.asarray(outputs[state.name], dtype=float)
        fallback = state.otherwise_output(state.task.otherwise, len(values))
        shape = (-1,) + (1,) * (values.ndim - 1)
        if how == "hard":
            out[state.name] = np.where(holds.reshape(shape), values, fallback)
        else:
            out[state.name] = p.reshape(shape) * values + (1 - p.reshape(shape)) * fallback
    return out


def describe(task: Task) -> str:
    if task.given is None:
        return ""
    return f"given {task.given}" + (f", otherwise {task.otherwise!r}" if task.otherwise is not None else "")


def condition_rows(states: Sequence[Kind], y: pd.DataFrame, name: str) -> Any:
    """Row positions where task ``name``'s condition holds in the labels (all rows if none)."""
    state = next(s for s in states if s.name == name)
    mask = label_mask(state, states, y)
    return np.arange(len(y)) if mask is None else np.flatnonzero(mask)
