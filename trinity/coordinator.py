"""The TRINITY coordinator: a causal LM that reads the transcript and whose hidden state at one
token (the penultimate, by default) is the routing feature. Its generated text is never used.

Why these choices:
- The transcript is plain `role: content` lines (no chat template), as in the paper.
- Batches are left-padded (with matching position ids) so position -2 is the same real token in
  every row; the feature does not depend on what else is in the batch.
- Coordinator passes are the scarce resource on CPU (~250 tokens/s for SmolLM2), so features are
  cached in memory and on disk, keyed by coordinator identity (weights fingerprint), SVF offset
  hash, layer, position, truncation and the text's sha256.
- GGUF checkpoints (the packaged SmolLM2 / tiny Llama) are converted once to a plain HF folder under
  the cache (`save_pretrained` refuses GGUF-loaded models, so we rebuild from config and copy the
  state dict); later loads skip the de-quantization.

API:
  coord = Coordinator(model="smollm2", layer=-1, position=-2, pooling="token", max_tokens=128,
                      batch_size=16, device="cpu", dtype="float32", truncation_side="right")
      pooling: "token" (the hidden state at `position`) or "mean" (over the text's tokens).
      truncation_side: "right" keeps a long text's start (the question; single-turn routing),
      "left" its end, "middle" both ends (multi-turn transcripts: question and latest turns).
  coord = Coordinator.from_config(CoordinatorConfig)        # trinity.config
  coord = Coordinator.from_model(hf_model, tokenizer, name)  # wrap a model you built
  coord.features(texts, progress=False) -> torch.Tensor (n, d) float32 on CPU (cached)
  coord.count_tokens(texts) -> list[int]                     # tokens each text costs a pass
  precompute_views(coords, texts)  # several layers/poolings of one loaded model in ONE pass each batch
  coord.d, coord.identity() -> dict, coord.fingerprint -> str
  coord.enable_svf(targets=None | SVFConfig) -> trinity.svf.SVF (offsets become part of cache keys)
  render_transcript(turns, max_chars=None) -> str            # turns: [{"role", "content"}] or tuples
  routers.model_files.resolve_model(spec) -> str (local folder or hub id); routers.paths.cache_root() -> Path

Model specs: "smollm2" (packaged SmolLM2-135M-Instruct GGUF), "tiny" (packaged 1M-parameter random
Llama), a path to a .gguf file, a local HF folder, or a hub id such as "Qwen/Qwen3-0.6B".
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from routers.errors import ConfigError
from routers.model_files import DTYPES, check_device, load_causal_lm, torch_dtype
from routers.paths import cache_root

# how a text's hidden states become one feature: the state at `position` (the paper: penultimate
# token), or the mean over the text's real tokens
POOLINGS = ("token", "mean")

# -- transcripts ---------------------------------------------------------------------------------

def _cut(text: str, max_chars: int | None) -> str:
    if max_chars is None or len(text) <= max_chars:
        return text
    half = max(1, max_chars // 2)
    return text[:half] + " ... " + text[-half:]


def render_transcript(turns: Iterable[Any], max_chars: int | None = None) -> str:
    """`role: content` lines. Each turn's content is cut to `max_chars` (head and tail kept: the
    question starts a text, answers and verdicts end one)."""
    lines = []
    for i, t in enumerate(turns):
        if isinstance(t, dict):
            role, content = t.get("role"), t.get("content")
        else:
            role, content = t
        if not isinstance(role, str) or content is None:
            raise ConfigError(f"transcript turn {i}: needs a 'role' string and 'content', got {t!r}")
        lines.append(f"{role}: {_cut(str(content), max_chars)}")
    return "\n".join(lines)


def _fingerprint(model: torch.nn.Module) -> str:
    """Identifies the weights regardless of dtype/device: architecture numbers plus a bf16-rounded
    sample of the embedding matrix (fp32 and bf16 loads of one model agree)."""
    cfg = model.config
    arch = [getattr(cfg, k, None) for k in ("model_type", "hidden_size", "num_hidden_layers", "vocab_size")]
    emb = model.get_input_embeddings().weight.detach()[:8, :64].to("cpu", torch.bfloat16).float().numpy()
    return hashlib.sha1(json.dumps(arch).encode() + emb.tobytes()).hexdigest()[:16]


# -- the coordinator ------------------------------------------------------------------------------

class Coordinator:
    def __init__(self, model: str = "smollm2", *, layer: int = -1, position: int = -2,
                 pooling: str = "token", max_tokens: int = 128, batch_size: int = 16, device: str = "cpu",
                 dtype: str = "float32", truncation_side: str = "right", random_init: bool = False,
                 disk_cache: bool = True, max_cached: int | None = None, _loaded: tuple | None = None):
        torch_dtype(dtype, "coordinator.dtype")
        if truncation_side not in ("left", "right", "middle"):
            raise ConfigError(f"coordinator.truncation_side: {truncation_side!r} is not 'right' (keep the "
                              "start), 'left' (keep the end) or 'middle' (keep both ends)")
        if pooling not in POOLINGS:
            raise ConfigError(f"coordinator.pooling: {pooling!r} is not one of {', '.join(POOLINGS)}")
        if max_tokens < 2:
            raise ConfigError(f"coordinator.max_tokens: must be >= 2, got {max_tokens}")
        check_device(device, "coordinator.device")
        self.name, self.device, self.dtype = model, device, dtype
        self.layer, self.position, self.max_tokens = int(layer), int(position), int(max_tokens)
        self.pooling = pooling
        self.batch_size, self.truncation_side, self.disk_cache = int(batch_size), truncation_side, disk_cache
        # in-memory features kept per namespace; None = all (training sets are finite), a server
        # sets a cap so a long-running process does not grow without bound (oldest evicted first)
        self.max_cached = None if max_cached is None else max(1, int(max_cached))
        if _loaded is not None:
            self.model, self.tokenizer = _loaded
        else:
            self.model, self.tokenizer = self._load(model, random_init)
        self.model.to(device).eval()
        n_hidden = self.model.config.num_hidden_layers + 1
        if not -n_hidden <= self.layer < n_hidden:
            raise ConfigError(f"coordinator.layer: {layer} is outside the {n_hidden} hidden states "
                              f"(0 = embeddings, {n_hidden - 1} = last block)")
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.d = int(self.model.config.hidden_size)
        self.fingerprint = _fingerprint(self.model)
        self.svf = None
        self._mem: dict[str, dict[str, np.ndarray]] = {}
        self._disk_loaded: set[str] = set()
        self._lock = threading.Lock()

    def _load(self, spec: str, random_init: bool):
        try:
            return load_causal_lm(spec, dtype=self.dtype, random_init=random_init)
        except (OSError, ValueError) as e:  # unknown id, offline hub, not a causal LM
            raise ConfigError(f"coordinator.model: cannot load {spec!r} ({e})") from None

    @classmethod
    def from_config(cls, cfg, **kw) -> "Coordinator":
        """From a `trinity.config.CoordinatorConfig`."""
        return cls(cfg.model, layer=cfg.layer, position=cfg.position, pooling=getattr(cfg, "pooling", "token"),
                   max_tokens=cfg.max_tokens,
                   batch_size=cfg.batch_size, device=cfg.device, dtype=cfg.dtype,
                   truncation_side=getattr(cfg, "truncation_side", "right"),
                   random_init=getattr(cfg, "random_init", False), **kw)

    @classmethod
    def from_model(cls, model: torch.nn.Module, tokenizer, name: str, **kw) -> "Coordinator":
        """Wrap an already built HF causal LM (tests, GPU checks with random weights, other views of
        a loaded coordinator: `precompute_views`)."""
        kw.setdefault("dtype", {torch_dtype(n): n for n in DTYPES}.get(next(model.parameters()).dtype, "float32"))
        return cls(name, _loaded=(model, tokenizer), **kw)

    # -- identity and SVF --------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """What a checkpoint records and later compares (mismatch = another coordinator)."""
        return {"model": self.name, "fingerprint": self.fingerprint, "hidden_size": self.d,
                "layer": self.layer, "position": self.position, "pooling": self.pooling,
                "max_tokens": self.max_tokens, "truncation_side": self.truncation_side}

    def enable_svf(self, targets=None):
        """Attach SVF (default targets, an explicit list of module names, or an SVFConfig)."""
        from trinity.svf import SVF
        if self.svf is not None:  # factor the original weights, not a previous SVF's rescaled ones
            self.svf.restore()
        if targets is not None and not isinstance(targets, (list, tuple)):
            self.svf = SVF.from_config(self.model, targets)
        else:
            self.svf = SVF(self.model, None if targets is None else list(targets))
        return self.svf

    def _namespace(self) -> str:
        svf = self.svf.offset_hash() if self.svf is not None else "none"
        key = f"{self.fingerprint}|{svf}|{self.layer}|{self.position}|{self.max_tokens}|{self.truncation_side}"
        if self.dtype != "float32":  # bf16/fp16 features differ from fp32 ones: never mix them
            key += f"|{self.dtype}"
        if self.pooling != "token":  # (token-pooled namespaces predate pooling: keep their caches valid)
            key += f"|{self.pooling}"
        return hashlib.sha1(key.encode()).hexdigest()[:16]

    # -- tokens ------------------------------------------------------------------------------------
    def _encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids cut to max_tokens: keep the start ("right": the question), the end ("left":
        the latest turns, where the feature token is), or both halves ("middle")."""
        enc = self.tokenizer(list(texts), add_special_tokens=True, verbose=False)["input_ids"]
        n, h = self.max_tokens, self.max_tokens // 2
        cut = {"right": lambda e: e[:n], "left": lambda e: e[-n:], "middle": lambda e: e[:h] + e[len(e) - (n - h):]}
        return [list(e) if len(e) <= n else list(cut[self.truncation_side](e)) for e in enc]

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(e) for e in self._encode(texts)]

    # -- features ----------------------------------------------------------------------------------
    def features(self, texts: list[str], progress: bool = False) -> torch.Tensor:
        """(n, d) float32 CPU features of `texts` (rendered transcripts), from cache where possible."""
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ConfigError(f"coordinator.features: text {i} is {type(t).__name__}, not str")
        ns = self._namespace()
        use_disk = self.disk_cache and (self.svf is None or self.svf.offset_hash() == "none")
        with self._lock:  # serving calls this from worker threads
            mem = self._mem.pop(ns, {})
            self._mem[ns] = mem     # most recently used last
            for old in list(self._mem)[:-4]:  # SVF-mode training makes a namespace per candidate
                self._mem.pop(old)
                self._disk_loaded.discard(old)
            if use_disk and ns not in self._disk_loaded:
                mem.update(self._read_disk(ns))
                self._disk_loaded.add(ns)
        keys = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
        todo = {}
        for k, t in zip(keys, texts):
            if k not in mem:
                todo.setdefault(k, t)
        if todo:
            self._compute(todo, mem, ns if use_disk else None, progress)
        if not texts:
            return torch.zeros((0, self.d))
        out = torch.from_numpy(np.stack([mem[k] for k in keys]))
        if self.max_cached is not None and len(mem) > self.max_cached:
            with self._lock:
                for k in list(mem)[: len(mem) - self.max_cached]:
                    mem.pop(k, None)
        return out

    @torch.no_grad()
    def _hidden(self, ids: list[list[int]]):
        """One forward pass over a left-padded batch: (all hidden states, attention mask, lengths)."""
        L = max(len(x) for x in ids)
        inp = torch.full((len(ids), L), self.tokenizer.pad_token_id, dtype=torch.long)
        att = torch.zeros((len(ids), L), dtype=torch.long)
        for r, x in enumerate(ids):
            inp[r, L - len(x):] = torch.tensor(x)
            att[r, L - len(x):] = 1
        pos = (att.cumsum(1) - 1).clamp(min=0)
        # the base model (no LM head): the vocabulary projection is most of the cost of a small LM
        out = self.model.base_model(input_ids=inp.to(self.device), attention_mask=att.to(self.device),
                                    position_ids=pos.to(self.device), output_hidden_states=True)
        return out.hidden_states, att, torch.tensor([len(x) for x in ids])

    def _pick(self, hidden, att: torch.Tensor, lens: torch.Tensor) -> np.ndarray:
        """This coordinator's view of a batch's hidden states: its layer, at its token position or
        mean-pooled over the real (unpadded) tokens."""
        hs = hidden[self.layer]
        if self.pooling == "mean":
            m = att.to(hs.device, hs.dtype).unsqueeze(-1)
            return ((hs * m).sum(1) / m.sum(1)).float().cpu().numpy()
        L = hs.shape[1]
        if self.position < 0:
            idx = L + torch.maximum(torch.tensor(self.position), -lens)
        else:
            idx = (L - lens) + torch.minimum(torch.tensor(self.position), lens - 1)
        return hs[torch.arange(len(lens)), idx.to(hs.device)].float().cpu().numpy()

    def _forward(self, ids: list[list[int]]) -> np.ndarray:
        return self._pick(*self._hidden(ids))

    def _compute(self, todo: dict[str, str], mem: dict, ns: str | None, progress: bool) -> None:
        _fill([(self, ns, mem)], todo, progress)

    def import_features(self, sha: list[str], feats: np.ndarray) -> int:
        """Seed the cache (memory and disk) with features computed elsewhere, keyed by the sha256 of
        the rendered text. Only for features of this same model, layer, position and truncation
        (e.g. a background extraction job); returns how many were new."""
        feats = np.asarray(feats, dtype=np.float32)
        if feats.ndim != 2 or feats.shape[1] != self.d or len(feats) != len(sha):
            raise ConfigError(f"coordinator.import_features: need ({len(sha)}, {self.d}) features, got {feats.shape}")
        ns = self._namespace()
        mem = self._cached(ns)  # with what earlier imports already wrote
        with self._lock:
            new = {k: f for k, f in zip(sha, feats) if k not in mem}
            mem.update(new)
        if new and self.disk_cache:
            self._write_disk(ns, new)
        return len(new)

    def _cached(self, ns: str) -> dict[str, np.ndarray]:
        """The in-memory features of namespace `ns`, its disk shards read in once."""
        with self._lock:
            mem = self._mem.setdefault(ns, {})
            if self.disk_cache and ns not in self._disk_loaded:
                mem.update(self._read_disk(ns))
                self._disk_loaded.add(ns)
            return mem

    # -- disk cache: one folder per namespace, append-only shards (safe for concurrent writers) ---
    def _disk_dir(self, ns: str) -> Path:
        return cache_root() / "features" / f"coordinator-{ns}"

    def _read_disk(self, ns: str) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        d = self._disk_dir(ns)
        for f in sorted(d.glob("shard-*.npz")) if d.is_dir() else []:
            try:
                z = np.load(f)
                out.update(zip(z["sha"].tolist(), z["feats"]))
            except Exception:  # a torn shard from a killed run: skip it, it will be recomputed
                continue
        return out

    def _write_disk(self, ns: str, feats: dict[str, np.ndarray]) -> None:
        d = self._disk_dir(ns)
        d.mkdir(parents=True, exist_ok=True)
        name = f"shard-{uuid.uuid4().hex}.npz"
        tmp = d / f".{name}.tmp.npz"
        np.savez(tmp, sha=np.array(list(feats)), feats=np.stack(list(feats.values())).astype(np.float32))
        tmp.rename(d / name)
        meta = d / "identity.json"
        if not meta.exists():
            meta.write_text(json.dumps(self.identity(), indent=2))


