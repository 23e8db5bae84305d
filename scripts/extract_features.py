"""Compute TRINITY coordinator features on a fast machine; import them into another machine's cache.

Coordinator passes are the scarce resource on CPU (~250 tokens/s for SmolLM2-135M; a 6,000-query
routing set is ~25 min per extraction), and a GPU does the same in seconds. This script runs the
`trinity.coordinator.Coordinator` code itself, one pass for every layer and pooling asked for
(`precompute_views`) and one file per view, so the features are the ones a
checkpoint trained on them will see when it later runs the coordinator locally:

    # on the GPU box: routing prompts as `user: <prompt>`, hidden states of several layers
    python scripts/extract_features.py extract --data ../shared/data/llmrouter --split train \
        --coordinator smollm2 --layers -1,12,20 --device cuda --out feats/
    # here: seed the feature cache (the coordinator's fingerprint and settings are checked)
    python scripts/extract_features.py import feats/smollm2-layer12.npz

Each file holds `sha` (sha256 of the rendered text, the cache key), `feats` (n, d) and `identity`
(the coordinator identity as JSON: model, fingerprint, layer, position, max_tokens, truncation).
`--half` stores float16 (half the bytes; |error| ~ 1e-3 of each value), which the import widens
back to float32.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np


def _prompts(spec: str, split: str | None) -> list[str]:
    from routers.data import load_dataset
    ds = load_dataset(spec)
    if split is not None:
        if split not in ds.splits:
            raise SystemExit(f"extract_features: {spec} has no {split!r} split (has: {', '.join(ds.splits)})")
        ds = ds.split(split)
    return list(ds.prompts)


def extract(args) -> dict:
    import itertools

    import torch

    from trinity.coordinator import Coordinator, precompute_views
    from trinity.data import route_texts
    texts = route_texts(_prompts(args.data, args.split))
    sha = np.array([hashlib.sha256(t.encode()).hexdigest() for t in texts])
    layers = [int(x) for x in args.layers.split(",")]
    poolings = args.poolings.split(",")
    kw = dict(position=args.position, max_tokens=args.max_tokens, batch_size=args.batch, device=args.device,
              dtype=args.dtype, truncation_side=args.truncation_side, disk_cache=False)
    base = Coordinator(args.coordinator, layer=layers[0], pooling=poolings[0], **kw)
    coords = [base if (layer, pool) == (layers[0], poolings[0]) else
              Coordinator.from_model(base.model, base.tokenizer, base.name, layer=layer, pooling=pool, **kw)
              for layer, pool in itertools.product(layers, poolings)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(args.coordinator).stem if "/" in args.coordinator else args.coordinator
    t0 = time.perf_counter()
    precompute_views(coords, texts, progress=True)  # one pass for every layer and pooling
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    summary = {"texts": len(texts), "device": args.device, "dtype": args.dtype, "seconds": dt,
               "tokens": int(sum(base.count_tokens(texts))), "files": []}
    for coord in coords:
        F = coord.features(texts).numpy()
        f = out / f"{stem}-layer{coord.layer}{'' if coord.pooling == 'token' else '-' + coord.pooling}.npz"
        np.savez(f, sha=sha, feats=F.astype(np.float16 if args.half else np.float32),
                 identity=np.array(json.dumps(coord.identity())))
        summary["files"].append({"file": f.name, "layer": coord.layer, "pooling": coord.pooling,
                                 "shape": list(F.shape)})
    print(f"{len(texts)} texts, {len(coords)} views in {dt:.1f} s -> {out}")
    (out / "extract_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def import_file(path, *, device: str = "cpu", coordinator=None) -> int:
    """Seed the local feature cache from one extracted file; refuses features of another model,
    layer, position, token limit or truncation. Returns how many features were new."""
    from routers.errors import CheckpointError
    from trinity.coordinator import Coordinator
    z = np.load(path, allow_pickle=False)
    for k in ("sha", "feats", "identity"):
        if k not in z.files:
            raise CheckpointError(f"{path}: not an extracted-features file (no {k!r})")
    ident = json.loads(str(z["identity"]))
    if coordinator is None:
        coordinator = Coordinator(ident["model"], layer=ident["layer"], position=ident["position"],
                                  pooling=ident.get("pooling", "token"),
                                  max_tokens=ident["max_tokens"], truncation_side=ident["truncation_side"],
                                  device=device)
    have = coordinator.identity()
    ident.setdefault("pooling", "token")  # files from before pooling existed
    for k in ("fingerprint", "hidden_size", "layer", "position", "pooling", "max_tokens", "truncation_side"):
        if have.get(k) != ident.get(k):
            raise CheckpointError(f"{path}: extracted with {k} {ident.get(k)!r}, this coordinator has "
                                  f"{have.get(k)!r}; these features belong to another coordinator")
    return coordinator.import_features(z["sha"].tolist(), z["feats"].astype(np.float32))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("extract", help="compute features of a routing dataset's prompts")
    e.add_argument("--data", required=True, help="routing dataset spec (routers.data.load_dataset)")
    e.add_argument("--split", default=None, help="only this split (train/test); default: every prompt")
    e.add_argument("--coordinator", default="smollm2")
    e.add_argument("--layers", default="-1", help="comma-separated hidden-state indices (one file each)")
    e.add_argument("--poolings", default="token", help="comma-separated: token (at --position), mean")
    e.add_argument("--position", type=int, default=-2)
    e.add_argument("--max-tokens", type=int, default=128)
    e.add_argument("--truncation-side", default="right")
    e.add_argument("--batch", type=int, default=64)
    e.add_argument("--device", default="cuda")
    e.add_argument("--dtype", default="float32")
    e.add_argument("--half", action="store_true", help="store float16")
    e.add_argument("--out", required=True)
    i = sub.add_parser("import", help="seed this machine's feature cache from extracted files")
    i.add_argument("files", nargs="+")
    args = ap.parse_args(argv)
    if args.cmd == "extract":
        extract(args)
    else:
        for f in args.files:
            print(f"{f}: {import_file(f)} new features cached")
    return 0


if __name__ == "__main__":
    sys.exit(main())
