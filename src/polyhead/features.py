"""Features: a table in, one dense float32 matrix out, fitted once on the training frame.

Numeric columns (``numeric=``):

* ``"standard"``: ``(x - mean) / std``;
* ``"clipped"`` (the network's default): standardised with a mean and standard deviation
  estimated on values winsorised at ``CLIP_SIGMAS`` (10) standard deviations (three rounds),
  then squashed smoothly into ``(-10, 10)`` with ``10 tanh(z / 10)`` (monotone, within 3% of
  ``z`` up to three standard deviations). A few extreme readings (9 rows in 9,000, 85 standard
  deviations out) neither inflate the scale of every other value nor reach the network as
  huge inputs. A column with at most ``FEW_VALUES`` (10) distinct values (a flag, a small
  code) is standardised plainly: its rare values are information, not outliers;
* ``"robust"``: centred on the median, divided by the inter-quartile range (the range when that
  is 0), then smoothly clipped, ``z / sqrt(1 + (z / 3)^2)``, into (-3, 3) (RealMLP's transform,
  Holzmüller et al., 2024). A reading 85 standard deviations out stays a large value instead
  of one that swamps every other input;
* ``"quantile"``: each value's quantile among the training values, mapped to a standard
  normal (rank-Gauss, the transform of the RTDL/TabM papers' pipelines): skewed or spiky
  columns become well-behaved, and values beyond the training range sit at its edges; at most
  ``QUANTILES`` quantiles per column are kept;
* ``"none"``: values as they are (trees need no scaling).

A numeric column with missing values at fit time is imputed with its centre (0 after scaling)
and gets a 0/1 missing-indicator column; a NaN arriving at predict time in a column that had
none at fit is imputed the same way. Every value must be finite and fit in float32, before
and after scaling: anything else is an error naming the column, the row and the value.

Categorical columns (object, string, category, bool) are one-hot encoded. At most
``max_categories`` categories get a slot of their own: the most frequent ones (ties broken by
order); the rest share an ``<other>`` slot, so memory stays proportional to rows, not to rows x
categories (an id column with 50,000 values costs ``max_categories + 1`` columns, not 50,000).
A category unseen at fit is "other" when the column has that slot, and the all-zero vector ("no
evidence") otherwise. A missing category seen at fit gets a slot of its own. A column with more
than ``embed_above`` categories is given as one integer code instead (0: unseen or other, 1..K:
categories, K+1: missing), for an embedding table inside a network. A column that looks like an
identifier (nearly one distinct value per row) gets a warning naming it.

Datetime, timedelta and complex columns are refused with a message that says what to do.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ._convert import FLOAT32_MAX, as_float, check_finite, plain, row_label
from .exceptions import PolyheadError, PolyheadWarning
from .frames import column_array, few_values, looks_like_identifier

MISSING_CATEGORY = "<missing>"
OTHER_CATEGORY = "<other>"
NUMERIC = ("standard", "clipped", "robust", "quantile", "none")
_CLIP = 3.0
QUANTILES = 200
#: "clipped": winsorising and squashing bound, in standard deviations (10 kept oes97's heavy
#: but genuine tails intact where 5 cost 19% error; benchmarks/quality.py, README "Presets")
CLIP_SIGMAS = 10.0
#: "clipped" standardises plainly a column with at most this many distinct values
FEW_VALUES = 10


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


def _smooth_clip(z: np.ndarray) -> np.ndarray:
    return z / np.sqrt(1.0 + (z / _CLIP) ** 2)


def _rank_gauss(values: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Values -> their quantile among the training values (piecewise linear between the kept
    quantiles, ties averaged) -> the standard normal's quantile of that, within (-5.2, 5.2)."""
    from scipy.special import ndtri

    levels = np.linspace(0, 1, len(knots))
    # average the levels of tied knots (a discrete column), from the left and from the right
    left = np.interp(values, knots, levels)
    right = -np.interp(-values, -knots[::-1], -levels[::-1])
    u = np.clip(0.5 * (left + right), 1e-7, 1 - 1e-7)
    return ndtri(u)


