"""Helpers every adapter shares: load options, strict CSV reading, cell parsing with errors that say where.

Row numbers in errors count records from 1 with the header excluded (CSV), lines from 1 (JSONL), or
items from 1 (JSON lists), so "row 3" is always the third record of the file.
"""

from __future__ import annotations

import csv
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from routers.errors import DataError

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # RouterBench responses exceed the 128 KiB default


@dataclass(frozen=True)
class LoadOptions:
    """What `load_dataset` passes to every adapter."""

    trust_pickle: bool = False
    seed: int = 0
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    models: tuple[str, ...] | None = None  # the model columns to read; None: the format's own rule


def pick_models(available: list[str], wanted, *, file: str) -> list[str]:
    """`wanted` (the user's --models) checked against the models a file has; an unknown one is named."""
    for m in wanted:
        if m not in available:
            raise DataError(f"unknown model {m!r}; the file has {list(available)[:20]}", file=file, column=m)
    return list(wanted)


def warn_not_models(columns: list[str], why: str, *, file: str) -> None:
    """Columns a wide table holds beside its models are named once, never read as models."""
    if columns:
        import warnings

        warnings.warn(f"file {file}: columns {columns} are not read as models ({why}); their names are kept "
                      "in dataset.meta['other_columns']; pass models= (CLI --models) to choose the models",
                      stacklevel=3)


def read_csv_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV into an all-string DataFrame, refusing short/long rows and unterminated quotes.

    A well-formed file is read by pyarrow's C++ reader into Arrow-backed text columns (a million rows
    in seconds; `parse_numbers` then converts them in Arrow too). Any file it refuses is read again by
    the csv module in strict mode, which names the record and the line (pandas would silently pad a
    short, truncated last row with NaN).
    """
    path = str(path)
    fast = _read_csv_arrow(path)
    if fast is not None:
        return fast
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: drop a BOM
            reader = csv.reader(f, strict=True)
            rows: list[list[str]] = []
            try:
                header = next(reader, None)
                if header is None:
                    raise DataError("empty file (no header row)", file=path)
                for rec in reader:
                    if rec == []:  # a blank line
                        continue
                    if len(rec) != len(header):
                        col = header[len(rec)] if len(rec) < len(header) else None
                        raise DataError(
                            f"record has {len(rec)} fields but the header has {len(header)} "
                            f"(ends at line {reader.line_num}; truncated file or stray delimiter?)",
                            file=path, row=len(rows) + 1, column=col)
                    rows.append(rec)
            except csv.Error as e:
                raise DataError(f"malformed CSV near line {reader.line_num}: {e} "
                                "(unterminated quote or truncated file?)",
                                file=path, row=len(rows) + 1) from None
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text: {e}", file=path) from None
    if not rows:
        raise DataError("no data rows after the header", file=path)
    dup = {c for c in header if header.count(c) > 1}
    if dup:
        raise DataError(f"duplicate column names {sorted(dup)}", file=path, row=0)
    return pd.DataFrame(rows, columns=header, dtype=object)


def _read_csv_arrow(path: str) -> pd.DataFrame | None:
    """All columns as Arrow text (empty cells stay ""), or None for a file the strict reader must diagnose."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f, strict=True), None)
    except (UnicodeDecodeError, csv.Error):
        return None
    if not header or len(set(header)) != len(header):
        return None
    try:
        table = pcsv.read_csv(path, parse_options=pcsv.ParseOptions(newlines_in_values=True),
                              convert_options=pcsv.ConvertOptions(
                                  column_types={c: pa.string() for c in header}, strings_can_be_null=False,
                                  quoted_strings_can_be_null=False))
    except (pa.ArrowInvalid, OSError):
        return None
    if table.num_rows == 0 or table.column_names != header:
        return None
    return table.to_pandas(types_mapper=pd.ArrowDtype)


def arrow_text(values):
    """The Arrow string array behind a pandas Series read by `_read_csv_arrow`, else None."""
    import pyarrow as pa

    pa_type = getattr(getattr(values, "dtype", None), "pyarrow_dtype", None)
    if pa_type is None or not (pa.types.is_string(pa_type) or pa.types.is_large_string(pa_type)):
        return None
    return values.array.__arrow_array__()


