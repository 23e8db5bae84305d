"""`load_dataset`: one entry point that finds the adapter for a spec and applies prices.

A spec is a file, a folder, a `datasets` hub id ("org/name" or "org/name:split"), or "embedded".
The adapter is picked by content (first bytes, JSON keys, CSV header), not by extension alone, or
named with `format=` (one of ADAPTERS).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Callable

from routers.data import arrow, hub, native, routellm, routerbench, scores_json
from routers.data.common import LoadOptions, drop_repeated_ids, pick_models, warn_gaps
from routers.data.prices import apply_prices, load_prices
from routers.data.schema import RoutingDataset
from routers.data.splits import check_fractions
from routers.errors import ConfigError, DataError

Adapter = Callable[[str, LoadOptions], RoutingDataset]

ADAPTERS: dict[str, Adapter] = {
    "routerbench": routerbench.load,
    "routellm": routellm.load,
    "scores_json": scores_json.load,
    "native_jsonl": native.load_jsonl,
    "native_parquet": native.load_parquet,
    "native_arrow": arrow.load,
    "hub": hub.load,
}

HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+(:[\w.-]+)?$")
FILE_SUFFIXES = (".csv", ".json", ".jsonl", ".parquet", ".arrow", ".pkl", ".pickle", ".gz")


def _sniff_csv_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        try:
            return next(csv.reader(f), [])
        except csv.Error as e:
            raise DataError(f"cannot read a CSV header: {e}", file=str(path), row=0) from None


def _sniff_file(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(4096)
    if not head.strip():
        raise DataError("empty file", file=str(path))
    if arrow.looks_like(head):
        return "native_arrow"
    if head[:4] == b"PAR1":
        return "native_parquet"
    if head[:1] == b"\x80" or path.suffix.lower() in (".pkl", ".pickle"):
        return "routerbench"
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if text.startswith("["):
        return "scores_json"
    if text.startswith("{"):
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            first = f.readline()
        try:
            obj = json.loads(first)
        except json.JSONDecodeError:
            raise DataError("the top-level JSON is an object, not a list of {question, scores} items "
                            "(nor one object per line, as native JSONL)", file=str(path)) from None
        if isinstance(obj, dict) and "results" in obj:
            return "native_jsonl"
        if isinstance(obj, dict) and ("scores" in obj or "perf_list" in obj) and path.suffix == ".jsonl":
            return "scores_json"
        if path.suffix == ".jsonl":
            return "native_jsonl"  # its reader names the missing field
        raise DataError("the top-level JSON is an object, not a list of {question, scores} items", file=str(path))
    cols = _sniff_csv_header(path)
    if routerbench.looks_like(cols):
        return "routerbench"
    if "prompt" in cols:
        return "routellm"
    raise DataError(f"cannot tell the format from the columns {cols[:12]}; pass format= one of {sorted(ADAPTERS)}",
                    file=str(path), row=0)


def detect_format(spec: str) -> str:
    """The ADAPTERS name for `spec`, from its content."""
    p = Path(spec)
    if p.is_dir():
        names = {f.name for f in p.iterdir()}
        if names & set(scores_json.SPLIT_FILES):
            return "scores_json"
        if any(n.endswith(".csv") for n in names):
            return "routellm"
        if any(n.endswith((".parquet", ".jsonl", ".json")) for n in names):
            return "hub"
        raise DataError("folder holds no routing data (train.json/test.json, *.csv, *.parquet, *.jsonl)", file=spec)
    if p.is_file():
        return _sniff_file(p)
    if HUB_ID.match(spec) and not spec.lower().endswith(FILE_SUFFIXES):
        return "hub"
    raise DataError("no such file or folder (and not a hub id like 'org/name' or 'org/name:split')", file=spec)


def _embedded(seed: int) -> RoutingDataset:
    from routers.record import embedded_dataset  # another area; imported only when asked for

    return embedded_dataset(seed=seed)


def load_dataset(spec: str, *, format: str | None = None, prices: str | dict | None = None,
                 trust_pickle: bool = False, seed: int = 0,
                 split_fractions=(0.7, 0.1, 0.2), models=None) -> RoutingDataset:
    """Load any supported routing dataset as a RoutingDataset.

    format: an ADAPTERS name, or None to detect from content. prices: a price file, dict, or
    "builtin"; fills costs the file lacks (see routers.data.prices). seed / split_fractions: the
    prompt-hash split for files without splits. trust_pickle: allow reading RouterBench pickles.
    models: the models to read (a list, or one comma-separated string), in that order; an unknown one is a
    DataError. In the wide CSV formats the other columns are then metadata, not parsed as scores.
    """
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",") if m.strip()]
    models = tuple(models) if models is not None else None
    opts = LoadOptions(trust_pickle=trust_pickle, seed=seed, split_fractions=check_fractions(split_fractions),
                       models=models)
    spec = str(spec)
    if spec == "embedded":
        ds = _embedded(seed)
    else:
        if format is not None and format not in ADAPTERS:
            raise ConfigError(f"unknown dataset format {format!r}; expected one of {sorted(ADAPTERS)}")
        name = format or detect_format(spec)
        if name != "hub" and not Path(spec).exists():
            raise DataError("no such file or folder", file=spec)
        try:
            ds = ADAPTERS[name](spec, opts)
        except UnicodeDecodeError as e:
            raise DataError(f"not UTF-8 text ({e.reason} at byte {e.start})", file=spec) from None
    if models is not None and list(ds.models) != list(models):  # formats that read every model
        ds = ds.select_models(pick_models(ds.models, models, file=spec))
    if spec != "embedded":
        ds = drop_repeated_ids(ds, file=spec, column=ds.meta.get("id_column", "id"))
    if prices is not None:
        ds = apply_prices(ds, load_prices(prices))
    if spec != "embedded":
        warn_gaps(ds, file=spec)  # after prices: a cost a price table filled is known
    return ds
