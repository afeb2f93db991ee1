"""Reading and writing tables (CSV, Parquet, JSON Lines) and checking output paths."""

from .parquet import ParquetSource
from .paths import OutputPathError, atomic_file, check_output, finalize_mode
from .tables import (
    TableWriter,
    detect_format,
    detect_output_format,
    iter_batches,
    read_table,
    write_table,
)

__all__ = [
    "OutputPathError",
    "ParquetSource",
    "TableWriter",
    "atomic_file",
    "check_output",
    "detect_format",
    "detect_output_format",
    "finalize_mode",
    "iter_batches",
    "read_table",
    "write_table",
]

