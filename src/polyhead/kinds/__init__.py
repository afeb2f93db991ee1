"""Task kinds: one module per kind, each a :class:`Kind` subclass, found through a registry.

Built in: ``regression``, ``binary``, ``multiclass``, ``multilabel``, ``ordinal``, ``count``,
``quantile``. A kind from outside polyhead registers itself and is then usable by name::

    from polyhead.kinds import Regression, register_kind

    @register_kind
    class LogRegression(Regression):
        kind = "log_regression"
        ...

    Task("price", kind="log_regression")

Kind inference (``Task(kind=None)``) only ever picks regression, binary or multiclass (see
:func:`polyhead.tasks.infer_kind`).
"""

from __future__ import annotations

from typing import TypeVar

from ..exceptions import TaskError
from .base import Kind, Slot, align_outputs
from .binary import Binary
from .count import Count
from .multiclass import Multiclass
from .multilabel import Multilabel
from .ordinal import Ordinal
from .quantile import Quantile
from .regression import Regression

K = TypeVar("K", bound=type[Kind])

KINDS: dict[str, type[Kind]] = {}


def register_kind(cls: K) -> K:
    """Class decorator: make ``cls`` usable as ``Task(kind=cls.kind)``."""
    if not (isinstance(cls, type) and issubclass(cls, Kind)) or not cls.kind:
        raise TypeError("register_kind takes a Kind subclass with a non-empty `kind` name")
    KINDS[cls.kind] = cls
    return cls


def get_kind(name: str) -> type[Kind]:
    """The registered kind called ``name`` (a TaskError listing the known ones otherwise)."""
    try:
        return KINDS[name]
    except (KeyError, TypeError):
        raise TaskError(f"unknown kind {name!r}; expected one of {', '.join(KINDS)}") from None


for _cls in (Regression, Binary, Multiclass, Multilabel, Ordinal, Count, Quantile):
    register_kind(_cls)

__all__ = ["KINDS", "Binary", "Count", "Kind", "Multiclass", "Multilabel", "Ordinal",
           "Quantile", "Regression", "Slot", "align_outputs", "get_kind", "register_kind"]
