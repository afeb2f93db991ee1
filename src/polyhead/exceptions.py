"""The exception types polyhead raises, in one place.

Every error a user can cause is a ``ValueError`` subclass (or ``NotFittedError``) whose
message names the task, column, row or value at fault.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ModelFileError", "NotFittedError", "PolyheadError", "PolyheadWarning", "TaskError"]  # noqa: F822 (lazy)


class PolyheadError(ValueError):
    """Base class for errors caused by the user's input."""


class TaskError(PolyheadError):
    """A task definition or a target column is invalid."""


class ModelFileError(PolyheadError):
    """A saved model directory is missing, corrupted, tampered with or from a newer format."""


class PolyheadWarning(UserWarning):
    """Something in the input is probably a mistake (an identifier used as a feature, say),
    but a model can still be fitted."""


def __getattr__(name: str) -> Any:
    # scikit-learn's own NotFittedError (so one ``except`` catches both), imported on first
    # use: importing scikit-learn costs ~70 MiB, which a torch-free ONNX service never needs
    if name == "NotFittedError":
        from sklearn.exceptions import NotFittedError

        return NotFittedError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
