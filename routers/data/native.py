"""baton's own formats: JSONL (one object per query) and parquet (one row per (query, model)).

JSONL line: {"id", "prompt", "category", "split", "answer"?, "results": {model: {"score", "cost"?,
"response"?, "input_tokens"?, "output_tokens"?, "latency"?}}} -- exactly what the recorder writes (its
code-task cells also hold "sandbox": the isolation they were graded in, for the reader; not loaded).
Parquet columns: id, prompt, category, split, answer?, model, score, cost?, response?, input_tokens?,
output_tokens?, latency?. A field the dataset has is written for every cell (null where unknown), so
`save_*` then `load_dataset` gives back the same dataset.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from routers.data.common import (LoadOptions, drop_repeated_ids, parse_numbers, parse_scores, require_columns,
                                 require_text)
from routers.data.schema import RoutingDataset
from routers.data.splits import assign_splits, normalize_split
from routers.errors import DataError

# file field -> RoutingDataset attribute, for the numeric per-cell fields
NUMERIC = {"cost": "costs", "input_tokens": "input_tokens", "output_tokens": "output_tokens",
           "latency": "latencies"}


# -- shared pieces ------------------------------------------------------------------------------
def resolve_splits(raw: list, prompts: list[str], *, file: str, opts: LoadOptions) -> list[str]:
    """Given split names, normalized; rows without one get the prompt-hash split."""
    out: list[str | None] = []
    for i, s in enumerate(raw, start=1):
        if s is None or (isinstance(s, float) and math.isnan(s)) or s == "":
            out.append(None)
            continue
        v = normalize_split(s)
        if v is None:
            raise DataError(f"unknown split {s!r}; expected train, validation or test", file=file, row=i,
                            column="split")
        out.append(v)
    if any(s is None for s in out):
        hashed = assign_splits(prompts, seed=opts.seed, fractions=opts.split_fractions)
        out = [h if s is None else s for s, h in zip(out, hashed)]
    return out  # type: ignore[return-value]


def _num_out(x: float):
    if np.isnan(x):
        return None
    return int(x) if float(x).is_integer() and abs(x) < 2**53 else float(x)


# -- JSONL --------------------------------------------------------------------------------------
def read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8-sig") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"invalid JSON: {e.msg} (char {e.colno}; truncated line?)", file=str(path),
                                row=i) from None
            if not isinstance(obj, dict):
                raise DataError(f"line is a {type(obj).__name__}, expected an object", file=str(path), row=i)
            rows.append(obj)
    if not rows:
        raise DataError("empty file", file=str(path))
    return rows


def from_records(rows: list[dict], *, file: str, name: str, opts: LoadOptions,
                 keep_repeats: bool = False) -> RoutingDataset:
    """Native per-query records (from JSONL or a hub dataset) -> RoutingDataset. A repeated id is refused,
    unless `keep_repeats` (files read by load_dataset), where identical repeated records are kept once."""
    n = len(rows)
    models: list[str] = []
    raw: dict[str, dict[str, list]] = {}  # field -> model -> column
    for i, r in enumerate(rows, start=1):
        if not isinstance(r.get("prompt"), str):
            raise DataError("missing 'prompt' text", file=file, row=i, column="prompt")
        res = r.get("results")
        if not isinstance(res, dict):
            raise DataError("missing 'results' object {model: {score, ...}}", file=file, row=i, column="results")
        for m, cell in res.items():
            if cell is None:  # hub structs fill absent models with null
                continue
            if not isinstance(cell, dict) or "score" not in cell:
                raise DataError("result must be an object with a 'score'", file=file, row=i, column=f"results.{m}")
            if m not in models:
                models.append(m)
            for k, v in cell.items():
                cols = raw.setdefault(k, {})
                col = cols.get(m)
                if col is None:  # allocated once per (field, model), not per row: loading stays linear
                    col = cols[m] = [None] * n
                col[i - 1] = v
    ids = [str(r["id"]) if r.get("id") is not None else f"{name}-{i}" for i, r in enumerate(rows)]
    prompts = [r["prompt"] for r in rows]

    def matrix(fld, parse):
        if fld not in raw:
            return None
        cols = raw[fld]
        return np.column_stack([parse(cols[m], file=file, column=f"results.{m}.{fld}") if m in cols
                                else np.full(n, np.nan) for m in models])

    kw = {attr: matrix(fld, lambda v, **k: parse_numbers(v, what=fld, **k)) for fld, attr in NUMERIC.items()}
    responses = None
    if "response" in raw:
        cols = [raw["response"].get(m, [None] * n) for m in models]
        responses = [[None if v is None else str(v) for v in r] for r in zip(*cols)]
    answers = None
    if any("answer" in r for r in rows):
        answers = [None if r.get("answer") is None else str(r["answer"]) for r in rows]
    ds = RoutingDataset(
        ids=ids, prompts=prompts, categories=[str(r.get("category") or name) for r in rows],
        splits=resolve_splits([r.get("split") for r in rows], prompts, file=file, opts=opts), models=models,
        scores=matrix("score", parse_scores), responses=responses, answers=answers, name=name,
        meta={"format": "native", "source": file}, **kw)
    return drop_repeated_ids(ds, file=file, keep_agreeing=keep_repeats)


def load_jsonl(spec: str, opts: LoadOptions) -> RoutingDataset:
    p = Path(spec)
    return from_records(read_jsonl(p), file=str(p), name=p.stem, opts=opts, keep_repeats=True)


def save_jsonl(ds: RoutingDataset, path: str | Path) -> Path:
    """Write `ds` as native JSONL (one query per line); fields the dataset has are written for every cell."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {fld: getattr(ds, attr) for fld, attr in NUMERIC.items() if getattr(ds, attr) is not None}
    with open(path, "w", encoding="utf-8") as f:
        for i in range(len(ds)):
            obj = {"id": ds.ids[i], "prompt": ds.prompts[i], "category": ds.categories[i], "split": ds.splits[i]}
            if ds.answers is not None:
                obj["answer"] = ds.answers[i]
            res = {}
            for j, m in enumerate(ds.models):
                cell = {"score": _num_out(ds.scores[i, j])}
                for fld, a in arrays.items():
                    cell[fld] = _num_out(a[i, j])
                if ds.responses is not None:
                    cell["response"] = ds.responses[i][j]
                res[m] = cell
            obj["results"] = res
            f.write(json.dumps(obj, ensure_ascii=False) + "\n")
    return path


