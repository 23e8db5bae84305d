"""`baton`: one command line over the same functions the scripts call.

Sub-commands are bound to "module:function" strings and imported only when run, so `baton --help`
stays fast and `routers` never imports `trinity`/`conductor` at module level.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from routers.errors import BatonError


def _target(spec: str):
    mod, fn = spec.split(":")
    return getattr(importlib.import_module(mod), fn)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="baton", description="Train, evaluate and serve learned LLM routers.")
    sub = p.add_subparsers(dest="command", required=True)

    # baton demo
    d = sub.add_parser("demo", help="run the main job on the embedded default (no files needed)")
    d.add_argument("--out", default="outputs/demo", help="where checkpoints, JSON and plots go")
    d.add_argument("--quick", action="store_true", help="smaller sizes (used by the tests)")
    d.set_defaults(_fn="routers.demo:main")

    # baton eval
    e = sub.add_parser("eval", help="evaluate routers on a routing dataset (test split)")
    e.add_argument("--data", required=True, help="dataset spec: file, folder, hub id, or 'embedded'")
    e.add_argument("--train", default=None, help="training dataset spec (default: the train split of --data)")
    e.add_argument("--format", default=None, help="adapter name instead of auto-detection")
    e.add_argument("--routers", default="random,best-single,knn,mlp,mf,sw-elo,cascade",
                   help="comma list of router names or name=CHECKPOINT_DIR")
    e.add_argument("--prices", default=None, help="price table JSON (LiteLLM/OpenRouter/LLMRouter style)")
    e.add_argument("--encoder", default=None, help="HF encoder for query embeddings (default: packaged MiniLM)")
    e.add_argument("--json", default=None, help="write metrics JSON here")
    e.add_argument("--plot", default=None, help="write the cost-quality plot here (PNG)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    e.add_argument("--trust-pickle", action="store_true", help="allow reading pickle files (runs code!)")
    e.add_argument("--pool", default=None,
                   help="pool YAML (or shipped name) to score episode routers (multi-turn TRINITY, Conductor) on")
    e.add_argument("--unpriced-cost", type=float, default=None,
                   help="dollars per call to assume for models without a price (default: their cost is unknown)")
    e.add_argument("--models", default=None, help="comma list of model columns to read (others are metadata)")
    e.add_argument("--allow-overlap", action="store_true",
                   help="score even if training prompts also appear in the test data (leakage)")
    e.add_argument("--drop-overlap", action="store_true",
                   help="leave out test questions whose prompt also appears in the training data")
    e.set_defaults(_fn="routers.evaluate:cli_eval")

    # baton pool check
    pl = sub.add_parser("pool", help="worker pools")
    psub = pl.add_subparsers(dest="pool_command", required=True)
    pc = psub.add_parser("check", help="call each worker once; print reachability, latency, tokens, price")
    pc.add_argument("pool_file")
    pc.add_argument("--prompt", default="Reply with the single word: pong")
    pc.set_defaults(_fn="routers.pool.check:cli_check")

    # baton record
    r = sub.add_parser("record", help="run a task suite against a pool and write a routing dataset")
    r.add_argument("--pool", required=True, help="pool YAML")
    r.add_argument("--tasks", required=True, help="comma list of task suites, e.g. mmlu,gsm8k (name[:limit])")
    r.add_argument("--out", required=True, help="output JSONL (native format); resumable")
    r.add_argument("--limit", type=int, default=None, help="items per task")
    r.add_argument("--concurrency", type=int, default=8)
    r.add_argument("--cache", default=None, help="SQLite response cache path")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--processes", type=int, default=1,
                   help="recorder processes sharing the calls (one process tops out near 1 ms of CPU per request)")
    r.set_defaults(_fn="routers.record:cli_record")

    # baton train {trinity,conductor}
    t = sub.add_parser("train", help="train a router")
    tsub = t.add_subparsers(dest="router", required=True)
    for name, fn in (("trinity", "trinity.train:cli_train"), ("conductor", "conductor.train:cli_train")):
        tp = tsub.add_parser(name)
        tp.add_argument("--config", required=True, help="YAML config")
        tp.add_argument("--train", default=None, help="training data spec (overrides the config)")
        tp.add_argument("--out", default=None, help="output checkpoint directory")
        tp.add_argument("--resume", action="store_true", help="resume from the last state in --out")
        tp.add_argument("--overwrite", action="store_true", help="replace the checkpoint already in --out")
        if name == "trinity":
            tp.add_argument("--estimate", action="store_true",
                            help="dry run: print the worker calls and projected cost, call nothing")
        tp.add_argument("overrides", nargs="*", help="dotted key=value overrides of config keys")
        tp.set_defaults(_fn="routers.registry:cli_train", _train_fn=fn)  # checks --config/--out, then fn

    # baton serve
    s = sub.add_parser("serve", help="serve routers behind an OpenAI-compatible API")
    s.add_argument("--router", action="append", required=True, help="checkpoint dir or baseline name (repeatable)")
    s.add_argument("--pool", default=None, help="pool YAML (optional when --router is a `baton export` directory)")
    s.add_argument("--device", default="cpu")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--log", default=None, help="decision log JSONL (default: ./logs/decisions.jsonl)")
    s.add_argument("--keys", default=None, help="API keys YAML/JSON mapping key -> tenant")
    s.add_argument("--rules", default=None, help="compliance rules YAML")
    s.add_argument("--config", default=None, help="serve config YAML (fallback policy, redaction, limits)")
    s.set_defaults(_fn="routers.serve.app:cli_serve")

    # baton export
    x = sub.add_parser("export", help="write a self-contained servable directory from a checkpoint")
    x.add_argument("checkpoint")
    x.add_argument("--out", required=True)
    x.add_argument("--pool", default=None, help="pool YAML the router was trained for (if not in the checkpoint)")
    x.add_argument("--include-coordinator", action="store_true",
                   help="copy the TRINITY coordinator's weights in, so the export needs neither its package nor the Hub")
    x.set_defaults(_fn="routers.serve.export:cli_export")

    # baton logs summarize
    lg = sub.add_parser("logs", help="decision logs")
    lsub = lg.add_subparsers(dest="logs_command", required=True)
    ls = lsub.add_parser("summarize", help="per-worker share, cost, latency p50/p95, fallback rate")
    ls.add_argument("log")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(_fn="routers.serve.logs:cli_summarize")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rc = _target(args._fn)(args)
    except BatonError as e:
        print(f"baton: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("baton: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
