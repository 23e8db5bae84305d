"""MLP router (RouterBench's MLP): one network, embedding -> one logit per model, trained with
masked BCE on the score matrix (missing scores skipped) and early stopping on validation."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from routers.baselines.embedding import EmbeddingRouter
from routers.baselines.torch_fit import fit_masked_bce
from routers.baselines.tuning import holdout
from routers.errors import CheckpointError


def build_mlp(in_dim: int, hidden: int, n_models: int, dropout: float) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(in_dim, hidden), torch.nn.ReLU(), torch.nn.Dropout(dropout),
                               torch.nn.Linear(hidden, n_models))


class MLPRouter(EmbeddingRouter):
    name = "mlp"

    def __init__(self, **params):
        for k, v in dict(hidden=128, dropout=0.2, lr=1e-3, weight_decay=1e-3, epochs=200, patience=10,
                         batch_size=256, seed=0).items():
            params.setdefault(k, v)
        super().__init__(**params)
        self._net: torch.nn.Module | None = None

    def _build(self, in_dim: int) -> torch.nn.Module:
        p = self.params
        return build_mlp(in_dim, int(p["hidden"]), len(self.models), float(p["dropout"]))

    def _fit(self, train, validation):
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
        self.params["fit_info"] = fit_masked_bce(
            self._net, x, y, xv, yv, epochs=int(p["epochs"]), lr=float(p["lr"]),
            weight_decay=float(p["weight_decay"]), batch_size=int(p["batch_size"]),
            patience=int(p["patience"]), seed=int(p["seed"]), desc="mlp")

    def predict_quality(self, prompts, categories=None):
        with torch.no_grad():
            return torch.sigmoid(self._net(torch.as_tensor(self.embed(prompts)))).double().numpy()

    def _save_state(self, path: Path) -> None:
        save_file(self._net.state_dict(), str(path / "model.safetensors"))

    def _load_state(self, path: Path) -> None:
        f = path / "model.safetensors"
        if not f.is_file():
            raise CheckpointError(f"{path}: missing model.safetensors")
        self._net = self._build(int(self.params["in_dim"]))
        self._net.load_state_dict(load_file(str(f)))
        self._net.eval()
