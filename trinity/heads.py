"""TRINITY's routing heads: a linear map from one coordinator feature (d) to L agent logits and
3 role logits, no bias, each group with its own softmax (paper Table 3 variants included).

Every head is a flat parameter vector (what CMA-ES searches) plus a rule that turns it into a dense
weight `W (n_out, d)`; logits are `features @ W.T`. Because each variant builds a dense W, a whole
population is scored with one matrix product (`population_logits`), which is what makes head-only
CMA-ES on cached features fast.

Variants and their parameter counts (L agents, R roles, O = L + R outputs, d features):
  linear      O * d                       L=7, R=3, d=1024: 10,240 (paper)
  lowrank     r * (O + d): W = A @ B      r=20: 20,680 = the count reported for the paper's low-rank
                                          head (our notes label it r=14, which gives 14,476 here)
  sparse      O * d + d + 2: W * gate     11,266 (paper's count; the d gates + 2 scalars are our
                                          reading of it): gate_j = sigmoid(exp(s) * (g_j - t)),
                                          so whole feature columns switch off
  blockdiag   sum of b diagonal blocks    b=2: 5,120, b=10: 1,024 (paper); rows and features are
              (rows, features split in b  split into b near-equal groups, block i maps feature
              near-equal groups)          group i to row group i
  selection   roles-free: R = 0, L * d    single-turn routing (Fugu-style)

API (numpy in, numpy out; torch tensors accepted for features):
  head = make_head(kind, n_agents, d, n_roles=3, rank=14, blocks=2)   or head_from_config(cfg, L, d)
  head.n_params, head.n_out, head.n_agents, head.n_roles, head.d
  head.get_flat() -> np.ndarray (n_params,) ; head.set_flat(x)
  head.weight(x=None) -> (n_out, d) ; head.weights(X (P, n_params)) -> (P, n_out, d)
  head.logits(features (N, d)) -> (N, n_out)            with the head's own parameters
  head.population_logits(X (P, n_params), features (N, d)) -> (P, N, n_out)
  head.split(logits) -> (agent_logits [..., :L], role_logits [..., L:])
  head.spec() -> dict ; Head.from_spec(spec) rebuilds an identically shaped head (checkpoints).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from routers.errors import ConfigError

ROLES = ("thinker", "worker", "verifier")
HEAD_KINDS = ("linear", "lowrank", "sparse", "blockdiag", "selection")


def _as_numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):  # torch tensor
        a = a.detach().cpu().float().numpy()
    return np.asarray(a, dtype=np.float32)


class Head:
    """Base: a flat vector and a rule for the dense weight. Subclasses implement `weights`."""

    kind = "linear"

    def __init__(self, n_agents: int, d: int, n_roles: int = 3):
        if n_agents < 1:
            raise ConfigError(f"head: n_agents must be >= 1, got {n_agents}")
        if d < 1:
            raise ConfigError(f"head: feature size d must be >= 1, got {d}")
        if n_roles not in (0, 3):
            raise ConfigError(f"head: n_roles must be 3 (thinker, worker, verifier) or 0, got {n_roles}")
        self.n_agents, self.d, self.n_roles = int(n_agents), int(d), int(n_roles)
        self.n_out = self.n_agents + self.n_roles
        self._x = np.zeros(self.n_params, dtype=np.float64)

    # -- parameters ------------------------------------------------------------------------------
    @property
    def n_params(self) -> int:
        return self.n_out * self.d

    def get_flat(self) -> np.ndarray:
        return self._x.copy()

    def set_flat(self, x) -> "Head":
        x = np.asarray(_as_numpy(x) if hasattr(x, "detach") else x, dtype=np.float64).reshape(-1)
        if x.shape != (self.n_params,):
            raise ConfigError(f"{self.kind} head: expected {self.n_params} parameters, got {x.size}")
        self._x = x.copy()
        return self

    def init_flat(self) -> np.ndarray:
        """A sensible starting point for search (zeros: uniform softmaxes)."""
        return np.zeros(self.n_params)

    # -- weights and logits ----------------------------------------------------------------------
    def weights(self, X) -> np.ndarray:
        """(P, n_out, d) dense weights of P flat parameter vectors."""
        X = self._check_pop(X)
        return X.reshape(len(X), self.n_out, self.d)

    def weight(self, x=None) -> np.ndarray:
        return self.weights((self._x if x is None else np.asarray(x))[None])[0]

    def logits(self, features) -> np.ndarray:
        """(N, n_out) logits of this head's own parameters."""
        return self.population_logits(self._x[None], features)[0]

    def population_logits(self, X, features) -> np.ndarray:
        """(P, N, n_out) logits for P candidate vectors on N feature rows: one matmul."""
        F = _as_numpy(features)
        if F.ndim != 2 or F.shape[1] != self.d:
            raise ConfigError(f"{self.kind} head: features must be (N, {self.d}), got {tuple(F.shape)}")
        W = self.weights(X)                                   # (P, O, d)
        P = W.shape[0]
        flat = F @ W.reshape(P * self.n_out, self.d).T        # (N, P*O)
        return np.ascontiguousarray(flat.reshape(len(F), P, self.n_out).transpose(1, 0, 2))

    def split(self, logits):
        """(agent logits, role logits); role logits are empty for a selection head."""
        return logits[..., :self.n_agents], logits[..., self.n_agents:]

    def _check_pop(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim == 1:
            X = X[None]
        if X.ndim != 2 or X.shape[1] != self.n_params:
            raise ConfigError(f"{self.kind} head: parameter rows must have {self.n_params} entries, "
                              f"got shape {tuple(X.shape)}")
        return X

    # -- description -----------------------------------------------------------------------------
    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "n_agents": self.n_agents, "d": self.d, "n_roles": self.n_roles}

    @staticmethod
    def from_spec(spec: dict[str, Any]) -> "Head":
        spec = dict(spec)
        kind = spec.pop("kind")
        return make_head(kind, **spec)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec()}, n_params={self.n_params})"