@dataclass
class ColumnStats:
    """What a streaming fit learnt about one column from every row (:mod:`polyhead.streaming`):
    its count of present values, mean and standard deviation (numeric), category counts
    (categorical), and whether any value was missing."""

    count: int = 0
    mean: float = 0.0
    std: float = 1.0
    counts: pd.Series | None = None
    missing: bool = False


class FeatureEncoder:
    """Fitted encoding of a feature table into a float32 matrix.

    Parameters
    ----------
    numeric : {"standard", "robust", "none"}, default="standard"
    max_categories : int, default=64
        Categories with a one-hot slot of their own per column; rarer ones share "<other>".
    embed_above : int or None, default=None
        Columns with more categories than this are given as one integer code (for an
        embedding table) instead of one-hot slots. None: always one-hot.

    Attributes
    ----------
    columns_ : list of dict
        Per input column, what was learnt (the manifest stores exactly this).
    roles_ : list of str
        Per output column: "numeric", "indicator", "onehot" or "code".

    Examples
    --------
    >>> import pandas as pd
    >>> enc = FeatureEncoder().fit(pd.DataFrame({"a": [1.0, 2.0, None], "b": ["x", "y", "x"]}))
    >>> enc.feature_names_out_
    ['a', 'a__missing', 'b=x', 'b=y']
    >>> enc.transform(pd.DataFrame({"a": [1.5], "b": ["z"]})).tolist()
    [[0.0, 0.0, 0.0, 0.0]]
    """

    def __init__(self, numeric: str = "standard", max_categories: int = 64,
                 embed_above: int | None = None) -> None:
        self.numeric = numeric
        self.max_categories = max_categories
        self.embed_above = embed_above
        self.columns_: list[dict[str, Any]] = []
        self._lookups: dict[str, dict[Any, int]] = {}

    # -- fit ---------------------------------------------------------------------------------
    def fit(self, X: pd.DataFrame, stats: Mapping[str, ColumnStats] | None = None) -> FeatureEncoder:
        """Learn the encoding from ``X``; with ``stats`` (a streaming fit's statistics of every
        row, :mod:`polyhead.streaming`), ``X`` is a sample of the rows: category vocabularies,
        missing flags and the "standard" transform's mean and deviation come from ``stats``,
        quantiles and robust scales from the sample."""
        if self.numeric not in NUMERIC:
            raise PolyheadError(f"numeric={self.numeric!r}; expected one of {', '.join(NUMERIC)}")
        if X.shape[1] == 0:
            raise PolyheadError("X has no feature columns")
        self.columns_ = []
        self._lookups = {}
        for name in X.columns:
            column = X[name]
            _check_supported(name, column)
            whole = None if stats is None else stats.get(name)
            if is_categorical(column):
                self.columns_.append(self._fit_categorical(name, column, whole))
            else:
                self.columns_.append(self._fit_numeric(name, column, whole))
        return self

    def _fit_numeric(self, name: str, column: pd.Series, whole: ColumnStats | None = None) -> dict[str, Any]:
        values = self._numeric(name, column)
        observed = values[~np.isnan(values)]
        if looks_like_identifier(column):
            _warn_identifier(name, column)
        center, scale = 0.0, 1.0
        transform = self.numeric
        if transform == "clipped" and len(np.unique(observed[:100_000])) <= FEW_VALUES:
            transform = "standard"  # a flag or a small code: its rare values are not outliers
        if whole is not None and whole.count and transform == "standard":
            center, scale = whole.mean, whole.std
        elif len(observed) and transform == "standard":
            center, scale = float(observed.mean()), float(observed.std())
        elif len(observed) and transform == "clipped":
            center, scale = float(observed.mean()), float(observed.std())
            for _ in range(3):  # the outliers' pull on the scale fades with each round
                if not (np.isfinite(scale) and scale > 0):
                    break
                kept = np.clip(observed, center - CLIP_SIGMAS * scale, center + CLIP_SIGMAS * scale)
                center, scale = float(kept.mean()), float(kept.std())
        elif len(observed) and self.numeric == "robust":
            low, center, high = (float(v) for v in np.quantile(observed, [0.25, 0.5, 0.75]))
            scale = (high - low) if high > low else (float(observed.max() - observed.min()) / 2)
        if not (np.isfinite(center) and np.isfinite(scale)):
            big = int(np.argmax(np.abs(np.nan_to_num(values))))
            raise PolyheadError(f"feature column {name!r}: values too large to scale (e.g. "
                                f"{float(values[big]):g} at row {row_label(column.index, big)!r})")
        fill = float(observed.mean()) if len(observed) and self.numeric == "none" else center
        col = {"name": name, "type": "numeric", "transform": transform, "center": center,
               "scale": scale if scale > 0 else 1.0, "fill": fill,
               "indicator": bool(np.isnan(values).any()) or bool(whole is not None and whole.missing)}
        if self.numeric == "quantile":
            levels = np.linspace(0, 1, min(QUANTILES, max(len(observed), 2)))
            knots = np.quantile(observed, levels) if len(observed) else np.zeros(2)
            col["quantiles"] = [float(v) for v in knots]
            col["center"], col["scale"] = float(np.median(observed)) if len(observed) else 0.0, 1.0
        return col

    def _fit_categorical(self, name: str, column: pd.Series, whole: ColumnStats | None = None) -> dict[str, Any]:
        observed = column.dropna()
        counts = observed.value_counts(sort=False) if whole is None or whole.counts is None else whole.counts
        if isinstance(column.dtype, pd.CategoricalDtype) and (whole is None or whole.counts is None):
            cats = [c for c in column.dtype.categories.tolist() if counts.get(c, 0) > 0]
        else:
            cats = counts.index.tolist()
            try:
                cats = sorted(cats)
            except TypeError:
                cats = sorted(cats, key=str)
        cats = [plain(c) for c in cats]
        for c in cats:
            if not isinstance(c, (str, int, float, bool)):
                raise PolyheadError(f"feature column {name!r}: category {c!r} of type "
                                    f"{type(c).__name__} is not supported; convert it to text")
        if looks_like_identifier(column):
            _warn_identifier(name, column)
        codes = self.embed_above is not None and len(cats) > self.embed_above
        kept = cats
        if not codes and len(cats) > self.max_categories:
            # the most frequent categories keep a slot (stable: ties in category order)
            freq = np.asarray([counts.get(c, counts.get(str(c), 0)) for c in cats])
            order = np.argsort(-freq, kind="stable")[: self.max_categories]
            kept = [cats[i] for i in sorted(order)]
        return {"name": name, "type": "categorical", "categories": kept,
                "other": len(kept) < len(cats),
                "missing_slot": bool(column.isna().any()) or bool(whole is not None and whole.missing),
                "encoding": "code" if codes else "onehot"}

    # -- layout ------------------------------------------------------------------------------
    @staticmethod
    def _width(col: Mapping[str, Any]) -> int:
        if col["type"] == "numeric":
            return 1 + int(col["indicator"])
        if col.get("encoding") == "code":
            return 1
        return len(col["categories"]) + int(col.get("other", False)) + int(col["missing_slot"])

    @property
    def feature_names_out_(self) -> list[str]:
        names: list[str] = []
        for col in self.columns_:
            if col["type"] == "numeric":
                names.append(str(col["name"]))
                if col["indicator"]:
                    names.append(f"{col['name']}__missing")
            elif col.get("encoding") == "code":
                names.append(f"{col['name']}__code")
            else:
                names.extend(f"{col['name']}={c}" for c in col["categories"])
                if col.get("other"):
                    names.append(f"{col['name']}={OTHER_CATEGORY}")
                if col["missing_slot"]:
                    names.append(f"{col['name']}={MISSING_CATEGORY}")
        return names

    @property
    def roles_(self) -> list[str]:
        roles: list[str] = []
        for col in self.columns_:
            if col["type"] == "numeric":
                roles += ["numeric"] + ["indicator"] * int(col["indicator"])
            elif col.get("encoding") == "code":
                roles.append("code")
            else:
                roles += ["onehot"] * self._width(col)
        return roles

    @property
    def code_cardinalities_(self) -> list[int]:
        """Number of distinct codes of each "code" column, in output order."""
        return [len(c["categories"]) + 2 for c in self.columns_
                if c["type"] == "categorical" and c.get("encoding") == "code"]

    @property
    def n_outputs_(self) -> int:
        return sum(self._width(c) for c in self.columns_)

    # -- transform ---------------------------------------------------------------------------
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
                out[:, j] = self._scale(col, values, nan, X.index)
                j += 1
                if col["indicator"]:
                    out[:, j] = nan
                    j += 1
                continue
            column = X[name]
            codes = self._codes(col, column)
            width = len(col["categories"])
            if col.get("other"):
                codes = np.where(codes < 0, width, codes)  # unseen or rare: "other"
                width += 1
            if col["missing_slot"]:
                codes = np.where(column.isna().to_numpy(), width, codes)
                width += 1
            if col.get("encoding") == "code":
                out[:, j] = codes + 1  # 0 stays "unseen" (codes of -1)
                j += 1
            else:
                rows = np.flatnonzero(codes >= 0)
                out[rows, j + codes[rows]] = 1.0
                j += width
        return out

    @staticmethod
    def _scale(col: Mapping[str, Any], values: np.ndarray, nan: np.ndarray, index: pd.Index) -> np.ndarray:
        transform = col.get("transform", "standard")
        if transform == "none":
            return np.where(nan, col["fill"], values)
        if transform == "quantile":
            z = _rank_gauss(np.where(nan, col["center"], values), np.asarray(col["quantiles"]))
            return np.where(nan, 0.0, z)
        with np.errstate(over="ignore", invalid="ignore"):
            z = (values - col["center"]) / col["scale"]
        if transform == "robust":
            z = _smooth_clip(z)
        elif transform == "clipped":
            z = CLIP_SIGMAS * np.tanh(z / CLIP_SIGMAS)
        z = np.where(nan, 0.0, z)
        with np.errstate(invalid="ignore"):
            bad = ~(np.abs(z) <= FLOAT32_MAX)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise PolyheadError(f"feature column {col['name']!r}: value {float(values[row]):g} at "
                                f"row {row_label(index, row)!r} does not survive scaling "
                                f"(scaled: {float(z[row]):g}); it is far outside the range seen "
                                "at fit")
        return z

    def _numeric_block(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        """Every numeric feature as float64. Plain numpy columns are read one by one (pandas'
        block conversion costs half a millisecond even for one row); others convert by name."""
        names = [c["name"] for c in self.columns_ if c["type"] == "numeric"]
        if not names:
            return {}
        out: dict[str, np.ndarray] = {}
        for n in names:
            array = column_array(X, n)
            if isinstance(array, np.ndarray) and array.dtype.kind in "iuf":
                values = array.astype(np.float64, copy=False)
                with np.errstate(invalid="ignore"):
                    if (np.abs(values) > FLOAT32_MAX).any():
                        check_finite(values, f"feature column {n!r}", X.index, PolyheadError)
                out[n] = values
            else:
                out[n] = self._numeric(n, X[n])
        return out

    def _codes(self, col: dict[str, Any], column: pd.Series) -> np.ndarray:
        """Position of each value among the kept categories (-1: unseen, rare or missing)."""
        cats = col["categories"]
        if len(column) <= 1024:  # a dict beats building pandas indexes for a few rows
            lookup = self._lookups.get(col["name"])
            if lookup is None:
                lookup = self._lookups[col["name"]] = {c: i for i, c in enumerate(cats)}
            values = few_values(column)
            try:
                return np.fromiter((lookup.get(v, -1) for v in values), dtype=np.int64,
                                   count=len(values))
            except TypeError:  # an unhashable value: the slow path names it
                pass
        values = column.to_numpy(dtype=object)
        if isinstance(column.dtype, pd.CategoricalDtype):  # one lookup per category, not per row
            raw = column.cat.codes.to_numpy()
            uniques: Any = column.cat.categories.tolist()
        else:
            try:
                raw, uniques = pd.factorize(values)  # missing: -1
            except TypeError:  # an unhashable value: the slow path names it
                return pd.Index(cats, dtype=object).get_indexer(pd.Index(values.tolist(), dtype=object))
            uniques = list(uniques)
        mapping = np.append(pd.Index(cats, dtype=object).get_indexer(pd.Index(uniques, dtype=object)), -1)
        return mapping[np.where(raw >= 0, raw, len(uniques))].astype(np.int64)

    @staticmethod
    def _numeric(name: str, column: pd.Series) -> np.ndarray:
        _check_supported(name, column)
        return as_float(column, f"feature column {name!r}", PolyheadError)

    # -- persistence -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"columns": self.columns_, "numeric": self.numeric,
                "max_categories": self.max_categories, "embed_above": self.embed_above}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureEncoder:
        """Rebuild an encoder from :meth:`to_dict`, checking every entry (a model file may have
        been edited): a bad entry is a PolyheadError naming it."""
        if not isinstance(data, Mapping):
            raise PolyheadError("feature encoder state must be an object")
        numeric = data.get("numeric", "standard" if data.get("standardize", True) else "none")
        max_categories = data.get("max_categories", 64)
        embed_above = data.get("embed_above")
        if numeric not in NUMERIC or not _is_count(max_categories) or not (
                embed_above is None or _is_count(embed_above)):
            raise PolyheadError("feature encoder state has invalid settings")
        enc = cls(numeric=numeric, max_categories=int(max_categories),
                  embed_above=None if embed_above is None else int(embed_above))
        columns = data.get("columns")
        if not isinstance(columns, Sequence) or isinstance(columns, (str, bytes)):
            raise PolyheadError("feature encoder state must hold a list of columns")
        legacy = None if data.get("numeric") else numeric
        enc.columns_ = [_checked_column(col, legacy) for col in columns]
        names = [c["name"] for c in enc.columns_]
        if len(set(names)) != len(names):
            raise PolyheadError("feature encoder state names a column twice")
        enc._lookups = {}
        return enc


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _finite(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and bool(np.isfinite(value)) and abs(value) <= FLOAT32_MAX)


