"""A small declarative checker for estimator parameters.

Each estimator declares ``_parameter_constraints = {"name": [constraint, ...]}`` next to its class
and calls :func:`validate_params` at the start of ``fit``. A value passes when it satisfies any
one constraint; otherwise a :class:`~polyhead.exceptions.PolyheadError` shows the bad value and
what was expected.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .exceptions import PolyheadError


@dataclass(frozen=True)
class Interval:
    """A real or integral number between ``low`` and ``high`` (None = unbounded)."""

    kind: type
    low: float | None
    high: float | None
    closed: str = "both"  # "both", "left", "right", "neither"

    def __call__(self, value: Any) -> bool:
        if isinstance(value, bool):
            return False
        if self.kind is int and not isinstance(value, numbers.Integral):
            return False
        if not isinstance(value, numbers.Real):
            return False
        x = float(value)
        lo_ok = self.low is None or (x >= self.low if self.closed in ("both", "left") else x > self.low)
        hi_ok = self.high is None or (x <= self.high if self.closed in ("both", "right") else x < self.high)
        return bool(lo_ok and hi_ok)

    def __str__(self) -> str:
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        low = "-inf" if self.low is None else self.low
        high = "inf" if self.high is None else self.high
        return f"{'an int' if self.kind is int else 'a float'} in {left}{low}, {high}{right}"


@dataclass(frozen=True)
class Options:
    """One of a fixed set of values."""

    values: frozenset[Any]

    def __call__(self, value: Any) -> bool:
        try:
            return value in self.values
        except TypeError:
            return False

    def __str__(self) -> str:
        return "one of " + ", ".join(sorted(repr(v) for v in self.values))


@dataclass(frozen=True)
class Satisfies:
    """Any predicate, with a description for the error message."""

    predicate: Callable[[Any], bool]
    description: str

    def __call__(self, value: Any) -> bool:
        return bool(self.predicate(value))

    def __str__(self) -> str:
        return self.description


def options(*values: Any) -> Options:
    """One of these values (compared with ==; strings never match numbers)."""
    return Options(frozenset(values))


def is_instance(*types: type, description: str | None = None) -> Satisfies:
    names = " or ".join(t.__name__ for t in types)
    return Satisfies(lambda v: isinstance(v, types), description or f"an instance of {names}")


def sizes(value: Any) -> bool:
    """A tuple/list of positive ints (layer widths)."""
    return (isinstance(value, Iterable) and not isinstance(value, (str, bytes, Mapping))
            and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and int(v) > 0
                    for v in value))


NONE = options(None)
BOOL = is_instance(bool, description="True or False")
SEED = Satisfies(lambda v: v is None or (isinstance(v, numbers.Integral) and not isinstance(v, bool) and int(v) >= 0),
                 "None or an int >= 0")


def validate_params(estimator: Any, constraints: Mapping[str, list[Any]]) -> None:
    """Raise a PolyheadError naming the first parameter that satisfies none of its constraints."""
    cls = type(estimator).__name__
    for name, allowed in constraints.items():
        value = getattr(estimator, name)
        if not any(check(value) for check in allowed):
            expected = " or ".join(str(c) for c in allowed)
            raise PolyheadError(f"{cls}: parameter {name}={value!r} is invalid; expected {expected}")
