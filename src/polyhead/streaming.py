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

import contextlib
import math
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from . import distributed
from .exceptions import PolyheadError
from .features import ColumnStats, is_categorical

#: Distinct categories tracked per categorical column in pass 1.
MAX_TRACKED = 100_000
#: Distinct labels tracked per target column (more: a numeric target, no class to witness).
MAX_LABELS = 1_000
#: Rows in pass 1's uniform sample.
SAMPLE_ROWS = 200_000
#: With fewer pieces than this, validation rows are drawn within pieces.
MIN_PIECES_TO_HOLD_OUT = 10


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
        self._parts: list[tuple[pd.DataFrame, np.ndarray, np.ndarray]] = []
        self._held = 0
        self._limit = np.inf

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
                counts = column[~missing].value_counts(sort=False)
                if isinstance(column.dtype, pd.CategoricalDtype):  # plain labels, no empty ones
                    counts = counts[counts > 0]
                    counts.index = pd.Index(counts.index.tolist(), dtype=object)
                self._add_counts(name, counts)
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
        """Keep the rows whose keys may be among the ``sample_rows`` smallest; compact when
        twice that many are held (amortised: each row is copied a bounded number of times)."""
        take = keys <= self._limit
        if take.any():
            self._parts.append((frame[take] if not take.all() else frame, keys[take], positions[take]))
            self._held += int(take.sum())
        if self._held > 2 * self.sample_rows:
            self._compact()

    def _compact(self) -> None:
        if len(self._parts) == 1 and self._held <= self.sample_rows:
            return  # already the sample
        keys = np.concatenate([k for _, k, _ in self._parts]) if self._parts else np.empty(0)
        if len(keys) > self.sample_rows:
            self._limit = float(np.partition(keys, self.sample_rows - 1)[self.sample_rows - 1])
        parts = [(f[k <= self._limit], k[k <= self._limit], p[k <= self._limit]) for f, k, p in self._parts]
        frames = [f for f, _, _ in parts]
        frame = pd.concat(frames) if len(frames) > 1 else (frames[0] if frames else pd.DataFrame())
        self._parts = [(frame, np.concatenate([k for _, k, _ in parts]) if parts else np.empty(0),
                        np.concatenate([p for _, _, p in parts]) if parts else np.empty(0, np.int64))]
        self._held = len(frame)

    @property
    def sample(self) -> pd.DataFrame:
        """The uniform sample (the rows with the ``sample_rows`` smallest keys)."""
        self._compact()
        return self._parts[0][0]

    @property
    def _positions(self) -> np.ndarray:
        self._compact()
        return self._parts[0][2]

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
        for frame, keys, positions in other._parts:
            self._sample_rows(frame, keys, positions)
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
        sample, positions = self.sample, self._positions
        order = np.argsort(positions, kind="stable")
        frame = sample.iloc[order]
        have = set(positions.tolist())
        extra: dict[int, pd.DataFrame] = {}
        for name, seen in self.witnesses.items():
            if not seen:
                continue
            present = {_plain_key(v) for v in frame[name].dropna().unique().tolist()}
            for key, (pos, row) in seen.items():
                if key not in present and pos not in have:
                    extra[pos] = row
        if extra:
            positions = np.concatenate([positions[order], list(extra)])
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
    text = [c for c in source.text_columns(features) if c not in targets]
    for piece in pieces:
        rng = piece_rng(seed, piece.index)
        for frame in source.batches(piece, columns, text):
            positions = (np.int64(piece.index) << 32) + frame.index.to_numpy(dtype=np.int64)
            summary.update(frame, rng.random(len(frame)), positions)
    return summary


