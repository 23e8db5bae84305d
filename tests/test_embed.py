"""Query embeddings: shape, normalization, the on-disk cache (hits, two processes), real MiniLM."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from routers import embed
from routers.errors import ConfigError


class CountingEncoder(embed._CachedEncoder):
    """A cached encoder whose 'model' is a deterministic function of the text."""

    def __init__(self):
        super().__init__()
        self.id, self.dim, self.batches = "counting-test", 8, []

    def _embed_batch(self, texts, max_length):
        self.batches.append(len(texts))
        v = np.array([[len(t), t.count("a"), 1, 0, 0, 0, 0, 1] for t in texts], dtype=np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BATON_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cache_hit_does_not_recompute(cache_dir):
    enc = CountingEncoder()
    texts = ["banana", "apple", "banana", "kiwi", ""]
    a = enc.encode(texts, batch_size=2)
    assert a.shape == (5, 8) and a.dtype == np.float32
    assert enc.computed == 4 and sum(enc.batches) == 4          # the duplicate embedded once
    np.testing.assert_array_equal(a[0], a[2])
    b = enc.encode(["kiwi", "banana", "mango"])
    assert enc.computed == 5                                     # only "mango" was new
    np.testing.assert_array_equal(b[:2], a[[3, 0]])
    fresh = CountingEncoder()                                    # a new process would see the same file
    np.testing.assert_array_equal(fresh.encode(texts), a)
    assert fresh.computed == 0
    assert list(cache_dir.glob("embeddings/*/embeddings.sqlite"))
    assert enc.encode([]).shape == (0, 8)
    # another max_length is another cache
    enc.encode(["banana"], max_length=16)
    assert enc.computed == 6


def test_cache_is_safe_for_two_processes(cache_dir):
    script = textwrap.dedent(f"""
        import numpy as np, sys
        sys.path.insert(0, {str(cache_dir.parent)!r})
        from routers.embed import EmbeddingCache
        c = EmbeddingCache({str(cache_dir / 'shared')!r})
        tag = sys.argv[1]
        for i in range(40):
            c.put({{f"{{tag}}-{{i}}": np.full(4, i, np.float32), "common": np.ones(4, np.float32)}})
            assert len(c.get([f"{{tag}}-{{i}}"])) == 1
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, tag], stderr=subprocess.PIPE) for tag in "ab"]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-2000:]
    c = embed.EmbeddingCache(cache_dir / "shared")
    assert len(c) == 81
    np.testing.assert_array_equal(c.get(["b-39"])["b-39"], np.full(4, 39, np.float32))


def test_hashing_encoder_and_registry():
    e = embed.get_encoder("hashing:64")
    assert e is embed.get_encoder("hashing:64")                  # memoized
    v = e.encode(["integral of x", "python loop", "integral of x"])
    assert v.shape == (3, 64)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, rtol=1e-5)
    assert v[0] @ v[2] == pytest.approx(1) and v[0] @ v[1] < 0.9
    fake = CountingEncoder()
    embed.register_encoder("test-fake", fake)
    assert embed.get_encoder("test-fake") is fake
    assert embed.encode(["x"], encoder="test-fake").shape == (1, 8)
    pre = embed.PrecomputedEncoder(["a", "b"], np.eye(2))
    embed.register_encoder("test-pre", pre)
    np.testing.assert_array_equal(embed.encode(["b", "a", "b"], encoder="test-pre"), np.eye(2)[[1, 0, 1]])
    with pytest.raises(ConfigError, match="no vector for 1 text"):
        pre.encode(["a", "zzz"])
    with pytest.raises(ConfigError, match="hashing:<dim>"):
        embed.get_encoder("hashing:lots")


def test_unknown_encoder_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot load"):
        embed.HFEncoder(tmp_path).encode(["hello"])


def test_minilm_real(cache_dir):
    enc = embed.HFEncoder(embed.minilm_path())
    texts = ["What is the integral of x^2?", "Write a Python function that reverses a list.",
             "Compute the antiderivative of x squared."]
    v = enc.encode(texts)
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, rtol=1e-5)
    assert v[0] @ v[2] > v[0] @ v[1] + 0.2                       # paraphrases are closer
    again = embed.HFEncoder(embed.minilm_path())
    np.testing.assert_array_equal(again.encode(texts), v)
    assert again.computed == 0 and again._model is None          # served from disk, model never loaded
    assert enc.count_tokens("hello world") == 4                  # [CLS] hello world [SEP]