class LinearHead(Head):
    """W in R^{(L+3) x d}, no bias: the paper's head."""

    kind = "linear"


class SelectionHead(LinearHead):
    """Roles-free: L x d, one softmax over workers (single-turn routing)."""

    kind = "selection"

    def __init__(self, n_agents: int, d: int, n_roles: int = 0):
        super().__init__(n_agents, d, n_roles=0)


class LowRankHead(Head):
    """W = A @ B with A (n_out, r) and B (r, d)."""

    kind = "lowrank"

    def __init__(self, n_agents: int, d: int, n_roles: int = 3, rank: int = 14):
        if rank < 1:
            raise ConfigError(f"head.rank: must be >= 1, got {rank}")
        self.rank = int(rank)
        super().__init__(n_agents, d, n_roles)

    @property
    def n_params(self) -> int:
        return self.rank * (self.n_out + self.d)

    def init_flat(self) -> np.ndarray:
        # A product of zeros has zero gradient in every direction a search can see; start A at small
        # deterministic values so perturbations of B change the logits.
        x = np.zeros(self.n_params)
        a = np.random.default_rng(0).normal(0, 1 / np.sqrt(self.rank), (self.n_out, self.rank))
        x[: a.size] = a.ravel()
        return x

    def weights(self, X) -> np.ndarray:
        X = self._check_pop(X)
        na = self.n_out * self.rank
        A = X[:, :na].reshape(len(X), self.n_out, self.rank)
        B = X[:, na:].reshape(len(X), self.rank, self.d)
        return A @ B

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "rank": self.rank}


