"""MLP router (RouterBench's MLP): one network, embedding -> one logit per model, trained with
masked BCE on the score matrix (missing scores skipped) and early stopping on validation."""

from __future__ import annotations

import torch

from routers.baselines.torch_fit import TorchScoreRouter


def build_mlp(in_dim: int, hidden: int, n_models: int, dropout: float) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(in_dim, hidden), torch.nn.ReLU(), torch.nn.Dropout(dropout),
                               torch.nn.Linear(hidden, n_models))


class MLPRouter(TorchScoreRouter):
    name = "mlp"
    defaults = {"hidden": 128, "dropout": 0.2, "lr": 1e-3, "weight_decay": 1e-3}

    def _build(self, in_dim: int) -> torch.nn.Module:
        p = self.params
        return build_mlp(in_dim, int(p["hidden"]), len(self.models), float(p["dropout"]))
