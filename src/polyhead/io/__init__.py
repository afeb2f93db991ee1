"""Reading and writing tables (CSV, Parquet, JSON Lines) and checking output paths."""

from .tables import (
    TableWriter,
    check_output_path,
    detect_format,
    detect_output_format,
    iter_batches,
    read_table,
    write_table,
)

__all__ = ["TableWriter", "check_output_path", "detect_format", "detect_output_format",
           "iter_batches", "read_table", "write_table"]