class SparseHead(Head):
    """Linear head times a learned per-feature gate: W[:, j] * sigmoid(exp(s) * (g_j - t)).
    Parameters: W (n_out*d), g (d), t, s. Zero init: every gate 0.5 (a uniform rescale)."""

    kind = "sparse"

    @property
    def n_params(self) -> int:
        return self.n_out * self.d + self.d + 2

    def weights(self, X) -> np.ndarray:
        X = self._check_pop(X)
        nw = self.n_out * self.d
        W = X[:, :nw].reshape(len(X), self.n_out, self.d)
        g = X[:, nw:nw + self.d]
        t, s = X[:, -2:-1], X[:, -1:]
        gate = 1.0 / (1.0 + np.exp(-np.clip(np.exp(np.clip(s, -20, 20)) * (g - t), -60, 60)))
        return W * gate[:, None, :].astype(np.float32)

    def gate(self, x=None) -> np.ndarray:
        x = self._x if x is None else np.asarray(x)
        nw = self.n_out * self.d
        g, t, s = x[nw:nw + self.d], x[-2], x[-1]
        return 1.0 / (1.0 + np.exp(-np.exp(s) * (g - t)))


class BlockDiagonalHead(Head):
    """b blocks on the diagonal: rows and features are split into b near-equal groups
    (np.array_split), block i maps feature group i to row group i; everything else is zero."""

    kind = "blockdiag"

    def __init__(self, n_agents: int, d: int, n_roles: int = 3, blocks: int = 2):
        n_out = n_agents + n_roles
        if blocks < 1 or blocks > n_out or blocks > d:
            raise ConfigError(f"head.blocks: must be between 1 and min(outputs={n_out}, d={d}), got {blocks}")
        self.blocks = int(blocks)
        self._rows = [a for a in np.array_split(np.arange(n_out), blocks)]
        self._cols = [a for a in np.array_split(np.arange(d), blocks)]
        super().__init__(n_agents, d, n_roles)

    @property
    def n_params(self) -> int:
        return int(sum(len(r) * len(c) for r, c in zip(self._rows, self._cols)))

    def weights(self, X) -> np.ndarray:
        X = self._check_pop(X)
        W = np.zeros((len(X), self.n_out, self.d), dtype=np.float32)
        o = 0
        for r, c in zip(self._rows, self._cols):
            n = len(r) * len(c)
            W[:, r[0]:r[-1] + 1, c[0]:c[-1] + 1] = X[:, o:o + n].reshape(len(X), len(r), len(c))
            o += n
        return W

    def spec(self) -> dict[str, Any]:
        return {**super().spec(), "blocks": self.blocks}


def make_head(kind: str, n_agents: int, d: int, n_roles: int = 3, *, rank: int = 14,
              blocks: int = 2) -> Head:
    """Build a head by name. `n_roles` is 3 (thinker/worker/verifier) or 0 (roles-free)."""
    if kind == "selection" or (kind == "linear" and n_roles == 0):
        return SelectionHead(n_agents, d)
    if kind == "linear":
        return LinearHead(n_agents, d, n_roles)
    if kind == "lowrank":
        return LowRankHead(n_agents, d, n_roles, rank=rank)
    if kind == "sparse":
        return SparseHead(n_agents, d, n_roles)
    if kind == "blockdiag":
        return BlockDiagonalHead(n_agents, d, n_roles, blocks=blocks)
    raise ConfigError(f"head.kind: {kind!r} is not one of {', '.join(HEAD_KINDS)}")


def head_from_config(cfg, n_agents: int, d: int) -> Head:
    """From a `trinity.config.HeadConfig` (kind, roles, rank, blocks)."""
    return make_head(cfg.kind, n_agents, d, 3 if cfg.roles else 0, rank=cfg.rank, blocks=cfg.blocks)


def softmax(z, axis: int = -1, dtype=np.float64) -> np.ndarray:
    """The one softmax of TRINITY (serving, fitness, protocol sampling), computed in `dtype`."""
    z = np.asarray(z, dtype=dtype)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)
