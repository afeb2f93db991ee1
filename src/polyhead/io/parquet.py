"""A Parquet table read piece by piece: the input of a streaming (out-of-core) fit.

A :class:`ParquetSource` is a file, a directory of files, a glob, or a
``pyarrow.dataset.Dataset``. It is cut into *pieces*, one per row group of each file, in a fixed
order (files sorted by path): a streaming fit shuffles pieces each epoch, holds some out for
validation, and gives each process of a distributed fit its own. Nothing is read until a piece
is asked for; a piece is read in record batches, so memory is bounded by the batch, not the
file. A file that is not Parquet, or is truncated or corrupt, is named in one line.

>>> src = ParquetSource("data/", targets=["price", "demand"])      # doctest: +SKIP
>>> polyhead.MultiTaskNet(tasks={"price": "regression", "demand": "count"}).fit(src)  # doctest: +SKIP
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..exceptions import PolyheadError
from .paths import is_glob

#: Rows per record batch read from a piece.
BATCH_ROWS = 16_384


@dataclass(frozen=True)
class Piece:
    """One row group of one file: the unit of shuffling, validation and sharding."""

    index: int
    path: str
    row_group: int
    num_rows: int


def _short(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class ParquetSource:
    """Rows of one or more Parquet files, read in pieces (row groups) and record batches.

    Parameters
    ----------
    path : str, path, list of paths, or pyarrow.dataset.Dataset
        A file, a directory (every ``*.parquet`` / ``*.pq`` file below it), a glob such as
        ``"data/part-*.parquet"``, a list of files, or a dataset (its files are used).
    targets : list of str or None, default=None
        Target columns. None: the tasks' columns, from the estimator's ``tasks``.
    features : list of str or None, default=None
        Feature columns. None: every column that is not a target.
    batch_rows : int, default=16384
        Rows per record batch read.
    sample_rows : int, default=200000
        Rows of the uniform sample that pass 1 keeps for quantiles and scales
        (:mod:`polyhead.streaming`).
    buffer_rows : int, default=262144
        Rows of the shuffle buffer of pass 2: more mixes better and costs memory.
    cache : bool, default=True
        Write the encoded rows to a local directory during the first epoch and read them
        back in later ones (much faster than parsing and encoding Parquet again; disk, not
        memory). Skipped, with a warning, when the disk has less than twice their size free.
    cache_dir : str or None, default=None
        Where the cache goes (None: the system's temporary directory); removed after the fit.

    Attributes
    ----------
    pieces : list of Piece
        Every row group of every file, in order.
    num_rows : int
    schema : pyarrow.Schema
    """

    def __init__(self, path: Any, *, targets: Sequence[str] | None = None,
                 features: Sequence[str] | None = None, batch_rows: int = BATCH_ROWS,
                 sample_rows: int = 200_000, buffer_rows: int = 262_144, cache: bool = True,
                 cache_dir: str | None = None) -> None:
        self.path = path
        self.targets = None if targets is None else [str(t) for t in targets]
        self.features = None if features is None else [str(f) for f in features]
        for name, value in (("batch_rows", batch_rows), ("sample_rows", sample_rows),
                            ("buffer_rows", buffer_rows)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PolyheadError(f"{name}={value!r} must be a positive integer")
        self.batch_rows, self.sample_rows, self.buffer_rows = batch_rows, sample_rows, buffer_rows
        self.cache, self.cache_dir = bool(cache), None if cache_dir is None else str(cache_dir)
        self.files = _files(path)
        self.pieces, self.schema = self._scan()
        self.num_rows = sum(p.num_rows for p in self.pieces)
        if self.num_rows == 0:
            raise PolyheadError(f"{_describe(path)} has no data rows")

    def __repr__(self) -> str:
        return (f"ParquetSource({_describe(self.path)!r}: {len(self.files)} file(s), "
                f"{len(self.pieces)} row group(s), {self.num_rows} rows)")

    def _scan(self) -> tuple[list[Piece], Any]:
        """Row-group sizes from each file's footer (nothing else is read)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        pieces: list[Piece] = []
        schema = None
        for path in self.files:
            try:
                meta = pq.ParquetFile(path).metadata
                file_schema = pq.read_schema(path)
            except (pa.ArrowInvalid, OSError) as exc:
                raise PolyheadError(f"{path}: not a readable Parquet file: {_short(exc)}") from None
            if schema is None:
                schema = file_schema
            elif file_schema.names != schema.names:
                missing = sorted(set(schema.names) ^ set(file_schema.names))
                raise PolyheadError(f"{path}: its columns differ from {self.files[0]}'s "
                                    f"(e.g. {missing[0]!r}); every file must have the same columns")
            for g in range(meta.num_row_groups):
                rows = meta.row_group(g).num_rows
                if rows:
                    pieces.append(Piece(len(pieces), path, g, rows))
        return pieces, schema

    @property
    def columns(self) -> list[str]:
        return list(self.schema.names)

    def feature_columns(self, targets: Sequence[str]) -> list[str]:
        """The feature columns: the given ones, or every column that is not a target."""
        names = self.columns
        for column in [*targets, *(self.features or [])]:
            if column not in names:
                raise PolyheadError(f"column {column!r} is not in {_describe(self.path)} "
                                    f"(columns: {', '.join(names[:12])}{', ...' if len(names) > 12 else ''})")
        if self.features is not None:
            return list(self.features)
        chosen = [c for c in names if c not in set(targets)]
        if not chosen:
            raise PolyheadError(f"{_describe(self.path)} has no feature columns besides the targets")
        return chosen

    def text_columns(self, columns: Sequence[str]) -> list[str]:
        """Those of ``columns`` that hold text (read as categories by :meth:`batches`)."""
        import pyarrow as pa

        return [c for c in columns if pa.types.is_string(self.schema.field(c).type)
                or pa.types.is_large_string(self.schema.field(c).type)]

    def batches(self, piece: Piece, columns: Sequence[str],
                categorical: Sequence[str] = ()) -> Iterator[pd.DataFrame]:
        """The piece's rows as DataFrames of at most ``batch_rows`` rows, indexed by their row
        number within the piece. Text columns named in ``categorical`` come as pandas
        categoricals (Parquet's dictionary: no Python string per row)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        offset = 0
        try:
            handle = pq.ParquetFile(piece.path, read_dictionary=list(categorical) or None)
            for batch in handle.iter_batches(batch_size=self.batch_rows, row_groups=[piece.row_group],
                                             columns=list(columns), use_threads=False):
                frame = batch.to_pandas(strings_to_categorical=False)
                frame.index = pd.RangeIndex(offset, offset + len(frame))
                offset += len(frame)
                yield frame
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
            raise PolyheadError(f"{piece.path}: cannot read row group {piece.row_group} "
                                f"(near row {offset}): {_short(exc)}") from None
        if offset != piece.num_rows:
            raise PolyheadError(f"{piece.path}: row group {piece.row_group} has {offset} rows, "
                                f"its footer says {piece.num_rows}; the file is damaged")

    def read(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Everything in memory, as one DataFrame (for families that cannot stream)."""
        cols = list(columns) if columns is not None else self.columns
        frames = [f for p in self.pieces for f in self.batches(p, cols)]
        return pd.concat(frames, ignore_index=True)


def _describe(path: Any) -> str:
    if isinstance(path, (str, os.PathLike)):
        return str(path)
    if isinstance(path, (list, tuple)):
        return f"{len(path)} files"
    return type(path).__name__


def _files(path: Any) -> list[str]:
    """The Parquet files a source names, sorted, each checked to exist."""
    if isinstance(path, (list, tuple)):
        files = [str(p) for p in path]
    elif isinstance(path, (str, os.PathLike)):
        text = str(path)
        p = Path(text)
        if p.is_dir():
            files = sorted(str(f) for f in p.rglob("*") if f.is_file()
                           and f.suffix.lower() in (".parquet", ".pq") and not f.name.startswith((".", "_")))
            if not files:
                raise PolyheadError(f"{text}: no .parquet files in this directory")
        elif is_glob(text):
            files = sorted(glob.glob(text, recursive=True))
            if not files:
                raise PolyheadError(f"{text}: no file matches this pattern")
        else:
            files = [text]
    elif hasattr(path, "files"):  # a pyarrow.dataset.FileSystemDataset
        files = list(path.files)
    else:
        raise PolyheadError(f"a Parquet source is a path, a list of paths or a pyarrow dataset, "
                            f"not {type(path).__name__}")
    for f in files:
        if not Path(f).is_file():
            raise PolyheadError(f"{f}: no such file")
    return files