class ShuffleBuffer:
    """Rows in, the same rows out in random order, holding at most ``capacity`` rows.

    The buffer fills first; after that each incoming row takes the slot of a row drawn at
    random from the buffer, which leaves (tf.data's shuffle buffer). :meth:`drain` gives back
    what is left, shuffled, at the end of an epoch. Rows are tuples of aligned arrays
    (features, then targets and weights), stored once: memory is the capacity plus one chunk.
    """

    DRAIN_ROWS = 65_536

    def __init__(self, capacity: int, rng: np.random.Generator) -> None:
        self.capacity = int(capacity)
        self.rng = rng
        self.store: list[np.ndarray] | None = None
        self.rows = 0

    def add(self, arrays: Sequence[np.ndarray]) -> Iterator[list[np.ndarray]]:
        if self.store is None:
            self.store = [np.empty((self.capacity, *a.shape[1:]), dtype=a.dtype) for a in arrays]
        n = len(arrays[0])
        take = min(self.capacity - self.rows, n)
        if take:
            for s, a in zip(self.store, arrays, strict=True):
                s[self.rows:self.rows + take] = a[:take]
            self.rows += take
        for start in range(take, n, self.capacity):
            stop = min(start + self.capacity, n)
            slots = self.rng.choice(self.capacity, size=stop - start, replace=False)
            out = [s[slots] for s in self.store]
            for s, a in zip(self.store, arrays, strict=True):
                s[slots] = a[start:stop]
            yield out

    def drain(self) -> Iterator[list[np.ndarray]]:
        if not self.rows or self.store is None:
            return
        perm = self.rng.permutation(self.rows)
        self.rows = 0
        for start in range(0, len(perm), self.DRAIN_ROWS):  # in slices: no second full copy
            yield [s[perm[start:start + self.DRAIN_ROWS]] for s in self.store]


@contextlib.contextmanager
def prefetch(items: Iterable[Any], *, enabled: bool = True, depth: int = 2) -> Iterator[Iterator[Any]]:
    """``items`` produced by a background thread, at most ``depth`` ahead (reading Parquet and
    encoding release the GIL for much of their work, so they overlap the training steps).
    Errors in the producer are raised in the consumer; leaving the block early stops it."""
    if not enabled:
        yield iter(items)
        return
    box: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        box.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put(("end", None))
        except BaseException as exc:  # handed to the consumer, which raises it
            box.put(("error", exc))

    thread = threading.Thread(target=produce, name="polyhead-prefetch", daemon=True)
    thread.start()

    def consume() -> Iterator[Any]:
        while True:
            kind, value = box.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value

    try:
        yield consume()
    finally:
        stop.set()
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                box.get(timeout=0.05)
        thread.join()


class EncodedCache:
    """Each piece's encoded rows, written to a local directory the first time the piece is
    read, so that later epochs read float32 arrays back instead of parsing and encoding
    Parquet again (about two thirds of a streamed epoch's extra cost).

    Files go through the page cache, not this process's memory. A piece whose reading was cut
    short (a distributed epoch that stopped at its step count) is not marked complete and is
    encoded again next time. :meth:`close` removes the directory.
    """

    def __init__(self, directory: str | None = None) -> None:
        import tempfile

        self.path = tempfile.mkdtemp(prefix="polyhead-cache-", dir=directory)
        self.done: dict[int, list[tuple[Any, tuple[int, ...]]]] = {}
        self.rows: dict[int, int] = {}

    def chunks(self, key: int, produce: Iterable[list[np.ndarray]], rows_per_chunk: int) -> Iterator[list[np.ndarray]]:
        if key in self.done:
            yield from self._read(key, rows_per_chunk)
            return
        import os

        files: list[Any] = []
        layout: list[tuple[Any, tuple[int, ...]]] = []
        rows = 0
        try:
            for arrays in produce:
                if not files:
                    files = [open(os.path.join(self.path, f"{key}-{i}.bin"), "wb")  # noqa: SIM115
                             for i in range(len(arrays))]
                    layout = [(a.dtype, a.shape[1:]) for a in arrays]
                for fh, a in zip(files, arrays, strict=True):
                    fh.write(np.ascontiguousarray(a).tobytes())
                rows += len(arrays[0])
                yield arrays
            self.done[key], self.rows[key] = layout, rows
        finally:
            for fh in files:
                fh.close()

    def _read(self, key: int, rows_per_chunk: int) -> Iterator[list[np.ndarray]]:
        import os

        layout, total = self.done[key], self.rows[key]
        handles = [open(os.path.join(self.path, f"{key}-{i}.bin"), "rb")  # noqa: SIM115
                   for i in range(len(layout))]
        try:
            for start in range(0, total, rows_per_chunk):
                n = min(rows_per_chunk, total - start)
                yield [np.fromfile(fh, dtype=dtype, count=n * int(np.prod(shape, dtype=np.int64))).reshape(n, *shape)
                       for fh, (dtype, shape) in zip(handles, layout, strict=True)]
        finally:
            for fh in handles:
                fh.close()

    def close(self) -> None:
        import shutil

        shutil.rmtree(self.path, ignore_errors=True)


