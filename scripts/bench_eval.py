"""Benchmark the baseline routers on the shared llmrouter data (and RouteLLM's MMLU and GSM8K).

Times each baseline's fit and route (median of --repeats runs), embedding time separately (cold:
as measured when the cache was filled; warm: cache hits), and reports test accuracy at lam=0
against the best single model and the oracle. Writes JSON (default outputs/bench_eval.json).

    python scripts/bench_eval.py [--shared /work/shared] [--repeats 3] [--out outputs/bench_eval.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from routers.data.schema import RoutingDataset
from routers.errors import DataError

ROUTERS = ["random", "best-single", "oracle", "knn", "mlp", "mf", "sw-elo", "cascade"]


def _load_shared(folder: Path, prices: dict | Path):
    """routers.data.load_dataset + apply_prices; None where that fails (the local readers below
    then stand in, and the reason is printed)."""
    try:
        from routers.data import apply_prices, load_dataset, load_prices
        return apply_prices(load_dataset(str(folder)), load_prices(prices if isinstance(prices, dict) else str(prices)))
    except Exception as e:  # noqa: BLE001 - fall back to the local reader, say why
        print(f"routers.data could not load {folder} ({e}); using the local reader", file=sys.stderr)
        return None


def subset_idx(n: int, limit: int | None, seed: int = 0) -> np.ndarray:
    """The seeded MMLU subset (the draw after the 20% test-split draw of `load_routellm_mmlu`, so
    both loaders keep the same questions and share cached embeddings)."""
    rng = np.random.default_rng(seed)
    rng.random(n)
    return np.sort(rng.permutation(n)[:limit]) if limit else np.arange(n)


MMLU_PRICES = {"gpt-4-1106-preview": {"input_price": 10.0, "output_price": 30.0},
               "mistralai/Mixtral-8x7B-Instruct-v0.1": {"input_price": 0.24, "output_price": 0.24}}


def load_llmrouter(folder: Path) -> RoutingDataset:
    """train.json + test.json ({question, scores}) with costs from default_llm.json prices.

    The files carry no token counts, so cost is an estimate: prompt tokens ~ chars/4 at the input
    price plus 256 output tokens at the output price (used only for the lam sweep)."""
    prices = json.loads((folder / "default_llm.json").read_text())
    ids, prompts, splits, rows = [], [], [], []
    models: list[str] | None = None
    for split in ("train", "test"):
        f = folder / f"{split}.json"
        for i, rec in enumerate(json.loads(f.read_text())):
            if not isinstance(rec, dict) or "question" not in rec or "scores" not in rec:
                raise DataError("expected an object with 'question' and 'scores'", file=str(f), row=i)
            if models is None:
                models = list(rec["scores"])
            ids.append(f"{split}-{i}")
            prompts.append(rec["question"])
            splits.append(split)
            rows.append([float(rec["scores"].get(m, np.nan)) for m in models])
    assert models is not None
    for m in models:
        if m not in prices:
            raise DataError(f"no price for model {m!r}", file=str(folder / "default_llm.json"))
    in_tok = np.array([len(p) / 4 for p in prompts])[:, None]
    pin = np.array([prices[m]["input_price"] for m in models])[None, :]
    pout = np.array([prices[m]["output_price"] for m in models])[None, :]
    costs = (in_tok * pin + 256 * pout) / 1e6
    return RoutingDataset(ids=ids, prompts=prompts, categories=["llmrouter"] * len(ids), splits=splits,
                          models=models, scores=np.array(rows), costs=costs, name="llmrouter")


def load_routellm_mmlu(folder: Path, test_fraction: float = 0.2, seed: int = 0,
                       limit: int | None = None) -> RoutingDataset:
    """57 per-subject CSVs (prompt, True/False per model); a seeded random 20% is the test split;
    `limit` keeps a seeded random subset of that many questions (embedding all 14,042 on a busy
    2-core CPU takes tens of minutes).
    Costs: public prices (gpt-4-1106-preview $10/$30, Mixtral $0.24/$0.24 per M), prompt chars/4
    input tokens and 1 output token (MMLU answers are a letter)."""
    price = {"mistralai/Mixtral-8x7B-Instruct-v0.1": (0.24, 0.24), "gpt-4-1106-preview": (10.0, 30.0)}
    prompts, cats, rows = [], [], []
    models: list[str] | None = None
    for f in sorted(folder.glob("mmlu_*.csv")):
        with f.open(newline="") as fh:
            for i, rec in enumerate(csv.DictReader(fh)):
                if models is None:
                    models = [c for c in rec if c != "prompt"]
                try:
                    rows.append([{"True": 1.0, "False": 0.0}[rec[m]] for m in models])
                except KeyError as e:
                    raise DataError(f"expected True/False, got {e}", file=str(f), row=i + 2) from None
                prompts.append(rec["prompt"])
                cats.append(f.stem[len("mmlu_"):])
    assert models is not None
    rng = np.random.default_rng(seed)
    splits = np.where(rng.random(len(prompts)) < test_fraction, "test", "train").tolist()
    keep = subset_idx(len(prompts), limit, seed)
    prompts, cats, splits = [prompts[i] for i in keep], [cats[i] for i in keep], [splits[i] for i in keep]
    rows = [rows[i] for i in keep]
    in_tok = np.array([len(p) / 4 for p in prompts])[:, None]
    costs = (in_tok * np.array([price[m][0] for m in models])[None] + np.array([price[m][1] for m in models])[None]) / 1e6
    return RoutingDataset(ids=[f"mmlu-{i}" for i in range(len(prompts))], prompts=prompts, categories=cats,
                          splits=splits, models=models, scores=np.array(rows), costs=costs, name="routellm-mmlu")


def shared_datasets(shared: Path, mmlu_limit: int) -> dict[str, RoutingDataset]:
    out = {}
    llm = shared / "data" / "llmrouter"
    if llm.is_dir():
        out["llmrouter"] = _load_shared(llm, llm / "default_llm.json") or load_llmrouter(llm)
    mmlu = shared / "data" / "routellm" / "mmlu"
    if mmlu.is_dir():
        ds = _load_shared(mmlu, MMLU_PRICES)
        out["routellm-mmlu"] = ds.subset(subset_idx(len(ds), mmlu_limit)) if ds is not None else \
            load_routellm_mmlu(mmlu, limit=mmlu_limit)
    gsm = shared / "data" / "routellm" / "gsm8k"
    if gsm.is_dir():  # the one set with recorded responses: the cascade's answer scorer reads them
        ds = _load_shared(gsm, MMLU_PRICES)
        if ds is not None:
            out["routellm-gsm8k"] = ds
    return out


def _median_time(fn, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, result


def bench_dataset(ds: RoutingDataset, routers: list[str], repeats: int, encoder: str | None) -> dict:
    from routers.embed import get_encoder
    from routers.registry import baseline_class

    train, test = ds.split("train"), ds.split("test")
    val = ds.split("validation")
    val = val if len(val) else None
    S, C = test.scores, test.cost_matrix()
    enc = get_encoder(encoder)
    before = enc.computed
    t0 = time.perf_counter()
    enc.encode(ds.prompts)
    first_s, computed = time.perf_counter() - t0, enc.computed - before
    warm_s, _, _ = _median_time(lambda: enc.encode(ds.prompts, progress=False), repeats)
    single = np.nan_to_num(S).mean(0)
    out = {"dataset": ds.describe(), "models": ds.models,
           "best_single": {"model": ds.models[int(np.argmax(single))], "accuracy": float(single.max())},
           "oracle_accuracy": float(np.nan_to_num(S).max(1).mean()),
           "embedding": {"encoder": enc.id, "texts": len(ds), "first_call_s": first_s,
                         "computed_in_first_call": int(computed), "cached_call_median_s": warm_s},
           "routers": {}}
    for name in routers:
        cls = baseline_class(name)
        from routers.baselines.embedding import EmbeddingRouter
        kw = {"encoder": encoder} if issubclass(cls, EmbeddingRouter) else {}

        def fit():
            r = cls(**kw)
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # cascade's "no responses" warning, once per repeat
                r.fit(train, val)
            if hasattr(r, "fit_oracle"):
                r.fit_oracle(test)
            if hasattr(r, "attach_responses"):
                r.attach_responses(test)
            return r

        fit_s, fit_all, r = _median_time(fit, repeats)
        route_s, route_all, choice = _median_time(lambda: r.route(test.prompts, 0.0), repeats)
        acc = float(np.nan_to_num(S[np.arange(len(choice)), choice]).mean())
        out["routers"][name] = {
            "accuracy_lam0": acc, "beats_best_single": acc > out["best_single"]["accuracy"],
            "cost_per_query_lam0": float(r.realized_cost(choice, C).mean()),
            "share": {m: float((choice == j).mean()) for j, m in enumerate(ds.models)},
            "fit_median_s": fit_s, "fit_runs_s": fit_all, "route_median_s": route_s, "route_runs_s": route_all,
            "route_per_query_ms": 1e3 * route_s / max(len(test), 1),
            "params": {k: v for k, v in r.params.items() if k not in ("threshold_table", "models", "rules")},
        }
        print(f"{ds.name:14s} {name:12s} acc {acc:.4f}  fit {fit_s:7.2f}s  route {route_s:6.3f}s", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    ap.add_argument("--routers", default=",".join(ROUTERS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--encoder", default=None, help="encoder name (default: packaged MiniLM)")
    ap.add_argument("--mmlu-limit", type=int, default=4000, help="MMLU questions kept (0: all 14,042)")
    ap.add_argument("--datasets", default="llmrouter,routellm-mmlu,routellm-gsm8k")
    ap.add_argument("--out", default="outputs/bench_eval.json")
    a = ap.parse_args(argv)
    data = shared_datasets(Path(a.shared), a.mmlu_limit or None)
    wanted = [d for d in a.datasets.split(",") if d]
    if not data:
        print(f"no shared data under {a.shared}; nothing to benchmark", file=sys.stderr)
        return 1
    result = {"repeats": a.repeats, "datasets": {}}
    for name in wanted:
        if name in data:
            result["datasets"][name] = bench_dataset(data[name], a.routers.split(","), a.repeats, a.encoder)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