def precompute_views(coords: list[Coordinator], texts: list[str], progress: bool = False) -> int:
    """Fill the feature caches of several views (layers, positions, poolings) of ONE loaded model
    with one forward pass per batch: a pass returns every layer's hidden states, so a layer or
    pooling ablation costs one pass over the prompts, not one per view. `coords` must share the
    model object, token limit and truncation (build them with `Coordinator.from_model`) and carry
    no SVF. Returns how many texts needed a pass; afterwards each `coord.features(texts)` is a
    cache read."""
    if not coords:
        return 0
    lead = coords[0]
    for c in coords[1:]:
        if c.model is not lead.model or (c.max_tokens, c.truncation_side) != (lead.max_tokens, lead.truncation_side):
            raise ConfigError("precompute_views: the views must share one loaded model, max_tokens and "
                              "truncation_side (build them with Coordinator.from_model)")
    if any(c.svf is not None for c in coords):
        raise ConfigError("precompute_views: views with SVF offsets change the weights per candidate: no sharing")
    texts = list(texts)
    keys = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
    views = []
    for c in coords:
        ns = c._namespace()
        views.append((c, ns if c.disk_cache else None, c._cached(ns)))
    todo = {}
    for k, t in zip(keys, texts):
        if any(k not in mem for _, _, mem in views):
            todo.setdefault(k, t)
    if todo:
        _fill(views, todo, progress)
    return len(todo)


