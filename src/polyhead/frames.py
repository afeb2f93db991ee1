"""Checks every table goes through before a model sees it, for every family, in one place.

Each check raises one :class:`~polyhead.exceptions.PolyheadError` whose message names the
table, the column and, where there is one, the row and the value.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ._convert import plain, row_label
from .exceptions import PolyheadError

_NESTED = (list, tuple, dict, set, np.ndarray)


def check_unique_columns(frame: pd.DataFrame, what: str) -> None:
    """Column names must be unique once made strings (a CSV header ``a,a,b`` included)."""
    if frame.columns.is_unique and all(type(c) is str for c in frame.columns):
        return  # the common case, without building an index (it costs per predict call)
    names = pd.Index([str(c) for c in frame.columns])
    duplicated = names.duplicated()
    if duplicated.any():
        name = names[int(np.flatnonzero(duplicated)[0])]
        where = [i for i, n in enumerate(names) if n == name]
        raise PolyheadError(f"{what} has duplicate column name {name!r} (columns "
                            f"{', '.join(map(str, where))}); column names must be unique")


def check_flat_values(frame: pd.DataFrame, what: str, columns: Any = None) -> None:
    """No column (of ``columns``, default all) may hold lists, dicts or arrays (a Parquet list
    or struct column). Only object columns can: the others are not looked at."""
    for name in frame.columns if columns is None else columns:
        if column_array(frame, name).dtype != object:
            continue
        column = frame[name]
        if pd.api.types.infer_dtype(column, skipna=True) not in ("mixed", "unknown-array"):
            continue
        nested = column.map(lambda v: isinstance(v, _NESTED)).to_numpy(dtype=bool)
        if nested.any():
            i = int(np.flatnonzero(nested)[0])
            value = column.iloc[i]
            if isinstance(value, np.ndarray):  # how pandas holds a Parquet/Arrow list
                value = value.tolist()
            kind = "dict (struct)" if isinstance(value, dict) else type(value).__name__
            raise PolyheadError(f"{what} column {name!r} holds {kind} values (e.g. "
                                f"{describe_value(value)} at row {row_label(column.index, i)!r}), "
                                "not numbers or categories; drop it or flatten it into columns")


def column_array(frame: pd.DataFrame, name: Any) -> Any:
    """The values of column ``name`` (a numpy or pandas array), without building a Series.

    Selecting a column costs about 12 microseconds in pandas 3, which adds up per column in a
    one-row prediction; pandas' own accessor by position costs one. Falls back to the public
    path where that accessor does not exist."""
    getter = getattr(frame, "_get_column_array", None)
    if getter is not None:
        position = frame.columns.get_loc(name)
        if isinstance(position, int):
            return getter(position)
    return frame[name].array


def few_values(column: pd.Series) -> np.ndarray:
    """A short column's values as Python objects (missing as they are), for dictionary lookups.
    A categorical column is read through its codes: converting it costs 50 microseconds."""
    array = column.array
    if isinstance(array, pd.Categorical):
        categories = array.categories
        return np.array([categories[c] if c >= 0 else None for c in array.codes.tolist()], dtype=object)
    return column.to_numpy(dtype=object)


def check_frame(frame: pd.DataFrame, what: str) -> None:
    """Every check above, for a table about to be used as ``what`` ("X", "y", a file)."""
    check_unique_columns(frame, what)
    check_flat_values(frame, what)


def looks_like_identifier(column: pd.Series) -> bool:
    """A column with (nearly) one distinct value per row: an id, a name, a row number."""
    n = len(column)
    if n < 50 or pd.api.types.is_float_dtype(column.dtype):  # measurements, not names
        return False
    observed = column.dropna()
    if len(observed) < 0.9 * n:
        return False
    distinct = observed.nunique()
    if distinct >= 0.9 * len(observed):
        if pd.api.types.is_integer_dtype(column.dtype):  # numbers: only a running count
            values = observed.to_numpy()
            return bool(len(values) > 1 and np.all(np.diff(values) == 1))
        return True
    return False


def describe_value(value: Any) -> str:
    text = repr(plain(value))
    return text if len(text) <= 40 else text[:37] + "..."
