"""One short TRINITY check for whenever a CUDA machine is at hand; writes JSON.

Measures, on a randomly initialized Qwen3-0.6B-shaped coordinator built from its config (no
download; random weights cost the same as trained ones):
  1. coordinator feature throughput (tokens/s, bf16, batched, penultimate token);
  2. one SVF-mode sep-CMA-ES generation: per candidate, apply SVF offsets to the 7 projections of
     block -2 plus the (tied) embeddings, recompute features of Q queries, score a linear head;
  3. one head-only generation (32 candidates x 5,000 cached features, 16 sampled repeats);
  4. served decision latency (MicroBatcher over the coordinator, concurrent requests);
  5. a checkpoint saved on CPU restored by `trinity.load` on CUDA in fp32 and bf16 (decision
     agreement with CPU fp32), on a 4-block model of Qwen3-0.6B's width and vocabulary.
The tokenizer is a byte-level BPE built in place (one token per byte), so nothing is downloaded.

    python scripts/gpu_check.py [--out outputs/gpu_check.json]
    python scripts/gpu_check.py --allow-cpu --small      # the same code paths, tiny sizes, on CPU

Without CUDA (and without --allow-cpu) it prints a message, writes {"cuda": false, ...} and exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

QWEN3_06B = dict(vocab_size=151_936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                 num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40_960,
                 rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True)
SMALL = dict(QWEN3_06B, vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, head_dim=16)


def byte_tokenizer():
    """A real byte-level BPE tokenizer without merges (one token per byte), built offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {"<pad>": 0, "<s>": 1}
    vocab.update({ch: i + 2 for i, ch in enumerate(sorted(alphabet))})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>")


