"""RouteLLM evaluation CSVs: `prompt`, one True/False column per model, optional `<model>_response`.

A folder of per-subject files (mmlu_<subject>.csv, ...) is one dataset whose category is the subject
(the file stem without the prefix all files share, up to its last '_'); a single file's category is
its stem. The files carry no split, so splits come from the prompt hash.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from routers.data.common import (LoadOptions, check_unique_ids, parse_scores, parse_texts, read_csv_table,
                                 require_columns, require_text)
from routers.data.schema import RoutingDataset
from routers.data.splits import assign_splits
from routers.errors import DataError

RESPONSE_SUFFIX = "_response"


def split_columns(columns: list[str]) -> tuple[list[str], dict[str, str]]:
    """(model columns, {model: response column}); a `<x>_response` column pairs with model column x."""
    cols = [c for c in columns if c != "prompt"]
    resp = {c[: -len(RESPONSE_SUFFIX)]: c for c in cols
            if c.endswith(RESPONSE_SUFFIX) and c[: -len(RESPONSE_SUFFIX)] in cols}
    return [c for c in cols if c not in resp.values()], resp


def from_frame(df: pd.DataFrame, *, file: str, category: str, id_prefix: str) -> dict:
    """One RouteLLM table -> column-wise pieces (ids, prompts, categories, {model: scores}, {model: responses})."""
    require_columns(df.columns, ["prompt"], file=file,
                    hint="; a RouteLLM CSV needs 'prompt' + one True/False column per model")
    models, resp_cols = split_columns(list(df.columns))
    if not models:
        raise DataError("no model columns besides 'prompt'", file=file, row=0)
    prompts = require_text(df["prompt"], file=file, column="prompt")
    return {
        "ids": [f"{id_prefix}-{i}" for i in range(len(df))],
        "prompts": prompts,
        "categories": [category] * len(df),
        "scores": {m: parse_scores(df[m], file=file, column=m) for m in models},
        "responses": {m: parse_texts(df[c]) for m, c in resp_cols.items()},
    }


def _category_names(stems: list[str]) -> list[str]:
    if len(stems) < 2:
        return stems
    prefix = os.path.commonprefix(stems)
    cut = prefix.rfind("_") + 1
    return [s[cut:] or s for s in stems]


def assemble(parts: list[dict], *, name: str, source: str, opts: LoadOptions, file: str) -> RoutingDataset:
    """Stack per-file pieces into one dataset; a model absent from a file is NaN there."""
    models: list[str] = []
    for p in parts:
        models += [m for m in p["scores"] if m not in models]
    ids = [x for p in parts for x in p["ids"]]
    prompts = [x for p in parts for x in p["prompts"]]
    check_unique_ids(ids, file=file)
    scores = np.vstack([np.column_stack([p["scores"].get(m, np.full(len(p["ids"]), np.nan)) for m in models])
                        for p in parts])
    responses = None
    if any(p["responses"] for p in parts):
        responses = []
        for p in parts:
            cols = [p["responses"].get(m, [None] * len(p["ids"])) for m in models]
            responses += [list(r) for r in zip(*cols)]
    return RoutingDataset(ids=ids, prompts=prompts, categories=[x for p in parts for x in p["categories"]],
                          splits=assign_splits(prompts, seed=opts.seed, fractions=opts.split_fractions),
                          models=models, scores=scores, responses=responses, name=name,
                          meta={"format": "routellm", "source": source})


def load(spec: str, opts: LoadOptions) -> RoutingDataset:
    p = Path(spec)
    files = sorted(p.glob("*.csv")) if p.is_dir() else [p]
    if not files:
        raise DataError("folder has no .csv files", file=str(p))
    cats = _category_names([f.stem for f in files])
    parts = [from_frame(read_csv_table(f), file=str(f), category=c, id_prefix=f.stem) for f, c in zip(files, cats)]
    return assemble(parts, name=p.stem if p.is_file() else p.name, source=str(p), opts=opts, file=str(p))
