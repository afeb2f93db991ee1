"""Turning table columns into numbers, with errors that name the column, the row and the value."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (messages show 2, not np.int64(2))."""
    return value.item() if isinstance(value, np.generic) else value


def row_label(index: pd.Index, position: int) -> Any:
    return plain(index[position])


def as_float(column: pd.Series, subject: str, error: type[Exception]) -> np.ndarray:
    """``column`` as float64 with NaN for missing values.

    Raises ``error`` naming ``subject``, an example value and its row when a value is not a
    number or is infinite.
    """
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype):
        values = column.astype(float).to_numpy()
    elif pd.api.types.is_numeric_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        values = pd.to_numeric(column.astype(object), errors="coerce").to_numpy(dtype=np.float64)
        bad = np.isnan(values) & column.notna().to_numpy()
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise error(f"{subject} has {int(bad.sum())} non-numeric value(s), e.g. "
                        f"{plain(column.iloc[first])!r} at row {row_label(column.index, first)!r}")
    check_finite(values, subject, column.index, error)
    return values


FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_finite(values: np.ndarray, subject: str, index: pd.Index, error: type[Exception]) -> None:
    """Raise ``error`` at the first infinite value, or one too large for float32, which is what
    every model computes in (NaN is a missing value, not an error)."""
    with np.errstate(invalid="ignore"):
        bad = np.abs(values) > FLOAT32_MAX
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        value = float(values[first])
        what = "an infinite value" if np.isinf(value) else "a value too large for float32"
        raise error(f"{subject} has {what} ({value:g}) at row {row_label(index, first)!r}; "
                    f"values must be finite and below {FLOAT32_MAX:.3g} in size")
