"""Reading and writing tables: CSV (plain, gzip, zstd, bz2), Parquet and JSON Lines, via pyarrow.

The format comes from the file's extension. CSV delimiters are sniffed unless given. Writing is
atomic: output goes to a temporary file beside the target and is renamed into place only when
complete, so an interrupted command never leaves a half-written file. Large inputs can be read
in record batches (:func:`iter_batches`) and written batch by batch (:class:`TableWriter`) with
bounded memory.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..exceptions import PolyheadError
from .paths import finalize_mode

CSV_EXTS = (".csv", ".tsv", ".txt")
COMPRESSION = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2"}
PARQUET_EXTS = (".parquet", ".pq")
JSONL_EXTS = (".jsonl", ".ndjson")


def detect_format(path: str | os.PathLike[str]) -> tuple[str, str | None]:
    """``(format, compression)`` from a file name; format is csv, parquet or jsonl."""
    name = Path(path).name.lower()
    compression = None
    for ext, codec in COMPRESSION.items():
        if name.endswith(ext):
            compression, name = codec, name[: -len(ext)]
            break
    if name.endswith(CSV_EXTS):
        return "csv", compression
    if name.endswith(PARQUET_EXTS) and compression is None:
        return "parquet", None
    if name.endswith(JSONL_EXTS):
        return "jsonl", compression
    known = ", ".join([*CSV_EXTS, *PARQUET_EXTS, *JSONL_EXTS])
    raise PolyheadError(f"{path}: unknown file type; use one of {known} "
                        "(CSV and JSON Lines may end in .gz, .zst or .bz2)")


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise PolyheadError(f"{path}: no such file")
    if path.is_dir():
        raise PolyheadError(f"{path} is a directory, not a data file")
    if path.stat().st_size == 0:
        raise PolyheadError(f"{path} is empty")
    if not os.access(path, os.R_OK):
        raise PolyheadError(f"{path}: permission denied")


def _open_input(path: Path, compression: str | None) -> Any:
    import pyarrow as pa

    return pa.input_stream(str(path), compression=compression)


def sniff_delimiter(path: Path, compression: str | None) -> str:
    """The CSV delimiter, guessed from the first 64 KiB (``,`` when in doubt)."""
    if path.name.lower().split(".")[-1] == "tsv" or ".tsv." in path.name.lower():
        return "\t"
    with _open_input(path, compression) as stream:
        head = stream.read(65536).decode("utf-8", errors="replace")
    lines = head.splitlines()[:20]
    if len(lines) > 1 and not head.endswith("\n"):
        lines = lines[:-1]  # the last line may be cut
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _csv_options(path: Path, compression: str | None, sep: str | None,
                 column_types: dict[str, Any] | None, block_size: int | None = None,
                 encoding: str | None = None) -> tuple[Any, Any, Any]:
    from pyarrow import csv as pacsv

    delimiter = sep if sep else sniff_delimiter(path, compression)
    read = pacsv.ReadOptions(encoding=_encoding(encoding))
    if block_size:
        read.block_size = block_size
    parse = pacsv.ParseOptions(delimiter=delimiter)
    convert = pacsv.ConvertOptions(column_types=column_types or {}, strings_can_be_null=True)
    return read, parse, convert


def _encoding(encoding: str | None) -> str:
    import codecs

    if encoding is None:
        return "utf8"
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise PolyheadError(f"unknown --encoding {encoding!r}; e.g. utf-8, latin-1, cp1252") from None


def _check_text(table: Any, path: Path, first_row: int = 0) -> None:
    """A CSV column that pyarrow could only read as bytes holds text that is not UTF-8: name the
    column, the line and the byte, and say how to read it."""
    import pyarrow as pa

    for name, column in zip(table.column_names, table.columns, strict=True):
        if not (pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
            continue
        for i, value in enumerate(column.to_pylist()):
            if value is None:
                continue
            try:
                value.decode("utf-8")
            except UnicodeDecodeError as exc:
                row = first_row + i
                raise PolyheadError(
                    f"{path}: column {name!r}, line {row + 2} (data row {row}) is not UTF-8: byte "
                    f"0x{value[exc.start]:02x} in {value!r}; give the file's encoding, e.g. "
                    "--encoding latin-1 (or cp1252)") from None


def read_table(path: str | os.PathLike[str], *, sep: str | None = None,
               column_types: dict[str, Any] | None = None,
               encoding: str | None = None) -> pd.DataFrame:
    """Read a whole CSV, Parquet or JSON Lines file into a DataFrame."""
    import pyarrow as pa

    p = Path(path)
    fmt, compression = detect_format(p)
    _check_readable(p)
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(str(p))
        elif fmt == "jsonl":
            from pyarrow import json as pajson

            with _open_input(p, compression) as stream:
                table = pajson.read_json(stream)
        else:
            from pyarrow import csv as pacsv

            read, parse, convert = _csv_options(p, compression, sep, column_types,
                                                encoding=encoding)
            with _open_input(p, compression) as stream:
                table = pacsv.read_csv(stream, read_options=read, parse_options=parse,
                                       convert_options=convert)
            _check_text(table, p)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
        raise PolyheadError(f"{p}: cannot read as {fmt}: {_short(exc)}") from None
    if table.num_rows == 0:
        raise PolyheadError(f"{p} has no data rows")
    return _to_pandas(table)


def iter_batches(path: str | os.PathLike[str], *, batch_size: int = 100_000,
                 sep: str | None = None, columns: Sequence[str] | None = None,
                 column_types: dict[str, Any] | None = None,
                 encoding: str | None = None) -> Iterator[pd.DataFrame]:
    """Yield the file as DataFrames of at most ``batch_size`` rows, with bounded memory.

    The index of each batch continues from the previous one, so row numbers in error messages
    are positions in the file.
    """
    import pyarrow as pa

    p = Path(path)
    fmt, compression = detect_format(p)
    _check_readable(p)
    offset = 0
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            batches: Iterator[Any] = pq.ParquetFile(str(p)).iter_batches(
                batch_size=batch_size, columns=list(columns) if columns else None)
            stream = None
        elif fmt == "csv":
            from pyarrow import csv as pacsv

            read, parse, convert = _csv_options(p, compression, sep, column_types,
                                                block_size=1 << 22, encoding=encoding)
            if columns:
                convert.include_columns = list(columns)
            stream = _open_input(p, compression)
            batches = iter(pacsv.open_csv(stream, read_options=read, parse_options=parse,
                                          convert_options=convert))
        else:
            stream = None
            reader: Any = pd.read_json(str(p), lines=True, chunksize=batch_size,
                                       compression=compression)  # type: ignore[call-overload]
            for frame in reader:
                frame.index = pd.RangeIndex(offset, offset + len(frame))
                offset += len(frame)
                yield frame[list(columns)] if columns else frame
            return
        try:
            for batch in batches:
                for start in range(0, batch.num_rows, batch_size):
                    piece = pa.Table.from_batches([batch.slice(start, batch_size)])
                    if fmt == "csv":
                        _check_text(piece, p, first_row=offset)
                    frame = _to_pandas(piece)
                    frame.index = pd.RangeIndex(offset, offset + len(frame))
                    offset += len(frame)
                    yield frame
        finally:
            if stream is not None:
                stream.close()
    except PolyheadError:
        raise
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError, ValueError) as exc:
        raise PolyheadError(f"{p}: cannot read as {fmt} (near row {offset}): {_short(exc)}") from None
    if offset == 0:
        raise PolyheadError(f"{p} has no data rows")


def _to_pandas(table: Any) -> pd.DataFrame:
    # Strings stay plain Python objects so categories compare equal to those seen at fit.
    return table.to_pandas(strings_to_categorical=False, types_mapper=None)


def _short(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


OUTPUT_SUFFIXES = (".csv", *PARQUET_EXTS)


def detect_output_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(PARQUET_EXTS):
        return "parquet"
    raise PolyheadError(f"{path}: output must end in .csv or .parquet")


class TableWriter:
    """Write DataFrames batch by batch to CSV or Parquet, atomically.

    Use as a context manager; the file appears at ``path`` only if the block completes.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.format = detect_output_format(self.path)
        self._writer: Any = None
        self._schema: Any = None
        self._tmp: Path | None = None
        self.rows = 0

    def __enter__(self) -> TableWriter:
        parent = self.path.parent if str(self.path.parent) else Path(".")
        fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=parent)
        os.close(fd)
        self._tmp = Path(name)
        return self

    def write(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa

        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._writer is None:
            self._schema = table.schema
            if self.format == "parquet":
                import pyarrow.parquet as pq

                self._writer = pq.ParquetWriter(str(self._tmp), self._schema)
            else:
                from pyarrow import csv as pacsv

                self._writer = pacsv.CSVWriter(str(self._tmp), self._schema)
        elif table.schema != self._schema:
            table = table.cast(self._schema)
        self._writer.write_table(table)
        self.rows += len(frame)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        assert self._tmp is not None
        try:
            if self._writer is not None:
                self._writer.close()
            if exc_type is None:
                finalize_mode(self._tmp)
                os.replace(self._tmp, self.path)
        finally:
            if self._tmp.exists():
                self._tmp.unlink()


def write_table(frame: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write one DataFrame to CSV or Parquet (by extension), atomically."""
    with TableWriter(path) as writer:
        writer.write(frame)