def _fill(views: list[tuple[Coordinator, str | None, dict]], todo: dict[str, str], progress: bool) -> None:
    """Compute `todo` (sha -> text) for every (coordinator, disk namespace or None, memory) view
    with one forward pass per length-sorted batch of the first view's model; each view takes its
    own layer/pooling from the pass and is written to its memory and (in shards) its disk cache."""
    lead = views[0][0]
    tk = list(todo)
    enc = lead._encode([todo[k] for k in tk])
    for i, e in enumerate(enc):
        if not e:
            raise ConfigError(f"coordinator.features: text {todo[tk[i]][:40]!r} has no tokens")
    order = np.argsort([len(e) for e in enc], kind="stable")  # length-sorted batches: little padding
    bar = None
    if progress:
        from tqdm.auto import tqdm
        desc = "coordinator features" + (f" ({len(views)} views)" if len(views) > 1 else "")
        bar = tqdm(total=len(tk), desc=desc, unit="text")
    pending: list[dict[str, np.ndarray]] = [{} for _ in views]

    def flush():
        for (c, ns, _), p in zip(views, pending):
            if ns is not None and p:
                c._write_disk(ns, p)
                p.clear()
    for b in range(0, len(order), lead.batch_size):
        idx = order[b:b + lead.batch_size]
        hidden = lead._hidden([enc[i] for i in idx])
        for (c, _, mem), p in zip(views, pending):
            feats = c._pick(*hidden)
            for r, i in enumerate(idx):
                mem[tk[i]] = p[tk[i]] = feats[r]
        del hidden
        if bar is not None:
            bar.update(len(idx))
        if len(pending[0]) >= 256:
            flush()
    flush()
    if bar is not None:
        bar.close()