def _arrow_numbers(text, allow_bool: bool) -> np.ndarray | None:
    """Arrow text -> float64 with the same rules as `_to_float` (trimmed; empty -> NaN; True/False when
    allowed), or None when a cell does not parse (the Python loop then names it)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = pc.utf8_trim_whitespace(text)
    if allow_bool:
        low = pc.utf8_lower(t)
        t = pc.if_else(pc.equal(low, "true"), "1", pc.if_else(pc.equal(low, "false"), "0", t))
    t = pc.if_else(pc.equal(pc.utf8_length(t), 0), pa.scalar(None, pa.string()), t)
    try:
        num = pc.cast(t, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return np.asarray(num.to_numpy(zero_copy_only=False), dtype=np.float64)  # nulls -> NaN


def _plain_numbers(cells: list) -> np.ndarray | None:
    """JSON numbers and nulls in one numpy call (None -> NaN), ~10x faster than `_to_float` per cell;
    None when any cell is something else (a bool, text), which the per-cell rules then read."""
    if not {type(v) for v in cells} <= _PLAIN_NUMBERS:
        return None
    try:
        return np.array(cells, dtype=np.float64)
    except OverflowError:  # an integer beyond float range: the per-cell loop names it
        return None


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and v != v) or v is pd.NA or (isinstance(v, str) and not v.strip())


def _cells(values) -> list:
    text = arrow_text(values)
    if text is not None:
        return text.to_pylist()  # ~10x faster than iterating an Arrow-backed Series
    return values.tolist() if hasattr(values, "tolist") else list(values)


_BOOL_TEXT = {"true": 1.0, "false": 0.0}
_PLAIN_NUMBERS = {int, float, type(None)}  # not bool: a bool is a score only where allow_bool says so


def _to_float(v, allow_bool: bool) -> float | None:
    """One cell -> float (NaN when missing), or None when it is not a number."""
    if _is_missing(v):
        return float("nan")
    if isinstance(v, (bool, np.bool_)):
        return float(v) if allow_bool else None
    if isinstance(v, str):
        t = v.strip()
        if allow_bool and t.lower() in _BOOL_TEXT:
            return _BOOL_TEXT[t.lower()]
        v = t
    try:
        return float(v)
    except (TypeError, ValueError, OverflowError):
        return None


def parse_numbers(values, *, file: str, column: str, what: str = "value", lo: float | None = 0.0,
                  hi: float | None = None, allow_bool: bool = False, first_row: int = 1) -> np.ndarray:
    """Cells -> float64 array; empty/None -> NaN. Raises DataError at the first non-number or out-of-range cell.

    Arrow text (from read_csv_table) is converted in Arrow; other cells by a plain loop over Python
    objects (on small columns it beats pandas' per-call overhead by ~20x), which also names a bad cell.
    """
    dtype = getattr(values, "dtype", None)
    text = arrow_text(values)
    fast = None if text is None else _arrow_numbers(text, allow_bool)
    if fast is not None:  # Arrow text from read_csv_table, every cell a number
        num, cells = fast, None
    elif dtype is not None and dtype.kind in "fiu":  # already numeric (parquet, pickle, hub)
        num = (values.to_numpy(dtype=np.float64, na_value=np.nan) if hasattr(values, "to_numpy")
               else np.asarray(values, dtype=np.float64))
        cells = None
    else:
        cells = _cells(values)
        num = _plain_numbers(cells)
        if num is None:
            num = np.empty(len(cells), dtype=np.float64)
            for i, v in enumerate(cells):
                x = _to_float(v, allow_bool)
                if x is None:
                    kind = "a number or True/False" if allow_bool else "a number"
                    raise DataError(f"{what} {v!r} is not {kind}", file=file, row=first_row + i, column=column)
                num[i] = x
    with np.errstate(invalid="ignore"):
        out = np.zeros(len(num), dtype=bool)
        if lo is not None:
            out |= num < lo
        if hi is not None:
            out |= num > hi
        out |= np.isinf(num)
    bad = np.flatnonzero(out)
    if bad.size:
        i = int(bad[0])
        rng = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        v = num[i] if cells is None else cells[i]
        raise DataError(f"{what} {v!r} is outside {rng}", file=file, row=first_row + i, column=column)
    return num


def parse_scores(values, *, file: str, column: str, first_row: int = 1) -> np.ndarray:
    """Scores must be in [0, 1]; True/False read as 1/0; empty cells are missing (NaN), never zero."""
    return parse_numbers(values, file=file, column=column, what="score", lo=0.0, hi=1.0,
                         allow_bool=True, first_row=first_row)


def parse_texts(values) -> list[str | None]:
    """Response-like cells: empty/NaN -> None (a CSV cannot tell them apart), everything else str."""
    return [None if _is_missing(v) else str(v) for v in _cells(values)]


def require_text(values, *, file: str, column: str, first_row: int = 1) -> list[str]:
    """A required text column (prompt, id): every cell must be present and non-empty."""
    cells = _cells(values)
    for i, v in enumerate(cells):
        if _is_missing(v):
            raise DataError(f"{column} is missing", file=file, row=first_row + i, column=column)
    return [str(v) for v in cells]


def _rows_differ(ds, a: int, b: int) -> str | None:
    """The first field in which rows a and b of `ds` differ, or None when they are the same record."""
    for k, what in (("prompts", "prompt"), ("categories", "category"), ("splits", "split"), ("answers", "answer")):
        v = getattr(ds, k)
        if v is not None and v[a] != v[b]:
            return what
    for k, what in (("scores", "score"), ("costs", "cost"), ("input_tokens", "input tokens"),
                    ("output_tokens", "output tokens"), ("latencies", "latency")):
        v = getattr(ds, k)
        if v is not None:
            bad = ~((v[a] == v[b]) | (np.isnan(v[a]) & np.isnan(v[b])))
            if bad.any():
                return f"{what} of {ds.models[int(np.flatnonzero(bad)[0])]}"
    if ds.responses is not None and ds.responses[a] != ds.responses[b]:
        return "response"
    return None


def drop_repeated_ids(ds, *, file: str, column: str = "id", keep_agreeing: bool = True):
    """`ds` with each repeated id kept once (first row), with a warning counting them, when the repeated
    rows are the same record (publishers' files do repeat some, e.g. RouterBench's arc-challenge.val.172);
    a DataError naming both rows when they differ, or always when not `keep_agreeing`. Rows count from 1
    in the loaded order."""
    unique = ds.ids.is_unique() if hasattr(ds.ids, "is_unique") else pd.Index(ds.ids).is_unique
    if unique:  # a hash table in C (Arrow or pandas): cheap on a million ids, where a dict is not
        return ds
    first: dict[str, int] = {}
    repeats: list[tuple[int, int]] = []
    for i, x in enumerate(ds.ids):
        j = first.setdefault(x, i)
        if j != i:
            repeats.append((j, i))
    for j, i in repeats:
        what = _rows_differ(ds, j, i)
        if not keep_agreeing:
            raise DataError(f"duplicate id {ds.ids[i]!r} at rows {j + 1} and {i + 1}"
                            + (f" with different {what}" if what else ""), file=file, row=i + 1, column=column)
        if what is not None:
            raise DataError(f"duplicate id {ds.ids[i]!r} at rows {j + 1} and {i + 1} with different {what}",
                            file=file, row=i + 1, column=column)
    import warnings

    j, i = repeats[0]
    warnings.warn(f"file {file}: {len(repeats)} repeated rows (same id, same content) kept once, e.g. id "
                  f"{ds.ids[i]!r} at rows {j + 1} and {i + 1}", stacklevel=3)
    keep = np.ones(len(ds), dtype=bool)
    keep[[i for _, i in repeats]] = False
    out = ds.subset(keep)
    out.meta["repeated_rows_dropped"] = len(repeats)
    return out


def warn_gaps(ds, *, file: str) -> None:
    """Name what a loaded file leaves unknown, so nothing downstream mistakes it for 0: unknown (NaN)
    costs per model with their first row, and models without any score in a split."""
    import warnings

    if ds.costs is not None:
        nan = np.isnan(ds.costs)
        cols = np.flatnonzero(nan.any(axis=0))
        if cols.size:
            parts = [f"{ds.models[j]!r} {int(nan[:, j].sum())} (first row {int(np.argmax(nan[:, j])) + 1})"
                     for j in cols[:5]]
            warnings.warn(f"file {file}: unknown (NaN) costs, kept unknown, never 0: {', '.join(parts)}"
                          + (f" and {cols.size - 5} more models" if cols.size > 5 else ""), stacklevel=3)
    codes, names = pd.factorize(pd.Series(ds.splits, dtype=object), sort=False)
    known = ~np.isnan(ds.scores)
    for k, sp in enumerate(names):
        rows = codes == k
        empty = [m for m, has in zip(ds.models, known[rows].any(axis=0)) if not has]
        if empty:
            warnings.warn(f"file {file}: the {sp} split ({int(rows.sum())} rows) has no score for models {empty}",
                          stacklevel=3)


_INDEX_NAME = re.compile(r"^(Unnamed: 0)?$")


def drop_index_column(df: pd.DataFrame) -> pd.DataFrame:
    """Drop a leading index column as pandas' `to_csv()` writes it by default (header '' or, after a
    read_csv round trip, 'Unnamed: 0'); RouterDC redistributes RouterBench that way."""
    if len(df.columns) and _INDEX_NAME.match(str(df.columns[0])):
        return df.drop(columns=df.columns[0])
    return df


def require_columns(columns, needed: list[str], *, file: str, hint: str = "") -> None:
    missing = [c for c in needed if c not in columns]
    if missing:
        raise DataError(f"missing required column {missing[0]!r} (columns: {list(columns)[:12]}){hint}",
                        file=file, row=0, column=missing[0])
