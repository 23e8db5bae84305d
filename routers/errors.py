"""User-facing errors. Each one says what is wrong and where, so the CLI can print it without a traceback."""

from __future__ import annotations


class BatonError(Exception):
    """Base class for errors caused by input the user can fix (config, data, checkpoint, request)."""


class ConfigError(BatonError):
    """A malformed config file or value; the message names the file and the field."""


class DataError(BatonError):
    """A malformed data file; names the file, and where known the row and the column."""

    def __init__(self, message: str, *, file: str | None = None, row: int | None = None,
                 column: str | None = None):
        self.file, self.row, self.column = file, row, column
        where = []
        if file is not None:
            where.append(f"file {file}")
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class CheckpointError(BatonError):
    """A checkpoint that is missing files, has another format version, or does not fit the pool."""