def texts(n: int, chars: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    words = ["route", "model", "question", "answer", "prove", "integral", "python", "verify", "cost",
             "the", "of", "and", "which", "compute", "explain", "list", "value", "given", "find"]
    out = []
    for i in range(n):
        s = f"user: [{i}] " + " ".join(rng.choice(words, size=chars // 5))
        out.append(s[:chars])
    return out


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def served_decision_latency(coordinator, head, workers: list[str], prompts: list[str], *,
                            concurrency: int = 16, max_batch: int = 16, max_wait_ms: float = 5.0) -> dict:
    """Decision latency of a single-turn TRINITY router served the way `baton serve --device cuda`
    does: `coordinator` behind a `MicroBatcher`, `concurrency` requests in flight, instant workers."""
    import asyncio

    from routers.serve.batcher import MicroBatcher, measure_decision_latency
    from trinity.checkpoint import TrinityModel
    from trinity.config import ProtocolConfig
    from trinity.serving import TrinityServingRouter
    batcher = MicroBatcher(coordinator, max_batch=max_batch, max_wait_ms=max_wait_ms)
    model = TrinityModel(coordinator=batcher, head=head, workers=list(workers), protocol=ProtocolConfig(max_turns=1))
    res = asyncio.run(measure_decision_latency(TrinityServingRouter(model, name="trinity"), prompts,
                                               concurrency=concurrency))
    return {**res, "batches": batcher.batches, "texts": batcher.texts, "max_batch": max_batch,
            "max_wait_ms": max_wait_ms}


def checkpoint_round_trip(shape: dict, device: str, n_workers: int, n_texts: int = 64) -> dict:
    """Save a random Qwen3-shaped coordinator as an HF folder and a TRINITY checkpoint (SVF offsets
    and head) on CPU in fp32, restore it with `trinity.load` on `device` in fp32 and bf16, and
    compare features and argmax decisions with the CPU original."""
    import tempfile
    import os
    with tempfile.TemporaryDirectory(prefix="gpu_check_ck.") as d:
        prev = os.environ.get("BATON_CACHE")
        os.environ["BATON_CACHE"] = str(Path(d) / "cache")  # no stale features from an earlier run
        try:
            return _round_trip(Path(d), shape, device, n_workers, n_texts)
        finally:
            if prev is None:
                os.environ.pop("BATON_CACHE")
            else:
                os.environ["BATON_CACHE"] = prev


def _round_trip(tmp: Path, shape: dict, device: str, n_workers: int, n_texts: int) -> dict:
    import trinity
    from transformers import AutoModelForCausalLM, Qwen3Config
    from trinity.checkpoint import save
    from trinity.config import ProtocolConfig
    from trinity.coordinator import Coordinator
    from trinity.heads import make_head
    torch.manual_seed(1)
    AutoModelForCausalLM.from_config(Qwen3Config(**shape), dtype=torch.float32).save_pretrained(tmp / "coordinator")
    byte_tokenizer().save_pretrained(tmp / "coordinator")
    cpu = Coordinator(str(tmp / "coordinator"), max_tokens=64, batch_size=16, device="cpu", disk_cache=False)
    svf = cpu.enable_svf()
    svf.apply(np.random.default_rng(7).uniform(-0.1, 0.1, svf.n_params))
    head = make_head("selection", n_workers, cpu.d)
    head.set_flat(np.random.default_rng(8).standard_normal(head.n_params) * 0.05)
    workers = [f"w{j}" for j in range(n_workers)]
    save(tmp / "ck", coordinator=cpu, head=head, workers=workers, protocol=ProtocolConfig(max_turns=1), svf=svf)
    qs = texts(n_texts, 64, seed=11)
    svf.restore()
    F0_plain = cpu.features(qs).numpy()       # the forward pass alone (no SVF) for comparison
    svf.apply(np.random.default_rng(7).uniform(-0.1, 0.1, svf.n_params))
    F0 = cpu.features(qs).numpy()
    d0 = head.split(head.logits(torch.from_numpy(F0)))[0].argmax(1)
    res: dict = {"texts": n_texts, "loads": {}}
    for dtype in ("float32", "bfloat16") if device != "cpu" else ("float32",):
        t0 = time.perf_counter()
        m = trinity.load(tmp / "ck", device=device, dtype=dtype)
        load_s = time.perf_counter() - t0
        F = m.coordinator.features(qs).numpy()
        d = m.agent_logits(qs).argmax(1)
        svf_equal = bool(np.array_equal(m.coordinator.svf.offsets, svf.offsets))
        m.coordinator.svf.restore()
        F_plain = m.coordinator.features(qs).numpy()
        res["loads"][f"{device}-{dtype}"] = {
            "load_s": load_s, "max_abs_feature_diff": float(np.abs(F - F0).max()),
            "max_abs_feature_diff_no_svf": float(np.abs(F_plain - F0_plain).max()),
            "feature_scale": float(np.abs(F0).mean()), "agreement": float((d == d0).mean()),
            "head_equal": bool(np.array_equal(m.head.get_flat(), head.get_flat())),
            "svf_equal": svf_equal}
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="outputs/gpu_check.json")
    ap.add_argument("--allow-cpu", action="store_true", help="run on CPU when CUDA is absent (tests)")
    ap.add_argument("--small", action="store_true", help="tiny Qwen3-shaped model and sizes (tests)")
    ap.add_argument("--tokens", type=int, default=128, help="tokens per text")
    ap.add_argument("--texts", type=int, default=1024, help="texts for the throughput measurement")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--svf-queries", type=int, default=64, help="queries per candidate in the SVF generation")
    ap.add_argument("--workers", type=int, default=7)
    ap.add_argument("--served-tokens", type=int, default=512, help="prompt tokens for the served decision latency")
    ap.add_argument("--served-requests", type=int, default=64)
    ap.add_argument("--only", default="1,2,3,4,5", help="comma-separated sections to run (see above)")
    args = ap.parse_args(argv)
    only = {int(x) for x in args.only.split(",")}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    cuda = torch.cuda.is_available()
    if not cuda and not args.allow_cpu:
        msg = "gpu_check: no CUDA device here; nothing measured (run it on a GPU machine, or --allow-cpu)"
        print(msg)
        out.write_text(json.dumps({"cuda": False, "message": msg}, indent=2))
        return 0
    if args.small:
        args.texts, args.svf_queries, args.tokens, args.batch = min(args.texts, 32), min(args.svf_queries, 8), min(args.tokens, 32), min(args.batch, 16)
        args.served_tokens, args.served_requests = min(args.served_tokens, 32), min(args.served_requests, 16)
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32

    import cma
    from transformers import AutoModelForCausalLM, Qwen3Config

    from trinity.config import FitnessConfig
    from trinity.coordinator import Coordinator
    from trinity.fitness import SelectionObjective
    from trinity.heads import make_head

    shape = SMALL if args.small else QWEN3_06B
    L = args.workers
    workers = [f"w{j}" for j in range(L)]
    result: dict = {"cuda": cuda, "device": torch.cuda.get_device_name(0) if cuda else "cpu",
                    "dtype": str(dtype).replace("torch.", ""), "model_shape": shape, "torch": torch.__version__,
                    "sections": sorted(only)}
    if only & {1, 2, 3, 4}:
        torch.manual_seed(0)
        t0 = time.perf_counter()
        model = AutoModelForCausalLM.from_config(Qwen3Config(**shape), dtype=dtype).to(device).eval()
        sync(device)
        result["build_s"] = time.perf_counter() - t0
        coord = Coordinator.from_model(model, byte_tokenizer(), "qwen3-0.6b-random" + ("-small" if args.small else ""),
                                       max_tokens=args.tokens, batch_size=args.batch, device=device,
                                       dtype="bfloat16" if cuda else "float32", disk_cache=False)
        head = make_head("linear", L, coord.d)

    if 1 in only:
        # 1. feature throughput (warm up once, then a timed pass over fresh texts: no cache hits)
        coord.features(texts(args.batch, args.tokens, seed=99))
        batch = texts(args.texts, args.tokens, seed=0)
        ntok = sum(coord.count_tokens(batch))
        sync(device)
        t0 = time.perf_counter()
        coord.features(batch)
        sync(device)
        dt = time.perf_counter() - t0
        result["features"] = {"texts": len(batch), "tokens": ntok, "seconds": dt, "tokens_per_s": ntok / dt,
                              "batch": args.batch}
        print(f"features: {ntok / dt:,.0f} tokens/s ({len(batch)} texts x ~{ntok // len(batch)} tokens, {dt:.2f} s)")

    rng = np.random.default_rng(0)
    if 2 in only:
        # 2. one SVF-mode sep-CMA-ES generation
        t0 = time.perf_counter()
        svf = coord.enable_svf()
        sync(device)
        svd_s = time.perf_counter() - t0
        n = svf.n_params + head.n_params
        q_texts = texts(args.svf_queries, args.tokens, seed=1)
        scores = (rng.random((len(q_texts), L)) < 0.5).astype(np.float64)
        es = cma.CMAEvolutionStrategy(np.zeros(n), 0.03, {"CMA_diagonal": True, "seed": 1, "verbose": -9})
        t0 = time.perf_counter()
        X = np.asarray(es.ask())
        fit = []
        for x in X:
            svf.apply(x[:svf.n_params])
            F = coord.features(q_texts)
            logits = head.population_logits(x[None, svf.n_params:], F)[0, :, :L]
            fit.append(-float(scores[np.arange(len(q_texts)), logits.argmax(1)].mean()))
        es.tell(list(X), fit)
        sync(device)
        gen_s = time.perf_counter() - t0
        svf.restore()
        result["svf_generation"] = {"n_params": n, "svf_params": svf.n_params, "head_params": head.n_params,
                                    "popsize": len(X), "queries_per_candidate": len(q_texts), "svd_s": svd_s,
                                    "seconds": gen_s, "targets": svf.names}
        print(f"SVF generation: {len(X)} candidates x {len(q_texts)} queries, n={n}: {gen_s:.2f} s "
              f"(SVDs once, float64 on CPU: {svd_s:.2f} s)")

    if 3 in only:
        # 3. head-only generation on cached features (the paper-scale d)
        N, P = (500 if args.small else 5000), 32
        feats = np.random.default_rng(2).standard_normal((N, coord.d)).astype(np.float32)
        obj = SelectionObjective(head, feats, (rng.random((N, L)) < 0.5).astype(float), workers,
                                 fitness=FitnessConfig(), repeats=16, seed=0)
        Xh = np.random.default_rng(3).standard_normal((P, head.n_params)) * 0.03
        obj.evaluate(Xh[:2], 0)
        t0 = time.perf_counter()
        obj.evaluate(Xh, 1)
        head_s = time.perf_counter() - t0
        result["head_generation"] = {"candidates": P, "queries": N, "repeats": 16, "seconds": head_s}
        print(f"head-only generation: {P} candidates x {N} queries: {head_s:.3f} s")

    if 4 in only:
        # 4. served decision latency: the router as `baton serve` runs it (MicroBatcher over the
        #    coordinator, concurrent requests sharing forward passes, instant workers)
        result["served_decision"] = served_decision_latency(
            Coordinator.from_model(model, byte_tokenizer(), coord.name, max_tokens=args.served_tokens,
                                   batch_size=args.batch, device=device, dtype="bfloat16" if cuda else "float32",
                                   disk_cache=False),
            head, workers, texts(args.served_requests, args.served_tokens, seed=5))
        sd = result["served_decision"]
        print(f"served decision ({args.served_tokens}-token prompts, {sd['concurrency']} in flight): "
              f"p50 {sd['p50_s'] * 1e3:.1f} ms, p99 {sd['p99_s'] * 1e3:.1f} ms, {sd['batches']} forward calls")

    if 5 in only:
        # 5. a checkpoint saved on CPU (fp32) restored by `trinity.load(device=...)` on this device,
        #    in fp32 and bf16: same head, same SVF offsets, and how often decisions agree with CPU fp32
        result["checkpoint_round_trip"] = checkpoint_round_trip(
            SMALL if args.small else dict(shape, num_hidden_layers=4), device, L)
        rt = result["checkpoint_round_trip"]
        print("checkpoint round trip: " + ", ".join(
            f"{k} agreement {v['agreement']:.3f} (max |dfeat| {v['max_abs_feature_diff']:.2e}, "
            f"without SVF {v['max_abs_feature_diff_no_svf']:.2e})" for k, v in rt["loads"].items()))
    if cuda:
        result["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
