"""RouterBench wide format (CSV or pickle).

Columns: sample_id, prompt, eval_name, then per model `<model>` (score), `<model>|model_response`,
`<model>|total_cost`, and oracle_model_to_route_to. Where the file has `|...` columns, only columns
with one are models; other extra columns are metadata (`model_columns`). Empty score cells are missing (NaN), never zero;
category = eval_name. The official release is a pandas pickle: unpickling runs arbitrary code, so it
is read only with trust_pickle=True.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from routers.data.common import (LoadOptions, drop_index_column, parse_numbers, parse_scores, parse_texts,
                                 pick_models, read_csv_table, require_columns, require_text, warn_not_models)
from routers.data.schema import RoutingDataset
from routers.data.splits import assign_splits
from routers.errors import DataError

BASE_COLUMNS = ("sample_id", "prompt", "eval_name", "oracle_model_to_route_to")
RESPONSE, COST = "|model_response", "|total_cost"
MARKERS = ("oracle_model_to_route_to", "eval_name", "sample_id")


def looks_like(columns) -> bool:
    cols = [str(c) for c in columns]
    return any(c in cols for c in MARKERS) or any(c.endswith((RESPONSE, COST)) for c in cols)


def _first_byte(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(1)


def read_table(path: Path, trust_pickle: bool) -> pd.DataFrame:
    if path.suffix.lower() in (".pkl", ".pickle") or _first_byte(path) == b"\x80":
        if not trust_pickle:
            raise DataError("refusing to read a pickle: unpickling runs arbitrary code from the file. "
                            "Pass trust_pickle=True (CLI: --trust-pickle) only for files you trust", file=str(path))
        try:
            df = pd.read_pickle(path)
        except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
            raise DataError(f"cannot unpickle: {type(e).__name__}: {e}", file=str(path)) from None
        if not isinstance(df, pd.DataFrame):
            raise DataError(f"pickle holds a {type(df).__name__}, expected a pandas DataFrame", file=str(path))
        if df.empty:
            raise DataError("no data rows", file=str(path))
        return df.reset_index(drop=True)
    return read_csv_table(path)


def model_columns(columns: list[str], *, file: str, wanted=None) -> tuple[list[str], list[str]]:
    """(models, other columns). A model is a column with a `|total_cost` or `|model_response` sibling
    when the file has such columns (so an `is_hard` 0/1 column is not a model), else every column
    outside BASE_COLUMNS without a '|'. `wanted` (the user's list) overrides the rule."""
    cand = [c for c in columns if c not in BASE_COLUMNS and "|" not in c]
    if wanted is not None:
        models = pick_models(cand, wanted, file=file)
    elif any(c.endswith((RESPONSE, COST)) for c in columns):
        models = [c for c in cand if c + COST in columns or c + RESPONSE in columns]
        warn_not_models([c for c in cand if c not in models], "no |total_cost or |model_response column", file=file)
    else:
        models = cand
    if not models:
        raise DataError("no model score columns", file=file, row=0)
    return models, [c for c in cand if c not in models]


def from_frame(df: pd.DataFrame, *, file: str, name: str, opts: LoadOptions) -> RoutingDataset:
    df = drop_index_column(df.rename(columns=str))
    require_columns(df.columns, ["prompt"], file=file,
                    hint="; RouterBench needs sample_id, prompt, eval_name, <model>...")
    models, other = model_columns(list(df.columns), file=file, wanted=opts.models)
    prompts = require_text(df["prompt"], file=file, column="prompt")
    n = len(df)
    ids = [str(i) for i in range(n)]
    if "sample_id" in df:
        ids = require_text(df["sample_id"], file=file, column="sample_id")
    cats = require_text(df["eval_name"], file=file, column="eval_name") if "eval_name" in df else [name] * n
    scores = np.column_stack([parse_scores(df[m], file=file, column=m) for m in models])
    costs = None
    if any(m + COST in df for m in models):
        costs = np.column_stack([parse_numbers(df[m + COST], file=file, column=m + COST, what="cost")
                                 if m + COST in df else np.full(n, np.nan) for m in models])
    responses = None
    if any(m + RESPONSE in df for m in models):
        cols = [parse_texts(df[m + RESPONSE]) if m + RESPONSE in df else [None] * n for m in models]
        responses = [list(r) for r in zip(*cols)]
    return RoutingDataset(ids=ids, prompts=prompts, categories=cats,
                          splits=assign_splits(prompts, seed=opts.seed, fractions=opts.split_fractions),
                          models=models, scores=scores, costs=costs, responses=responses, name=name,
                          meta={"format": "routerbench", "source": file, "other_columns": other,
                                "id_column": "sample_id"})


def load(spec: str, opts: LoadOptions) -> RoutingDataset:
    p = Path(spec)
    if not p.is_file():
        raise DataError("RouterBench data must be a CSV or pickle file", file=str(p))
    return from_frame(read_table(p, opts.trust_pickle), file=str(p), name=p.stem, opts=opts)
