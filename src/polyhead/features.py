"""Features: a table in, one dense float32 matrix out, fitted once on the training frame.

* Numeric columns are standardised. A numeric column that has missing values at fit time is
  imputed with its mean (0 after standardising) and gets a 0/1 missing-indicator column; a NaN
  arriving at predict time in a column that had none at fit is imputed the same way.
* Categorical columns (object, string, category, bool) are one-hot encoded. One-hot followed by
  the trunk's first ``Linear`` layer *is* an embedding of width ``hidden[0]`` summed into the
  first layer, so at the cardinalities of tabular data it loses nothing against separate
  embedding tables, and it keeps the input a single dense tensor (one copy, one matmul, no
  per-column lookups). Slot 0 of every column is reserved for categories unseen at fit: it is the
  all-zero vector, i.e. "no evidence", so an unseen category leaves the row's other features to
  speak. A missing category seen at fit gets its own learnt slot.
* Datetime, timedelta and complex columns are refused with a message that says what to do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ._convert import as_float, check_finite, plain
from .exceptions import PolyheadError

MISSING_CATEGORY = "<missing>"


def is_categorical(column: pd.Series) -> bool:
    """Whether a feature column is encoded as categories rather than numbers."""
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return True
    if pd.api.types.is_numeric_dtype(dtype):
        return False
    inferred = pd.api.types.infer_dtype(column, skipna=True)
    return inferred not in ("integer", "floating", "mixed-integer-float", "decimal", "empty")


def _check_supported(name: str, column: pd.Series) -> None:
    dtype = column.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        raise PolyheadError(f"feature column {name!r} has dtype {dtype}; convert it to numbers "
                            "(e.g. a timestamp or day of year) or drop it")
    if pd.api.types.is_complex_dtype(dtype):
        raise PolyheadError(f"feature column {name!r} holds complex numbers, which are not supported")


class FeatureEncoder:
    """Fitted encoding of a feature table into a float32 matrix.

    Examples
    --------
    >>> import pandas as pd
    >>> enc = FeatureEncoder().fit(pd.DataFrame({"a": [1.0, 2.0, None], "b": ["x", "y", "x"]}))
    >>> enc.feature_names_out_
    ['a', 'a__missing', 'b=x', 'b=y']
    >>> enc.transform(pd.DataFrame({"a": [1.5], "b": ["z"]})).tolist()
    [[0.0, 0.0, 0.0, 0.0]]
    """

    def __init__(self, standardize: bool = True) -> None:
        # Trees need no scaling, and skipping it keeps their splits exactly scikit-learn's.
        self.standardize = standardize
        self.columns_: list[dict[str, Any]] = []
        self._lookups: dict[str, dict[Any, int]] = {}

    # -- fit ---------------------------------------------------------------------------------
    def fit(self, X: pd.DataFrame) -> FeatureEncoder:
        if X.shape[1] == 0:
            raise PolyheadError("X has no feature columns")
        self.columns_ = []
        self._lookups = {}
        for name in X.columns:
            column = X[name]
            _check_supported(name, column)
            if is_categorical(column):
                self.columns_.append(self._fit_categorical(name, column))
            else:
                values = self._numeric(name, column)
                observed = values[~np.isnan(values)]
                mean = float(observed.mean()) if len(observed) else 0.0
                std = float(observed.std()) if len(observed) else 0.0
                fill = mean
                if not self.standardize:
                    mean, std = 0.0, 1.0
                self.columns_.append({"fill": fill,
                    "name": name, "type": "numeric", "mean": mean,
                    "scale": std if std > 0 and np.isfinite(std) else 1.0,
                    "indicator": bool(np.isnan(values).any()),
                })
        return self

    @staticmethod
    def _fit_categorical(name: str, column: pd.Series) -> dict[str, Any]:
        observed = column.dropna()
        if isinstance(column.dtype, pd.CategoricalDtype):
            present = set(observed.unique().tolist())
            cats = [c for c in column.dtype.categories.tolist() if c in present]
        else:
            uniques = observed.unique().tolist()
            try:
                cats = sorted(uniques)
            except TypeError:
                cats = sorted(uniques, key=str)
        cats = [plain(c) for c in cats]
        for c in cats:
            if not isinstance(c, (str, int, float, bool)):
                raise PolyheadError(f"feature column {name!r}: category {c!r} of type "
                                    f"{type(c).__name__} is not supported; convert it to text")
        return {"name": name, "type": "categorical", "categories": cats,
                "missing_slot": bool(column.isna().any())}

    # -- transform ---------------------------------------------------------------------------
    @property
    def feature_names_out_(self) -> list[str]:
        names: list[str] = []
        for col in self.columns_:
            if col["type"] == "numeric":
                names.append(str(col["name"]))
                if col["indicator"]:
                    names.append(f"{col['name']}__missing")
            else:
                names.extend(f"{col['name']}={c}" for c in col["categories"])
                if col["missing_slot"]:
                    names.append(f"{col['name']}={MISSING_CATEGORY}")
        return names

    @property
    def n_outputs_(self) -> int:
        return len(self.feature_names_out_)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        """Encode ``X`` (which must hold every fitted column) as float32 ``(n, n_outputs_)``."""
        missing = [c["name"] for c in self.columns_ if c["name"] not in X.columns]
        if missing:
            raise PolyheadError(f"X is missing feature column {missing[0]!r} seen at fit "
                                f"({len(missing)} missing in all)")
        n = len(X)
        out = np.zeros((n, self.n_outputs_), dtype=np.float32)
        numeric = self._numeric_block(X)
        j = 0
        for col in self.columns_:
            name = col["name"]
            if col["type"] == "numeric":
                values = numeric[name]
                nan = np.isnan(values)
                if col["mean"] == 0.0 and col["scale"] == 1.0:
                    out[:, j] = np.where(nan, col.get("fill", 0.0), values)
                else:
                    out[:, j] = np.where(nan, 0.0, (values - col["mean"]) / col["scale"])
                j += 1
                if col["indicator"]:
                    out[:, j] = nan
                    j += 1
            else:
                column = X[name]
                codes = self._codes(col, column)
                width = len(col["categories"])
                if col["missing_slot"]:
                    codes = np.where(column.isna().to_numpy(), width, codes)
                    width += 1
                rows = np.flatnonzero(codes >= 0)
                out[rows, j + codes[rows]] = 1.0
                j += width
        return out

    def _numeric_block(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        """Every numeric feature as float64, converted in one block when the dtypes allow."""
        names = [c["name"] for c in self.columns_ if c["type"] == "numeric"]
        if not names:
            return {}
        dtypes = X.dtypes
        if all(pd.api.types.is_numeric_dtype(dtypes[n]) and not pd.api.types.is_bool_dtype(dtypes[n])
               for n in names):
            block = X[names].to_numpy(dtype=np.float64, na_value=np.nan)
            if np.isinf(block).any():
                k = int(np.flatnonzero(np.isinf(block).any(axis=0))[0])
                check_finite(block[:, k], f"feature column {names[k]!r}", X.index, PolyheadError)
            return {n: block[:, k] for k, n in enumerate(names)}
        return {n: self._numeric(n, X[n]) for n in names}

    def _codes(self, col: dict[str, Any], column: pd.Series) -> np.ndarray:
        """Position of each value among the fitted categories (-1: unseen or missing)."""
        cats = col["categories"]
        values = column.to_numpy(dtype=object)
        if len(values) <= 1024:  # a dict beats building pandas indexes for a few rows
            lookup = self._lookups.get(col["name"])
            if lookup is None:
                lookup = self._lookups[col["name"]] = {c: i for i, c in enumerate(cats)}
            return np.fromiter((lookup.get(v, -1) for v in values), dtype=np.int64, count=len(values))
        return pd.Index(cats, dtype=object).get_indexer(pd.Index(values.tolist(), dtype=object))

    @staticmethod
    def _numeric(name: str, column: pd.Series) -> np.ndarray:
        _check_supported(name, column)
        return as_float(column, f"feature column {name!r}", PolyheadError)

    # -- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"columns": self.columns_, "standardize": self.standardize}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureEncoder:
        enc = cls(standardize=bool(data.get("standardize", True)))
        columns = data["columns"]
        if not isinstance(columns, Sequence):
            raise PolyheadError("feature encoder state must hold a list of columns")
        for col in columns:
            kind = col.get("type") if isinstance(col, Mapping) else None
            required = {"numeric": ("name", "mean", "scale", "indicator"),
                        "categorical": ("name", "categories", "missing_slot")}.get(str(kind))
            if required is None or any(k not in col for k in required):
                raise PolyheadError(f"feature encoder state has an invalid column entry: {col!r}")
        enc.columns_ = [dict(c) for c in columns]
        enc._lookups = {}
        return enc