def _checked_column(col: Any, legacy: str | None) -> dict[str, Any]:
    def bad() -> PolyheadError:
        shown = repr(col)
        return PolyheadError("feature encoder state has an invalid column entry: "
                             + (shown if len(shown) < 200 else shown[:197] + "..."))

    if not isinstance(col, Mapping) or not isinstance(col.get("name"), str):
        raise bad()
    col = dict(col)
    if col.get("type") == "numeric":
        if legacy is not None:  # format 1: "mean" was the centre; the encoder's one transform
            col.setdefault("center", col.get("mean"))
            col.setdefault("fill", col.get("mean"))
            col.setdefault("transform", legacy)
        if col.get("transform") not in NUMERIC or not all(
                _finite(col.get(k)) for k in ("center", "scale", "fill")) or not col["scale"] > 0:
            raise bad()
        if col["transform"] == "quantile":
            knots = col.get("quantiles")
            if not (isinstance(knots, list) and 2 <= len(knots) <= 100_000
                    and all(_finite(v) for v in knots) and knots == sorted(knots)):
                raise bad()
        if not isinstance(col.get("indicator"), bool):
            raise bad()
        return col
    if col.get("type") == "categorical":
        cats = col.get("categories")
        if not isinstance(cats, list) or not all(
                isinstance(c, (str, int, float, bool)) for c in cats) or not pd.Index(
                cats, dtype=object).is_unique:
            raise bad()
        col.setdefault("other", False)
        col.setdefault("encoding", "onehot")
        if not isinstance(col.get("missing_slot"), bool) or not isinstance(col["other"], bool) \
                or col["encoding"] not in ("onehot", "code"):
            raise bad()
        return col
    raise bad()


def _warn_identifier(name: str, column: pd.Series) -> None:
    warnings.warn(f"feature column {name!r} looks like an identifier ({column.nunique():,} "
                  f"distinct values in {len(column):,} rows): it cannot generalise to new rows; "
                  "drop it (CLI: --drop " + str(name) + ")", PolyheadWarning, stacklevel=4)
