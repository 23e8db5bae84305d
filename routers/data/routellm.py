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

from routers.data.common import (LoadOptions, arrow_text, drop_index_column, parse_scores, parse_texts,
                                 pick_models, read_csv_table, require_columns, require_text, warn_not_models)
from routers.data.schema import RoutingDataset
from routers.data.splits import assign_splits
from routers.errors import DataError

RESPONSE_SUFFIX = "_response"


def _has_bool_cell(values) -> bool:
    """Whether any cell is True/False (a bool, or its text in any case)."""
    text = arrow_text(values)
    if text is not None:  # Arrow text from read_csv_table: checked in Arrow
        import pyarrow as pa
        import pyarrow.compute as pc

        words = pc.utf8_lower(pc.utf8_trim_whitespace(text))
        return bool(pc.any(pc.is_in(words, value_set=pa.array(["true", "false"]))).as_py())
    return any(isinstance(v, (bool, np.bool_)) or (isinstance(v, str) and v.strip().lower() in ("true", "false"))
               for v in values)


def split_columns(df: pd.DataFrame, *, file: str, wanted=None) -> tuple[list[str], dict[str, str], list[str]]:
    """(model columns, {model: response column}, other columns).

    A `<x>_response` column pairs with column x. RouteLLM writes each model's correctness as pandas
    booleans (True/False), so a model column is one with a `_response` sibling or a True/False cell;
    other columns (an `is_hard` 0/1 flag, notes) are metadata. `wanted` (the user's list) overrides.
    """
    cols = [c for c in df.columns if c != "prompt"]
    resp = {c[: -len(RESPONSE_SUFFIX)]: c for c in cols
            if c.endswith(RESPONSE_SUFFIX) and c[: -len(RESPONSE_SUFFIX)] in cols}
    cand = [c for c in cols if c not in resp.values()]
    if wanted is not None:
        models = pick_models(cand, wanted, file=file)
    else:
        models = [c for c in cand if c in resp or _has_bool_cell(df[c])]
        if models:  # else from_frame refuses the file, naming these columns
            warn_not_models([c for c in cand if c not in models], "no True/False cell and no _response column",
                            file=file)
    return models, {m: resp[m] for m in models if m in resp}, [c for c in cand if c not in models]


def from_frame(df: pd.DataFrame, *, file: str, category: str, id_prefix: str, models=None) -> dict:
    """One RouteLLM table -> column-wise pieces (ids, prompts, categories, {model: scores}, {model: responses}).
    `models`: the user's choice of model columns (None: `split_columns`' rule)."""
    df = drop_index_column(df)
    require_columns(df.columns, ["prompt"], file=file,
                    hint="; a RouteLLM CSV needs 'prompt' + one True/False column per model")
    models, resp_cols, other = split_columns(df, file=file, wanted=models)
    if not models:
        raise DataError(f"no model columns besides 'prompt' (a model column holds True/False; other columns: "
                        f"{other[:12]}); pass models= (CLI --models) to choose", file=file, row=0)
    prompts = require_text(df["prompt"], file=file, column="prompt")
    return {
        "ids": [f"{id_prefix}-{i}" for i in range(len(df))],
        "prompts": prompts,
        "categories": [category] * len(df),
        "scores": {m: parse_scores(df[m], file=file, column=m) for m in models},
        "responses": {m: parse_texts(df[c]) for m, c in resp_cols.items()},
        "other": other,
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
                          meta={"format": "routellm", "source": source,
                                "other_columns": list(dict.fromkeys(c for p in parts for c in p["other"]))})


def load(spec: str, opts: LoadOptions) -> RoutingDataset:
    p = Path(spec)
    files = sorted(p.glob("*.csv")) if p.is_dir() else [p]
    if not files:
        raise DataError("folder has no .csv files", file=str(p))
    cats = _category_names([f.stem for f in files])
    parts = [from_frame(read_csv_table(f), file=str(f), category=c, id_prefix=f.stem, models=opts.models)
             for f, c in zip(files, cats)]
    return assemble(parts, name=p.stem if p.is_file() else p.name, source=str(p), opts=opts, file=str(p))
