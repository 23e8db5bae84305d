"""Routing datasets through `datasets.load_dataset`: hub ids ("org/name" or "org/name:split") and local
folders/files (json, jsonl, parquet, csv), which take the same code path.

The rows may be in any format baton reads by columns: native long (id, prompt, model, score, ...),
native per-query records (prompt, results), {question, scores} lists, RouterBench or RouteLLM wide
tables. Split: a `split` column wins; else the hub split name (train / validation|val|dev / test);
else the prompt hash.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from routers.data import native, routerbench, routellm, scores_json
from routers.data.common import LoadOptions
from routers.data.schema import RoutingDataset
from routers.data.splits import normalize_split
from routers.errors import DataError

BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def _fetch(spec: str):
    """A DatasetDict (all splits) or a Dataset (one split) from `datasets.load_dataset`."""
    import datasets

    p = Path(spec)
    try:
        if p.is_file():
            builder = BUILDERS.get(p.suffix.lower())
            if builder is None:
                raise DataError(f"datasets cannot read {p.suffix!r} files; use json, jsonl, parquet or csv", file=spec)
            return datasets.load_dataset(builder, data_files=str(p))
        if p.is_dir():
            return datasets.load_dataset(str(p))
        name, _, split = spec.partition(":")
        return datasets.load_dataset(name, split=split or None)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - network, missing repo, bad files: all a bad spec for the user
        cause = f" ({type(e.__cause__).__name__}: {e.__cause__})" if e.__cause__ else ""
        raise DataError(f"datasets.load_dataset failed: {type(e).__name__}: {e}{cause}", file=spec) from None


def _to_dataset(df: pd.DataFrame, *, file: str, name: str, opts: LoadOptions) -> RoutingDataset:
    cols = list(df.columns)
    if native.looks_long(cols):
        return native.from_long_frame(df, file=file, name=name, opts=opts)
    if "results" in cols:
        return native.from_records(df.to_dict("records"), file=file, name=name, opts=opts, keep_repeats=True)
    if "split" in cols:  # the wide formats have no split column of their own
        given = df["split"].tolist()
        ds = _to_dataset(df.drop(columns=["split"]), file=file, name=name, opts=opts)
        ds.splits = native.resolve_splits(given, ds.prompts, file=file, opts=opts)
        return ds
    if "scores" in cols or "perf_list" in cols:
        return scores_json.from_records(df.to_dict("records"), file=file, name=name, split=None, opts=opts)
    if routerbench.looks_like(cols):
        return routerbench.from_frame(df, file=file, name=name, opts=opts)
    if "prompt" in cols:
        part = routellm.from_frame(df.astype(object), file=file, category=name, id_prefix=name, models=opts.models)
        return routellm.assemble([part], name=name, source=file, opts=opts, file=file)
    raise DataError(f"cannot tell the routing format from columns {cols[:12]}", file=file)


def load(spec: str, opts: LoadOptions) -> RoutingDataset:
    import datasets

    got = _fetch(spec)
    name = Path(spec.partition(":")[0]).name or spec
    if isinstance(got, datasets.Dataset):
        parts = {spec.partition(":")[2] or "": got}
    else:
        parts = dict(got)
    frames = []
    for split_name, d in parts.items():
        df = d.to_pandas()
        if "split" not in df.columns and normalize_split(split_name):
            df["split"] = normalize_split(split_name)
        frames.append(df)
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    ds = _to_dataset(df, file=spec, name=name, opts=opts)
    ds.meta.update(format="hub:" + ds.meta.get("format", "?"), source=spec)
    return ds
