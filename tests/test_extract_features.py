"""scripts/extract_features.py: features computed on one machine seed another machine's cache,
and only for the same coordinator settings."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import load_script

import numpy as np
import pytest

from routers.errors import CheckpointError

REPO = Path(__file__).resolve().parents[1]


def _script():
    return load_script("extract_features")


def test_extract_then_import_into_a_fresh_cache(tmp_path, monkeypatch):
    from routers.record import embedded_dataset
    from trinity.coordinator import Coordinator
    from trinity.data import route_texts
    ef = _script()
    monkeypatch.setenv("BATON_CACHE", str(tmp_path / "gpu_box"))
    assert ef.main(["extract", "--data", "embedded", "--split", "test", "--coordinator", "tiny", "--layers=-1,1",
                    "--device", "cpu", "--half", "--out", str(tmp_path / "feats")]) == 0
    summary = json.loads((tmp_path / "feats" / "extract_summary.json").read_text())
    assert [f["layer"] for f in summary["files"]] == [-1, 1]
    z = np.load(tmp_path / "feats" / "tiny-layer1.npz")
    prompts = embedded_dataset(0).split("test").prompts
    assert z["feats"].dtype == np.float16 and z["feats"].shape[0] == len(prompts) == len(z["sha"])
    assert json.loads(str(z["identity"]))["layer"] == 1

    monkeypatch.setenv("BATON_CACHE", str(tmp_path / "laptop"))       # another machine's empty cache
    coord = Coordinator("tiny", layer=1)
    assert ef.import_file(tmp_path / "feats" / "tiny-layer1.npz", coordinator=coord) == len(prompts)
    fresh = Coordinator("tiny", layer=1)                                # reads the shards from disk
    assert ef.import_file(tmp_path / "feats" / "tiny-layer1.npz", coordinator=fresh) == 0
    monkeypatch.setattr(fresh, "_forward", lambda ids: (_ for _ in ()).throw(AssertionError("recomputed")))
    np.testing.assert_array_equal(fresh.features(route_texts(prompts)).numpy(), z["feats"].astype(np.float32))
    # the same features are close to what this machine computes itself (float16 storage)
    own = Coordinator("tiny", layer=1, disk_cache=False).features(route_texts(prompts[:8])).numpy()
    np.testing.assert_allclose(own, z["feats"][:8].astype(np.float32), rtol=2e-3, atol=2e-3)

    with pytest.raises(CheckpointError, match="layer 1, this coordinator has -1"):
        ef.import_file(tmp_path / "feats" / "tiny-layer1.npz", coordinator=Coordinator("tiny", layer=-1))
    np.savez(tmp_path / "bad.npz", feats=np.zeros((1, 2)))
    with pytest.raises(CheckpointError, match="not an extracted-features file"):
        ef.import_file(tmp_path / "bad.npz", coordinator=coord)


def test_one_pass_fills_every_view_with_what_each_view_computes_alone(tmp_path, monkeypatch):
    """precompute_views: several layers and poolings from one forward per batch, each equal to the
    view's own pass; mean pooling ignores padding (a text's feature does not depend on its batch)."""
    from trinity.coordinator import Coordinator, precompute_views
    monkeypatch.setenv("BATON_CACHE", str(tmp_path))
    texts = ["user: what is 2+2?", "user: name a prime number larger than ten, please", "user: hi"]
    lead = Coordinator("tiny", layer=-1, max_tokens=32, batch_size=2)
    views = [lead] + [Coordinator.from_model(lead.model, lead.tokenizer, "tiny", layer=layer, pooling=pool,
                                             max_tokens=32, batch_size=2)
                      for layer, pool in [(-1, "mean"), (1, "token"), (1, "mean")]]
    calls = []
    real = lead._hidden
    monkeypatch.setattr(lead, "_hidden", lambda ids: calls.append(len(ids)) or real(ids))
    assert precompute_views(views, texts) == 3
    assert sum(calls) == 3                                   # each text went through the model once
    assert precompute_views(views, texts) == 0               # all cached now
    for v in views:
        alone = Coordinator("tiny", layer=v.layer, pooling=v.pooling, max_tokens=32, batch_size=1,
                            disk_cache=False).features(texts).numpy()
        np.testing.assert_allclose(v.features(texts).numpy(), alone, rtol=1e-4, atol=1e-5)
    assert not np.allclose(views[0].features(texts).numpy(), views[1].features(texts).numpy())
    assert views[1]._namespace() != views[0]._namespace()    # a mean view never reads token features
    with pytest.raises(Exception, match="pooling"):
        Coordinator.from_model(lead.model, lead.tokenizer, "tiny", pooling="max")
    other = Coordinator("tiny", max_tokens=16)
    with pytest.raises(Exception, match="share one loaded model"):
        precompute_views([lead, other], texts)