def _valid_rows(seed: int, piece: Any, fraction: float) -> np.ndarray:
    """Row mask of a piece's validation rows (drawn within pieces)."""
    return np.random.default_rng([seed, piece.index, 1 << 20]).random(piece.num_rows) < fraction


def target_columns(estimator: Any, source: Any) -> list[str]:
    if estimator.tasks is None and source.targets is None:
        raise PolyheadError("fit(source) needs its targets: give tasks= to the estimator or "
                            "ParquetSource(..., targets=[...])")
    names = source.targets if source.targets is not None else source.columns
    from .tasks import _as_task_list

    tasks = _as_task_list(estimator.tasks, list(names))
    return list(dict.fromkeys(c for t in tasks for c in t.source_columns))


@dataclass
class SourcePlan:
    """What every streaming fit decides before training: the columns, the seed, which pieces
    train and which validate (and whose they are on this rank), and pass 1's statistics."""

    source: Any
    targets: list[str]
    features: list[str]
    seed: int
    fraction: float
    train_pieces: list[Any]
    valid_pieces: list[Any]
    by_piece: bool
    rank: int
    world: int
    summary: Any = None

    @property
    def columns(self) -> list[str]:
        return list(dict.fromkeys([*self.features, *self.targets]))

    @property
    def text(self) -> list[str]:
        return [c for c in self.source.text_columns(self.features) if c not in self.targets]

    @property
    def my_train(self) -> list[Any]:
        return self.train_pieces[self.rank::self.world]

    @property
    def my_valid(self) -> list[Any]:
        return self.valid_pieces[self.rank::self.world]

    def valid_mask(self, piece: Any) -> np.ndarray | None:
        """Rows of a training piece held out for validation (None: the piece trains whole)."""
        if self.by_piece or self.fraction == 0:
            return None
        return _valid_rows(self.seed, piece, self.fraction)

    def frames(self, piece: Any) -> Any:
        return self.source.batches(piece, self.columns, self.text)


def plan_source(estimator: Any, source: Any, fraction: float) -> SourcePlan:
    """Columns, seed and pieces for ``estimator`` on ``source``, then pass 1 (statistics,
    merged over ranks): ``plan.summary`` and its fitting frame are the same on every rank."""
    rank, world = distributed.rank(), distributed.world_size()
    targets = target_columns(estimator, source)
    features = source.feature_columns(targets)
    seed = estimator.random_state
    if seed is None:  # every rank must draw the same
        seed = distributed.all_gather(int(np.random.default_rng().integers(2**31)))[0]
    pieces = source.pieces
    by_piece = len(pieces) >= MIN_PIECES_TO_HOLD_OUT and fraction > 0
    if by_piece:
        n_valid = max(1, math.floor(len(pieces) * fraction))
        chosen = set(np.random.default_rng(seed).permutation(len(pieces))[:n_valid].tolist())
        train_pieces = [p for p in pieces if p.index not in chosen]
        valid_pieces = [p for p in pieces if p.index in chosen]
    else:
        train_pieces, valid_pieces = list(pieces), []
    if len(train_pieces) < world:
        raise PolyheadError(f"{world} processes need at least {world} training row groups; the "
                            f"source has {len(train_pieces)} (write it with smaller row groups, "
                            "e.g. pyarrow's row_group_size)")
    plan = SourcePlan(source, targets, features, int(seed), fraction, train_pieces, valid_pieces,
                      by_piece, rank, world)
    summary = summarise(source, pieces[rank::world], features, targets,
                        sample_rows=source.sample_rows, seed=plan.seed)
    parts = distributed.all_gather(summary)
    plan.summary = parts[0]
    for other in parts[1:]:
        plan.summary.merge(other)
    return plan
