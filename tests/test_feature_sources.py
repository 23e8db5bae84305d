"""TRINITY's feature sources for the route task (`trinity.data.route_features`): a concatenation
of the coordinator's hidden state and a `routers.embed` encoder (`data.encoder=coordinator+NAME`)."""

from __future__ import annotations

import numpy as np
import pytest

from routers import embed
from routers.errors import ConfigError, DataError
from trinity.config import TrinityConfig, apply_overrides
from trinity.data import encoder_parts, feature_source, route_features

PROMPTS = ["compute 2 plus 3", "define the word river", "compute 40 plus 1", "define the word cloud"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import os
    os.environ.setdefault("BATON_CACHE", str(tmp_path_factory.mktemp("cache")))
    from trinity.coordinator import Coordinator
    return Coordinator("tiny", max_tokens=24, disk_cache=False)


@pytest.fixture
def enc():
    """A 3-dim encoder whose vectors are known (norm 5: 3-4-0 and 0-0-5 rows)."""
    vec = np.array([[3, 4, 0], [0, 0, 5], [0, 5, 0], [4, 3, 0]], np.float32)
    embed.register_encoder("test-feat3", embed.PrecomputedEncoder(PROMPTS, vec, id="test-feat3"))
    return vec


def test_concatenation_shape_first_part_unchanged_second_scaled_to_its_norm(tiny, enc):
    F = route_features(feature_source("coordinator+test-feat3", tiny), PROMPTS)
    Fc = route_features(tiny, PROMPTS)
    assert F.shape == (len(PROMPTS), tiny.d + 3) and F.dtype == np.float32
    np.testing.assert_array_equal(F[:, :tiny.d], Fc)           # the coordinator's features, as they were
    tail = F[:, tiny.d:]
    np.testing.assert_allclose(np.linalg.norm(tail, axis=1), np.linalg.norm(Fc, axis=1), rtol=1e-5)
    np.testing.assert_allclose(tail / np.linalg.norm(tail, axis=1, keepdims=True), enc / 5.0, rtol=1e-5)
    # order follows data.encoder: the encoder first keeps its own rows and scales the coordinator's
    G = route_features(feature_source("test-feat3+coordinator", tiny), PROMPTS)
    np.testing.assert_array_equal(G[:, :3], enc)


def test_concatenation_reads_each_parts_cache(tiny, enc, monkeypatch):
    src = feature_source("coordinator+test-feat3", tiny)
    route_features(src, PROMPTS)
    calls = []
    real = type(tiny)._compute
    monkeypatch.setattr(type(tiny), "_compute", lambda self, *a, **k: (calls.append(len(a[0])), real(self, *a, **k)))
    again = route_features(src, PROMPTS)
    assert calls == []                                         # nothing recomputed
    np.testing.assert_array_equal(route_features(src, PROMPTS[:2]), again[:2])
    embed.register_encoder("test-feat3", embed.PrecomputedEncoder(PROMPTS + ["new"], np.vstack([enc, [1, 0, 0]]),
                                                                  id="test-feat3"))
    route_features(src, ["new"])
    assert calls == [1]                                        # only the new text went through the coordinator


def test_concatenation_refuses_a_part_with_other_rows(tiny):
    class Short:
        id, dim = "short", 2

        def encode(self, texts, **kw):
            return np.ones((len(texts) - 1, 2), np.float32)
    embed.register_encoder("test-short", Short())
    with pytest.raises(DataError, match="'test-short' gave shape \\(3, 2\\) for 4 prompts"):
        route_features(feature_source("coordinator+test-short", tiny), PROMPTS)


def test_encoder_spec_errors_name_the_problem(tiny):
    assert encoder_parts(None) == ["coordinator"] and encoder_parts("minilm") == ["minilm"]
    assert feature_source(None, tiny) is tiny and feature_source("minilm") == "minilm"
    for bad in ("coordinator+", "minilm+minilm", "+minilm"):
        with pytest.raises(ConfigError, match="non-empty and distinct"):
            encoder_parts(bad)
    with pytest.raises(ConfigError, match="needs the run's coordinator"):
        feature_source("coordinator+minilm", None)


def test_train_route_on_concatenated_features_writes_metrics_but_no_checkpoint(tiny, enc, tmp_path, capsys):
    from routers.data.schema import RoutingDataset
    from trinity.train import train_route
    prompts = PROMPTS * 5
    embed.register_encoder("test-feat3", embed.PrecomputedEncoder(PROMPTS, enc, id="test-feat3"))
    n = len(prompts)
    scores = np.array([[1.0, 0.0] if p.startswith("compute") else [0.0, 1.0] for p in prompts])
    ds = RoutingDataset(ids=[str(i) for i in range(n)], prompts=prompts, categories=["x"] * n,
                        splits=["train"] * (n - 4) + ["test"] * 4, models=["math", "words"], scores=scores,
                        costs=np.tile([2e-3, 1e-3], (n, 1)))
    cfg = apply_overrides(TrinityConfig(), ["head.roles=false", "head.kind=selection", "train.wandb=false",
                                            "train.iterations=2", "train.popsize=4", "train.sigma0=0.1",
                                            "data.validation_fraction=0.25"])
    m, head, data = train_route(cfg, ds.split("train"), ds.split("test"), out=tmp_path / "run", coordinator=tiny,
                                encoder="coordinator+test-feat3", with_head=True)
    assert data.features.shape == (n - 4, tiny.d + 3) and data.test_features.shape == (4, tiny.d + 3)
    assert head.logits(data.test_features).shape[0] == 4
    assert {"train", "test", "validation"} <= set(m)
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert not (tmp_path / "run" / "router.safetensors").exists()
    assert "no router checkpoint written" in capsys.readouterr().out
