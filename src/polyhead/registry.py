"""Registries: the names a model file may use, filled by the modules that define them.

Persistence looks estimators up here by name instead of importing every family, so the core
never imports the edges and nothing imports in a circle. A model file can only ever name a
class that registered itself: nothing else is constructed when a model is loaded.
"""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T", bound=type)

ESTIMATORS: dict[str, type] = {}


def register_estimator(cls: T) -> T:
    """Class decorator: allow model files to name ``cls`` (by its class name)."""
    ESTIMATORS[cls.__name__] = cls
    return cls


def estimators() -> dict[str, Any]:
    """Every registered estimator class, by name (imports the built-in families first)."""
    from . import models  # noqa: F401  (registers the built-in families)

    return dict(ESTIMATORS)
