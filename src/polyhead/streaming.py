"""Streaming a table that does not fit in memory: the statistics pass and the shuffle buffer.

A streaming fit (``MultiTaskNet().fit(ParquetSource(...))``) reads its source twice, and then
once per epoch, never holding more than a bounded number of rows:

**Pass 1, statistics** (:func:`summarise`). Every row is read once. Kept exactly, from every
row: each numeric column's count, mean and variance (merged batch by batch, Chan et al.), each
categorical column's category counts (capped at ``MAX_TRACKED`` distinct values per column:
beyond that, the rarest are dropped, as an identifier's would be), which columns have missing
values, and per target column its distinct labels with the first row holding each (a class seen
once in forty million rows is still a class). Kept as a sample: ``sample_rows`` rows drawn
uniformly at random (each row gets a random key; the smallest keys stay), for what needs
values rather than moments: quantiles (numeric embeddings, the "quantile" and "robust"
transforms), the "clipped" transform's winsorised scale, target scales and class priors. When
the source has fewer rows than that, the sample is the whole table and the fit equals the
in-memory one's statistics. Summaries merge (:meth:`TableSummary.merge`), so each process of a
distributed fit summarises its own pieces and all agree on the result; the sample does not
depend on how many processes there are.

**Pass 2, training** (:class:`ShuffleBuffer`). Each epoch reads the training pieces in a new
random order; their encoded rows go through a buffer of ``buffer_rows`` rows, mixed at random,
and leave it in mini-batches. Rows from different row groups mix within the buffer; a bigger
buffer is closer to a full shuffle and costs memory in proportion.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .features import ColumnStats, is_categorical

#: Distinct categories tracked per categorical column in pass 1.
MAX_TRACKED = 100_000
#: Distinct labels tracked per target column (more: a numeric target, no class to witness).
MAX_LABELS = 1_000
#: Rows in pass 1's uniform sample.
SAMPLE_ROWS = 200_000


def piece_rng(seed: int, piece: int, epoch: int = 0) -> np.random.Generator:
    """The random stream of one piece (and epoch): the same whoever reads it."""
    return np.random.default_rng([seed, piece, epoch])


class TableSummary:
    """Pass 1's statistics of a table (see the module docstring)."""

    def __init__(self, features: Sequence[str], targets: Sequence[str], *,
                 sample_rows: int = SAMPLE_ROWS, seed: int = 0) -> None:
        self.features = list(features)
        self.targets = list(targets)
        self.sample_rows = int(sample_rows)
        self.seed = int(seed)
        self.rows = 0
        self.categorical: dict[str, bool] = {}
        self.moments: dict[str, np.ndarray] = {}  # count, mean, M2
        self.counts: dict[str, pd.Series] = {}
        self.missing: dict[str, bool] = {}
        self.labels: dict[str, int] = {}  # present labels per target column
        self.witnesses: dict[str, dict[Any, tuple[int, pd.DataFrame]] | None] = {t: {} for t in targets}
        self.sample = pd.DataFrame()
        self._keys = np.empty(0)
        self._positions = np.empty(0, dtype=np.int64)

    # -- pass 1 ------------------------------------------------------------------------------
    def update(self, frame: pd.DataFrame, keys: np.ndarray, positions: np.ndarray) -> None:
        """Add a batch: ``keys`` are its rows' random keys, ``positions`` their global order."""
        self.rows += len(frame)
        for name in self.features:
            column = frame[name]
            if name not in self.categorical:
                self.categorical[name] = is_categorical(column)
            missing = column.isna()
            self.missing[name] = self.missing.get(name, False) or bool(missing.any())
            if self.categorical[name]:
                self._add_counts(name, column[~missing].value_counts(sort=False))
            else:
                values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                values = values[np.isfinite(values)]
                if len(values):
                    batch = np.array([len(values), values.mean(), ((values - values.mean()) ** 2).sum()])
                    self.moments[name] = _chan(self.moments.get(name), batch)
        for name in self.targets:
            present = frame[name].notna()
            self.labels[name] = self.labels.get(name, 0) + int(present.sum())
            self._witness(name, frame, present, positions)
        self._sample_rows(frame, keys, positions)

    def _add_counts(self, name: str, counts: pd.Series) -> None:
        previous = self.counts.get(name)
        merged = counts if previous is None else previous.add(counts, fill_value=0)
        if len(merged) > MAX_TRACKED:
            merged = merged.sort_values(ascending=False, kind="stable").iloc[: MAX_TRACKED // 2]
        self.counts[name] = merged

    def _witness(self, name: str, frame: pd.DataFrame, present: pd.Series, positions: np.ndarray) -> None:
        seen = self.witnesses.get(name)
        if seen is None:
            return
        labelled = frame[name][present]
        first = ~labelled.duplicated()
        values = [_plain_key(v) for v in labelled[first].tolist()]
        new = [i for i, v in enumerate(values) if v not in seen]
        if len(seen) + len(new) > MAX_LABELS:  # a numeric target: no classes to witness
            self.witnesses[name] = None
            return
        rows = np.flatnonzero(present.to_numpy())[first.to_numpy()]
        for i in new:  # batches arrive in table order: the first row seen is the first row
            seen[values[i]] = (int(positions[rows[i]]), frame.iloc[[rows[i]]])

    def _sample_rows(self, frame: pd.DataFrame, keys: np.ndarray, positions: np.ndarray) -> None:
        if len(self.sample) + len(frame) <= self.sample_rows:
            take = np.arange(len(frame))
        else:
            limit = np.partition(np.concatenate([self._keys, keys]), self.sample_rows - 1)[self.sample_rows - 1]
            take = np.flatnonzero(keys <= limit)
            keep = self._keys <= limit
            self.sample, self._keys, self._positions = self.sample[keep], self._keys[keep], self._positions[keep]
        if len(take):
            part = frame.iloc[take]
            self.sample = part if self.sample.empty else pd.concat([self.sample, part])
            self._keys = np.concatenate([self._keys, keys[take]])
            self._positions = np.concatenate([self._positions, positions[take]])

    def merge(self, other: TableSummary) -> TableSummary:
        """This summary and another's, as if one pass had read both."""
        self.rows += other.rows
        for name, flag in other.categorical.items():
            self.categorical.setdefault(name, flag)
        for name, m in other.moments.items():
            self.moments[name] = _chan(self.moments.get(name), m)
        for name, counts in other.counts.items():
            self._add_counts(name, counts)
        for name, flag in other.missing.items():
            self.missing[name] = self.missing.get(name, False) or flag
        for name, count in other.labels.items():
            self.labels[name] = self.labels.get(name, 0) + count
        for name, theirs in other.witnesses.items():
            ours = self.witnesses.get(name)
            if ours is None or theirs is None:
                self.witnesses[name] = None
                continue
            for key, (pos, row) in theirs.items():
                if key not in ours or pos < ours[key][0]:
                    ours[key] = (pos, row)
            if len(ours) > MAX_LABELS:
                self.witnesses[name] = None
        if len(other.sample):
            self._sample_rows(other.sample, other._keys, other._positions)
        return self

    # -- results -----------------------------------------------------------------------------
    def column_stats(self) -> dict[str, ColumnStats]:
        """Per feature column, what every row said (for :meth:`FeatureEncoder.fit`)."""
        out = {}
        for name in self.features:
            m = self.moments.get(name)
            count, mean, std = (0, 0.0, 1.0) if m is None else (
                int(m[0]), float(m[1]), float(np.sqrt(m[2] / m[0])) if m[0] else 1.0)
            counts = self.counts.get(name, pd.Series(dtype="int64")) if self.categorical.get(name) else None
            out[name] = ColumnStats(count=count, mean=mean, std=std, counts=counts,
                                    missing=self.missing.get(name, False))
        return out

    def fitting_frame(self) -> pd.DataFrame:
        """The sample, plus the first row holding each label the sample lacks, in table order:
        the frame tasks and the encoder are fitted on."""
        order = np.argsort(self._positions, kind="stable")
        frame = self.sample.iloc[order]
        have = set(self._positions.tolist())
        extra: dict[int, pd.DataFrame] = {}
        for name, seen in self.witnesses.items():
            if not seen:
                continue
            present = {_plain_key(v) for v in frame[name].dropna().unique().tolist()}
            for key, (pos, row) in seen.items():
                if key not in present and pos not in have:
                    extra[pos] = row
        if extra:
            positions = np.concatenate([self._positions[order], list(extra)])
            frame = pd.concat([frame, *extra.values()]).iloc[np.argsort(positions, kind="stable")]
        return frame.reset_index(drop=True)


def _plain_key(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _chan(a: np.ndarray | None, b: np.ndarray) -> np.ndarray:
    """Merge (count, mean, M2) of two parts (Chan, Golub and LeVeque)."""
    if a is None or a[0] == 0:
        return b.copy()
    n = a[0] + b[0]
    delta = b[1] - a[1]
    return np.array([n, a[1] + delta * b[0] / n, a[2] + b[2] + delta**2 * a[0] * b[0] / n])


def summarise(source: Any, pieces: Sequence[Any], features: Sequence[str], targets: Sequence[str],
              *, sample_rows: int = SAMPLE_ROWS, seed: int = 0) -> TableSummary:
    """Pass 1 over ``pieces`` of ``source`` (see the module docstring)."""
    summary = TableSummary(features, targets, sample_rows=sample_rows, seed=seed)
    columns = list(dict.fromkeys([*features, *targets]))
    for piece in pieces:
        rng = piece_rng(seed, piece.index)
        for frame in source.batches(piece, columns):
            positions = (np.int64(piece.index) << 32) + frame.index.to_numpy(dtype=np.int64)
            summary.update(frame, rng.random(len(frame)), positions)
    return summary


class ShuffleBuffer:
    """Rows in, the same rows out in random order, holding at most ``capacity`` (+ one chunk).

    Each :meth:`add` mixes a chunk into the buffer and, once the buffer is over capacity, gives
    back as many random rows as came in; :meth:`drain` gives back the rest at the end of an
    epoch. Rows are tuples of aligned arrays (features, then targets and weights).
    """

    def __init__(self, capacity: int, rng: np.random.Generator) -> None:
        self.capacity = int(capacity)
        self.rng = rng
        self.parts: list[list[np.ndarray]] = []
        self.rows = 0

    def add(self, arrays: Sequence[np.ndarray]) -> Iterator[list[np.ndarray]]:
        self.parts.append(list(arrays))
        self.rows += len(arrays[0])
        if self.rows <= self.capacity:
            return
        held = self._joined()
        perm = self.rng.permutation(len(held[0]))
        out = len(held[0]) - self.capacity
        yield [a[perm[:out]] for a in held]
        self.parts, self.rows = [[a[perm[out:]] for a in held]], self.capacity

    def drain(self) -> Iterator[list[np.ndarray]]:
        if not self.rows:
            return
        held = self._joined()
        perm = self.rng.permutation(len(held[0]))
        self.parts, self.rows = [], 0
        yield [a[perm] for a in held]

    def _joined(self) -> list[np.ndarray]:
        if len(self.parts) == 1:
            return self.parts[0]
        return [np.concatenate(cols) for cols in zip(*self.parts, strict=True)]
