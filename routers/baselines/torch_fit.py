"""One small trainer for the torch score predictors (MLP, MF): masked BCE with early stopping.

Targets are the (n, m) score matrix in [0, 1]; NaN entries (not recorded) are masked out of the
loss, never treated as zero. Early stopping watches the validation loss (the validation split if
given, else a seeded 10% of train) and restores the best weights.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from routers.baselines.embedding import EmbeddingRouter
from routers.errors import CheckpointError


def masked_bce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    mask = ~torch.isnan(y)
    if not mask.any():
        return logits.sum() * 0.0
    return torch.nn.functional.binary_cross_entropy_with_logits(logits[mask], y[mask])


def fit_masked_bce(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray,
                   *, epochs: int = 200, lr: float = 1e-3, weight_decay: float = 1e-4, batch_size: int = 256,
                   patience: int = 10, seed: int = 0, desc: str = "fit") -> dict:
    """Train `model` (x -> (n, m) logits) in place; returns {"best_epoch", "val_loss", "epochs"}.

    Runs single-threaded: these nets are tiny, and on a shared CPU torch's thread pool made the
    same fit ~15x slower (measured: 30 epochs of a 256-128-3 MLP, 15 s with 2 threads, 1 s with 1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit(model, x, y, xv, yv, epochs=epochs, lr=lr, weight_decay=weight_decay,
                    batch_size=batch_size, patience=patience, seed=seed, desc=desc)
    finally:
        torch.set_num_threads(threads)


def _fit(model, x, y, xv, yv, *, epochs, lr, weight_decay, batch_size, patience, seed, desc) -> dict:
    from tqdm import tqdm
    torch.manual_seed(seed)
    xt, yt = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)
    xvt, yvt = torch.as_tensor(xv, dtype=torch.float32), torch.as_tensor(yv, dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    best, best_state, best_epoch, since = float("inf"), copy.deepcopy(model.state_dict()), 0, 0
    bar = tqdm(range(epochs), desc=desc, leave=False, disable=len(x) < 2000)
    epoch = 0
    for epoch in bar:
        model.train()
        for idx in torch.randperm(len(xt), generator=gen).split(batch_size):
            opt.zero_grad()
            masked_bce(model(xt[idx]), yt[idx]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            val = float(masked_bce(model(xvt), yvt)) if len(xvt) else float(masked_bce(model(xt), yt))
        bar.set_postfix(val_loss=f"{val:.4f}")
        if val < best - 1e-5:
            best, best_state, best_epoch, since = val, copy.deepcopy(model.state_dict()), epoch, 0
        else:
            since += 1
            if since >= patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    return {"best_epoch": best_epoch, "val_loss": best, "epochs": epoch + 1}


class TorchScoreRouter(EmbeddingRouter):
    """An embedding router whose per-model scores come from a torch net (embedding -> one logit per
    model) trained with masked BCE, early-stopped on validation (or a 10% holdout of train), and
    saved as safetensors. Subclasses say how to build the net and may initialize it."""

    defaults: dict = {}

    def __init__(self, **params):
        for k, v in {"lr": 1e-3, "weight_decay": 1e-3, "epochs": 200, "patience": 10, "batch_size": 256,
                     "seed": 0, **self.defaults}.items():
            params.setdefault(k, v)
        super().__init__(**params)
        self._net: torch.nn.Module | None = None

    def _build(self, in_dim: int) -> torch.nn.Module:
        raise NotImplementedError  # abstract: each subclass builds its own net

    def _init_net(self, y: np.ndarray) -> None:
        """Hook to initialize the fresh net from the training scores; default: nothing."""

    def _fit(self, train, validation):
        from routers.baselines.tuning import holdout
        p = self.params
        x, y = self.embed(train.prompts), train.scores
        if validation is not None and len(validation):
            xv, yv = self.embed(validation.prompts), validation.scores
        else:
            tr, va = holdout(len(x), 0.1, int(p["seed"]))
            x, y, xv, yv = x[tr], y[tr], x[va], y[va]
        torch.manual_seed(int(p["seed"]))
        self.params["in_dim"] = int(x.shape[1])
        self._net = self._build(x.shape[1])
        self._init_net(y)
        self.params["fit_info"] = fit_masked_bce(
            self._net, x, y, xv, yv, epochs=int(p["epochs"]), lr=float(p["lr"]),
            weight_decay=float(p["weight_decay"]), batch_size=int(p["batch_size"]),
            patience=int(p["patience"]), seed=int(p["seed"]), desc=self.name)

    def predict_quality(self, prompts, categories=None):
        with torch.no_grad():
            return torch.sigmoid(self._net(torch.as_tensor(self.embed(prompts)))).double().numpy()

    def _save_state(self, path: Path) -> None:
        from safetensors.torch import save_file
        save_file(self._net.state_dict(), str(path / "model.safetensors"))

    def _load_state(self, path: Path) -> None:
        from safetensors.torch import load_file
        f = path / "model.safetensors"
        if not f.is_file():
            raise CheckpointError(f"{path}: missing model.safetensors")
        self._net = self._build(int(self.params["in_dim"]))
        self._net.load_state_dict(load_file(str(f)))
        self._net.eval()
