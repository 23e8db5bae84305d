"""The coordinator a TRINITY checkpoint names: recorded with its source (package and version, local
path, or Hub id and revision) and a sha256 over all of its weights (streamed, cached); a coordinator
whose weights differ is refused even where the sampled fingerprint agrees (a fine-tune that keeps
the embeddings); `baton export --include-coordinator` bundles the weights so the export loads
without the package."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from routers.errors import CheckpointError

WORKERS = ["mistral-nemo", "llama-3.1-8b", "qwen-2.5-7b", "mistral-small-3.1", "gemma-3-27b", "gpt-4o"]


def _save(coord, path):
    from trinity.checkpoint import save
    from trinity.config import ProtocolConfig
    from trinity.heads import make_head
    head = make_head("selection", len(WORKERS), coord.d, 0)
    head.set_flat(np.random.default_rng(2).standard_normal(head.n_params))
    return save(path, coordinator=coord, head=head, workers=WORKERS, protocol=ProtocolConfig(),
                training={"data": {"pool": "simulated"}})


@pytest.fixture(scope="module")
def tiny():
    from trinity.coordinator import Coordinator
    return Coordinator("tiny", batch_size=8)


def test_source_and_sha256_recorded(tiny, tmp_path):
    import hashlib
    from routers.model_files import PACKAGED, packaged
    cfg = json.loads((_save(tiny, tmp_path / "ck") / "config.json").read_text())
    src = cfg["coordinator"]["source"]
    gguf = packaged(*PACKAGED["tiny"])
    assert src["kind"] == "package" and src["package"] == "tinycoder" and src["version"] and src["path"] == str(gguf)
    file_sha = hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert src["weights_sha256"] == hashlib.sha256(f"{gguf.name}:{file_sha}\n".encode()).hexdigest()


def test_a_finetune_with_the_same_embeddings_is_refused(tiny, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from routers.model_files import resolve_model
    from trinity.checkpoint import load
    from trinity.coordinator import Coordinator
    base = tmp_path / "base"
    shutil.copytree(resolve_model("tiny"), base)
    ck = _save(Coordinator(str(base)), tmp_path / "ck")
    assert json.loads((ck / "config.json").read_text())["coordinator"]["source"]["kind"] == "local"
    tuned = tmp_path / "tuned"
    shutil.copytree(base, tuned)
    (f,) = tuned.glob("*.safetensors")
    sd = load_file(str(f))
    k = next(k for k in sd if "layers.0" in k and k.endswith("weight"))
    sd[k] = sd[k] + 0.01                                     # fine-tuned; embeddings untouched
    save_file(sd, str(f), metadata={"format": "pt"})
    other = Coordinator(str(tuned))
    assert other.fingerprint == Coordinator(str(base)).fingerprint   # the sampled fingerprint cannot tell
    with pytest.raises(CheckpointError, match="weights differ from the ones it was trained with"):
        load(ck, coordinator=other)
    assert load(ck).coordinator.fingerprint == other.fingerprint     # its own weights load


def test_export_include_coordinator_loads_without_the_package(tiny, tmp_path, monkeypatch):
    import routers.model_files
    from routers.cli import main
    from routers.errors import ConfigError
    from routers.pool.config import load_pool
    from routers.serve.loading import load_serving_router
    from trinity.checkpoint import load
    ck = _save(tiny, tmp_path / "ck")
    out = tmp_path / "ex"
    assert main(["export", str(ck), "--out", str(out), "--pool", "simulated", "--include-coordinator"]) == 0
    assert (out / "coordinator" / "tiny.gguf").is_file()
    src = json.loads((out / "router" / "config.json").read_text())["coordinator"]["source"]
    assert src["kind"] == "bundled" and src["original"]["package"] == "tinycoder"

    texts = ["user: What is the capital of Peru?", "user: 2+2?"]
    want = load(ck, coordinator=tiny).agent_logits(texts)

    def no_package(pkg, rel):
        raise ConfigError(f"model: package {pkg!r} is not installed")
    monkeypatch.setattr(routers.model_files, "packaged", no_package)      # a machine without tinycoder
    monkeypatch.setenv("BATON_CACHE", str(tmp_path / "empty-cache"))       # nor its converted copy
    with pytest.raises(ConfigError, match="not installed"):
        load(ck)
    # equal up to float rounding: `want` may come from features cached by an earlier test that
    # computed these texts in another batch (other left padding), the export computes them afresh
    np.testing.assert_allclose(load(out / "router").agent_logits(texts), want, rtol=1e-5, atol=1e-5)
    assert load_serving_router(str(out), load_pool("simulated")).workers == WORKERS
    g = out / "coordinator" / "tiny.gguf"
    data = bytearray(g.read_bytes())
    data[-3] ^= 0xFF                                                       # one weight byte changed
    g.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="weights differ"):
        load(out / "router")


def test_a_mean_pooled_checkpoint_loads_a_mean_pooled_coordinator_and_refuses_a_token_one(tmp_path):
    """coordinator.pooling is part of what a checkpoint records: loading rebuilds the same view
    (same features), and a coordinator pooling another way is refused, never silently used."""
    from trinity.checkpoint import load
    from trinity.coordinator import Coordinator
    mean = Coordinator("tiny", pooling="mean", batch_size=8)
    ck = _save(mean, tmp_path / "ck")
    assert json.loads((ck / "config.json").read_text())["coordinator"]["pooling"] == "mean"
    model = load(ck)
    texts = ["user: a question of several tokens", "user: hi"]
    assert model.coordinator.pooling == "mean"
    np.testing.assert_allclose(model.coordinator.features(texts).numpy(), mean.features(texts).numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(CheckpointError, match="pooling"):
        load(ck, coordinator=Coordinator("tiny", batch_size=8))
