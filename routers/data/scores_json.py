"""JSON lists of {question, scores: {model: score}} (RouterDC, LLMRouter), or JSONL of them; also the
LLMRouter library's {query, llm_name_list, perf_list} items (parallel lists, continuous scores).

A folder with train.json / test.json (and optionally validation.json or val.json) is used as given,
each file's rows taking the split named by the file. A single file named like a split takes that
split for all its rows; any other single file is split by prompt hash. Optional per-item keys: id,
category (or task / dataset / subject; else "cluster_<cluster_id>" when present, else the dataset
name), answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from routers.data.common import LoadOptions, parse_scores
from routers.data.schema import RoutingDataset
from routers.data.splits import assign_splits, normalize_split
from routers.errors import DataError

SPLIT_FILES = ("train.json", "validation.json", "val.json", "test.json")
CATEGORY_KEYS = ("category", "task", "dataset", "subject")


def read_items(path: Path) -> list[dict]:
    """The items of a JSON list (or of a JSONL file), each checked to be an object."""
    text = path.read_text(encoding="utf-8-sig")
    if not text.strip():
        raise DataError("empty file", file=str(path))
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON: {e.msg} (line {e.lineno}, char {e.colno})", file=str(path)) from None
    elif text.lstrip().startswith("{") and path.suffix == ".jsonl":
        items = []
        for i, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DataError(f"invalid JSON: {e.msg}", file=str(path), row=i) from None
    else:
        raise DataError("expected a JSON list of {question, scores} objects, but the top level is not a list",
                        file=str(path))
    if not items:
        raise DataError("the JSON list is empty", file=str(path))
    for i, it in enumerate(items, start=1):
        if not isinstance(it, dict):
            raise DataError(f"item is a {type(it).__name__}, expected an object", file=str(path), row=i)
    return items


def _category(it: dict, default: str) -> str:
    for k in CATEGORY_KEYS:
        if it.get(k) is not None:
            return str(it[k])
    if it.get("cluster_id") is not None:
        return f"cluster_{it['cluster_id']}"
    return default


def _scores_of(it: dict, *, file: str, row: int) -> dict:
    """{model: score} of one item: its `scores` object, or LLMRouter's parallel `llm_name_list` / `perf_list`."""
    if "scores" not in it and "perf_list" in it:
        names, perf = it.get("llm_name_list"), it.get("perf_list")
        if not isinstance(names, list) or not isinstance(perf, list):
            raise DataError("'llm_name_list' and 'perf_list' must both be lists", file=file, row=row,
                            column="llm_name_list" if not isinstance(names, list) else "perf_list")
        if len(names) != len(perf):
            raise DataError(f"'perf_list' has {len(perf)} entries for {len(names)} models in 'llm_name_list'",
                            file=file, row=row, column="perf_list")
        if len(set(map(str, names))) != len(names):
            raise DataError(f"a model is named twice in 'llm_name_list' {names}", file=file, row=row,
                            column="llm_name_list")
        return dict(zip(map(str, names), perf))
    sc = it.get("scores")
    if not isinstance(sc, dict):
        raise DataError("missing 'scores' object {model: score}", file=file, row=row, column="scores")
    return sc


def _item_rows(items: list[dict], *, file: str, name: str, id_prefix: str):
    """(ids, prompts, categories, answers, {model: scores}) for the items of one file."""
    ids, prompts, cats, answers, raw = [], [], [], [], {}
    n = len(items)
    for i, it in enumerate(items, start=1):
        prompt = it.get("question", it.get("prompt", it.get("query")))
        if not isinstance(prompt, str):
            raise DataError("missing 'question' (or 'prompt' / 'query') text", file=file, row=i, column="question")
        sc = _scores_of(it, file=file, row=i)
        for mdl, v in sc.items():
            col = raw.get(mdl)
            if col is None:  # one column per model, allocated once: loading stays linear in rows
                col = raw[mdl] = [None] * n
            col[i - 1] = v
        ids.append(str(it["id"]) if it.get("id") is not None else f"{id_prefix}-{i - 1}")
        prompts.append(prompt)
        cats.append(_category(it, name))
        answers.append(None if it.get("answer") is None else str(it["answer"]))
    if not raw:
        raise DataError("no item has any model score", file=file, column="scores")
    scores = {mdl: parse_scores(col, file=file, column=f"scores.{mdl}") for mdl, col in raw.items()}
    return ids, prompts, cats, answers, scores


def load(spec: str, opts: LoadOptions) -> RoutingDataset:
    p = Path(spec)
    if p.is_dir():
        files = [p / f for f in SPLIT_FILES if (p / f).is_file()]
        if not files:
            raise DataError(f"folder has none of {list(SPLIT_FILES)}", file=str(p))
        name = p.name
    else:
        files, name = [p], p.stem
    ids, prompts, cats, splits, answers, cols = [], [], [], [], [], []
    models: list[str] = []
    for f in files:
        i, pr, c, a, sc = _item_rows(read_items(f), file=str(f), name=name, id_prefix=f.stem)
        split = normalize_split(f.stem) if (p.is_dir() or normalize_split(f.stem)) else None
        ids += i
        prompts += pr
        cats += c
        answers += a
        splits += [split] * len(i) if split else assign_splits(pr, seed=opts.seed, fractions=opts.split_fractions)
        models += [m for m in sc if m not in models]
        cols.append((len(i), sc))
    scores = np.vstack([np.column_stack([sc.get(m, np.full(k, np.nan)) for m in models]) for k, sc in cols])
    return RoutingDataset(ids=ids, prompts=prompts, categories=cats, splits=splits, models=models,
                          scores=scores, answers=answers if any(a is not None for a in answers) else None,
                          name=name, meta={"format": "scores_json", "source": str(p)})


def from_records(items: list[dict], *, file: str, name: str, split: str | None,
                 opts: LoadOptions) -> RoutingDataset:
    """{question, scores} items already in memory (e.g. from a hub dataset); `split` None -> prompt hash."""
    if not items:
        raise DataError("no rows", file=file)
    ids, prompts, cats, answers, sc = _item_rows(items, file=file, name=name, id_prefix=name)
    models = list(sc)
    return RoutingDataset(
        ids=ids, prompts=prompts, categories=cats,
        splits=[split] * len(ids) if split else assign_splits(prompts, seed=opts.seed,
                                                              fractions=opts.split_fractions),
        models=models, scores=np.column_stack([sc[m] for m in models]),
        answers=answers if any(a is not None for a in answers) else None,
        name=name, meta={"format": "scores_json", "source": file})