# -- parquet (long) -----------------------------------------------------------------------------
LONG_REQUIRED = ["id", "prompt", "model", "score"]


def _scatter(n: int, m: int, q, mc, values) -> np.ndarray:
    """(n, m) matrix of long-format values at (query q, model mc); cells no row names stay NaN."""
    a = np.full((n, m), np.nan)
    a[q, mc] = values
    return a


def looks_long(columns) -> bool:
    return all(c in columns for c in LONG_REQUIRED)


def from_long_frame(df: pd.DataFrame, *, file: str, name: str, opts: LoadOptions) -> RoutingDataset:
    """One row per (query, model) -> dense dataset; query and model order = first appearance."""
    require_columns(df.columns, LONG_REQUIRED, file=file, hint="; native parquet is one row per (query, model)")
    if df.empty:
        raise DataError("no data rows", file=file)
    df = df.reset_index(drop=True)
    ids_all = require_text(df["id"], file=file, column="id")
    models_all = require_text(df["model"], file=file, column="model")
    q, qids = pd.factorize(pd.Series(ids_all), sort=False)
    mc, models = pd.factorize(pd.Series(models_all), sort=False)
    n, m = len(qids), len(models)
    dup = pd.Series(q * m + mc).duplicated().to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(f"second row for query {ids_all[i]!r} and model {models_all[i]!r}", file=file, row=i + 1,
                        column="model")
    first = np.unique(q, return_index=True)[1]
    prompts_all = require_text(df["prompt"], file=file, column="prompt")
    prompts = [prompts_all[k] for k in first]
    bad = np.flatnonzero(np.array(prompts_all, dtype=object) != np.array(prompts, dtype=object)[q])
    if bad.size:
        raise DataError(f"query {ids_all[bad[0]]!r} has two different prompts", file=file, row=int(bad[0]) + 1,
                        column="prompt")

    kw = {attr: _scatter(n, m, q, mc, parse_numbers(df[fld], file=file, column=fld, what=fld))
          for fld, attr in NUMERIC.items() if fld in df}
    responses = None
    if "response" in df:
        flat = [None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                for v in df["response"].tolist()]
        responses = [[None] * m for _ in range(n)]
        for k, (a, b) in enumerate(zip(q, mc)):
            responses[a][b] = flat[k]
    pick = lambda col: df[col].to_numpy(dtype=object)[first].tolist()  # noqa: E731
    cats = [name] * n
    if "category" in df:
        cats = [str(c) if c is not None and c == c else name for c in pick("category")]
    answers = [None if a is None or a != a else str(a) for a in pick("answer")] if "answer" in df else None
    return RoutingDataset(
        ids=list(map(str, qids)), prompts=prompts, categories=cats,
        splits=resolve_splits(pick("split") if "split" in df else [None] * n, prompts, file=file, opts=opts),
        models=list(map(str, models)), scores=_scatter(n, m, q, mc, parse_scores(df["score"], file=file, column="score")),
        responses=responses, answers=answers, name=name, meta={"format": "native", "source": file}, **kw)


