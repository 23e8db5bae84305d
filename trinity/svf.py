"""Singular-value fine-tuning (SVF, Transformer-squared arXiv 2501.06252) of the coordinator, as
TRINITY trains it: per chosen weight matrix W = U diag(S) V^T (SVD computed once, in float64 on
CPU so every device rebuilds the same W' from a checkpoint's offsets), an offset
vector d (one entry per singular value) gives

    W' = U diag(S * (1 + d)) V^T * sum(S) / sum(S * (1 + d))

which keeps the total singular-value energy sum(S) fixed, so a search step rescales directions
instead of the layer's overall gain. d = 0 gives back W exactly (the original is kept, not rebuilt).

Default targets (`default_targets`): the 7 projections (q, k, v, o, gate, up, down) of one block
near the top (block -2, as the paper's layer 26 of 28), plus embed_tokens, plus lm_head when it is
not tied to the embeddings.

API:
  svf = SVF(model, targets=None)            # or SVF.from_config(model, SVFConfig)
  svf.names, svf.sizes, svf.n_params
  svf.apply(offsets (n_params,))            # writes W' into the model (in place, no grad)
  svf.restore()                             # original weights back
  with svf.applied(offsets): ...            # apply, then restore
  svf.offsets -> np.ndarray (current flat offsets) ; svf.offset_hash() -> str ("none" at zero)
  svf.energy(name) -> float sum of singular values of the current weight (tests, diagnostics)
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Iterator

import numpy as np
import torch

from routers.errors import ConfigError

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _blocks(model: torch.nn.Module) -> tuple[str, int]:
    """Prefix of the transformer block list and its length (Llama/Qwen/Mistral layout)."""
    for name, mod in model.named_modules():
        if name.endswith("layers") and isinstance(mod, torch.nn.ModuleList):
            return name, len(mod)
    raise ConfigError(f"svf: cannot find the transformer block list in {type(model).__name__}")


def default_targets(model: torch.nn.Module, layer: int = -2, modules=PROJECTIONS,
                    embeddings: bool = True) -> list[str]:
    """Parameter-owner module names: `modules` of block `layer` (negative counts from the top),
    plus embed_tokens and, where untied, lm_head."""
    prefix, n = _blocks(model)
    idx = layer if layer >= 0 else n + layer
    if not 0 <= idx < n:
        raise ConfigError(f"svf.layer: {layer} is outside the model's {n} blocks")
    named = dict(model.named_modules())
    targets = []
    for m in modules:
        hits = [k for k in named if k.startswith(f"{prefix}.{idx}.") and k.split(".")[-1] == m]
        if not hits:
            raise ConfigError(f"svf.modules: no module {m!r} in block {idx} of {type(model).__name__}")
        targets.extend(hits)
    if embeddings:
        emb = model.get_input_embeddings()
        targets.append(next(k for k, v in named.items() if v is emb))
        out = model.get_output_embeddings()
        if out is not None and out.weight.data_ptr() != emb.weight.data_ptr():
            targets.append(next(k for k, v in named.items() if v is out))
    return targets


class SVF:
    """Singular-value offsets over named modules that own a 2-D `.weight` (Linear, Embedding)."""

    def __init__(self, model: torch.nn.Module, targets: list[str] | None = None):
        self.model = model
        self.names = list(targets) if targets is not None else default_targets(model)
        named = dict(model.named_modules())
        self._mods, self._orig, self._usv = {}, {}, {}
        for n in self.names:
            if n not in named or getattr(named[n], "weight", None) is None or named[n].weight.ndim != 2:
                raise ConfigError(f"svf: {n!r} is not a module with a 2-D weight in {type(model).__name__}")
            w = named[n].weight
            self._mods[n] = named[n]
            self._orig[n] = w.detach().clone()
            # float64 LAPACK on CPU whatever the model's device: singular vectors of close singular
            # values are ill-conditioned, and offsets are per index, so a checkpoint's W' must not
            # depend on which SVD routine (cuSOLVER, LAPACK, fp32) factored W
            U, S, Vh = torch.linalg.svd(w.detach().to("cpu", torch.float64), full_matrices=False)
            self._usv[n] = tuple(t.to(w.device, torch.float32) for t in (U, S, Vh))
        self.sizes = [int(self._usv[n][1].numel()) for n in self.names]
        self.n_params = int(sum(self.sizes))
        self._offsets = np.zeros(self.n_params)

    @classmethod
    def from_config(cls, model: torch.nn.Module, cfg) -> "SVF":
        """From a `trinity.config.SVFConfig` (layer, modules, embeddings)."""
        return cls(model, default_targets(model, cfg.layer, cfg.modules, cfg.embeddings))

    @property
    def offsets(self) -> np.ndarray:
        return self._offsets.copy()

    def offset_hash(self) -> str:
        """Identifies the applied offsets (feature-cache key); 'none' when all are zero."""
        if not np.any(self._offsets):
            return "none"
        return hashlib.sha1(self._offsets.astype(np.float64).tobytes()).hexdigest()[:16]

    def split(self, offsets) -> dict[str, np.ndarray]:
        offsets = np.asarray(offsets, dtype=np.float64).reshape(-1)
        if offsets.size != self.n_params:
            raise ConfigError(f"svf: expected {self.n_params} offsets, got {offsets.size}")
        out, o = {}, 0
        for n, k in zip(self.names, self.sizes):
            out[n] = offsets[o:o + k]
            o += k
        return out

    @torch.no_grad()
    def apply(self, offsets) -> None:
        """Set every target to its energy-preserving rescaled weight (from the original)."""
        parts = self.split(offsets)
        for n, d in parts.items():
            w = self._mods[n].weight
            if not np.any(d):
                w.copy_(self._orig[n])
                continue
            U, S, Vh = self._usv[n]
            s = S * (1.0 + torch.as_tensor(d, dtype=S.dtype, device=S.device))
            s = s * (S.sum() / s.sum())
            w.copy_(((U * s) @ Vh).to(w.dtype))
        self._offsets = np.asarray(offsets, dtype=np.float64).reshape(-1).copy()

    @torch.no_grad()
    def restore(self) -> None:
        for n in self.names:
            self._mods[n].weight.copy_(self._orig[n])
        self._offsets = np.zeros(self.n_params)

    @contextlib.contextmanager
    def applied(self, offsets) -> Iterator["SVF"]:
        prev = self._offsets.copy()
        self.apply(offsets)
        try:
            yield self
        finally:
            self.apply(prev)

    @torch.no_grad()
    def energy(self, name: str) -> float:
        return float(torch.linalg.svdvals(self._mods[name].weight.detach().float()).sum())