def _codes(table, column: str, *, file: str) -> tuple[np.ndarray, list[str]] | None:
    """(per-row code, distinct texts) of a text column read dictionary-encoded, so a prompt repeated
    for every model is one Python string, not m; None when the column is not text (the pandas path
    then reads it). A null or blank cell is a DataError naming its row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = table.column(column)
    if not (pa.types.is_dictionary(col.type) and pa.types.is_string(col.type.value_type)):
        return None
    col = col.unify_dictionaries() if col.num_chunks > 1 else col
    words = col.chunk(0).dictionary if col.num_chunks else pa.array([], pa.string())
    idx = pa.chunked_array([c.indices for c in col.chunks], type=col.type.index_type)
    if idx.null_count:
        raise DataError(f"{column} is missing", file=file, column=column,
                        row=int(np.flatnonzero(idx.is_null().to_numpy(zero_copy_only=False))[0]) + 1)
    codes = idx.to_numpy().astype(np.int64)
    blank = np.flatnonzero(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(words)), 0).to_numpy(zero_copy_only=False))
    if blank.size and np.isin(codes, blank).any():
        raise DataError(f"{column} is missing", file=file, column=column,
                        row=int(np.flatnonzero(np.isin(codes, blank))[0]) + 1)
    return codes, words.to_pylist()


def _first_appearance(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(new code per row numbered by first appearance, first row of each new code)."""
    uniq, first = np.unique(codes, return_index=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[order] = np.arange(len(uniq))
    remap = np.zeros(int(uniq.max()) + 1 if len(uniq) else 0, dtype=np.int64)
    remap[uniq] = rank
    return remap[codes], first[order]


def from_long_table(table, *, file: str, name: str, opts: LoadOptions) -> RoutingDataset | None:
    """The long format from an Arrow table, vectorized (a 20M-row table in seconds); same result and
    errors as `from_long_frame`, which the caller uses instead when this returns None (non-text ids)."""
    import pyarrow as pa

    require_columns(table.column_names, LONG_REQUIRED, file=file,
                    hint="; native parquet is one row per (query, model)")
    if table.num_rows == 0:
        raise DataError("no data rows", file=file)
    ids, models, prompts = (_codes(table, c, file=file) for c in ("id", "model", "prompt"))
    if ids is None or models is None or prompts is None:
        return None
    q, first = _first_appearance(ids[0])
    mc, mfirst = _first_appearance(models[0])
    qids = [ids[1][ids[0][r]] for r in first]
    mnames = [models[1][models[0][r]] for r in mfirst]
    n, m = len(qids), len(mnames)
    key = q * m + mc
    order = np.argsort(key, kind="stable")
    dup = order[1:][key[order][1:] == key[order][:-1]]  # rows repeating an earlier (query, model)
    if dup.size:
        i = int(dup.min())
        raise DataError(f"second row for query {qids[q[i]]!r} and model {mnames[mc[i]]!r}", file=file, row=i + 1,
                        column="model")
    pcode = prompts[0]
    bad = np.flatnonzero(pcode != pcode[first][q])
    if bad.size:
        raise DataError(f"query {qids[q[bad[0]]]!r} has two different prompts", file=file, row=int(bad[0]) + 1,
                        column="prompt")

    def numbers(col, parse, **kw):
        c = table.column(col)
        if pa.types.is_floating(c.type) or pa.types.is_integer(c.type):
            values = c.cast(pa.float64()).to_numpy(zero_copy_only=False)  # nulls -> NaN
        else:  # text or bools: the per-cell rules and their errors
            values = c.to_pylist()
        return _scatter(n, m, q, mc, parse(values, file=file, column=col, **kw))

    has = set(table.column_names)
    kw = {attr: numbers(fld, parse_numbers, what=fld) for fld, attr in NUMERIC.items() if fld in has}
    responses = None
    if "response" in has:
        cells = np.full((n, m), None, dtype=object)
        cells[q, mc] = table.column("response").to_numpy(zero_copy_only=False)
        responses = [[None if v is None else str(v) for v in row] for row in cells.tolist()]
    pick = lambda col: table.column(col).take(pa.array(first)).to_pylist()  # noqa: E731
    cats = [str(c) if c is not None else name for c in pick("category")] if "category" in has else [name] * n
    answers = [None if a is None else str(a) for a in pick("answer")] if "answer" in has else None
    prompt_texts = [prompts[1][pcode[r]] for r in first]
    return RoutingDataset(
        ids=qids, prompts=prompt_texts, categories=cats,
        splits=resolve_splits(pick("split") if "split" in has else [None] * n, prompt_texts, file=file, opts=opts),
        models=mnames, scores=numbers("score", parse_scores), responses=responses, answers=answers, name=name,
        meta={"format": "native", "source": file}, **kw)


def load_parquet(spec: str, opts: LoadOptions) -> RoutingDataset:
    import pyarrow.parquet as pq

    p = Path(spec)
    try:
        table = pq.read_table(p, read_dictionary=["id", "model", "prompt"])
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise DataError(f"cannot read parquet: {type(e).__name__}: {e}", file=str(p)) from None
    ds = from_long_table(table, file=str(p), name=p.stem, opts=opts)
    if ds is None:  # ids or models that are not text: the pandas path converts them as before
        ds = from_long_frame(table.to_pandas(), file=str(p), name=p.stem, opts=opts)
    return ds


def save_parquet(ds: RoutingDataset, path: str | Path) -> Path:
    """Write `ds` as long-format parquet, one row per (query, model)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n, m = len(ds), ds.n_models
    rep = lambda xs: [x for x in xs for _ in range(m)]  # noqa: E731
    cols = {"id": pa.array(rep(ds.ids), pa.string()), "prompt": pa.array(rep(ds.prompts), pa.string()),
            "category": pa.array(rep(ds.categories), pa.string()), "split": pa.array(rep(ds.splits), pa.string())}
    if ds.answers is not None:
        cols["answer"] = pa.array(rep(ds.answers), pa.string())
    cols["model"] = pa.array(list(ds.models) * n, pa.string())
    cols["score"] = pa.array(ds.scores.reshape(-1), pa.float64(), from_pandas=True)
    for fld, attr in NUMERIC.items():
        a = getattr(ds, attr)
        if a is not None:
            cols[fld] = pa.array(a.reshape(-1), pa.float64(), from_pandas=True)
    if ds.responses is not None:
        cols["response"] = pa.array([r for row in ds.responses for r in row], pa.string())
    pq.write_table(pa.table(cols), path)
    return path
