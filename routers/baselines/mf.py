"""Matrix-factorization router: RouteLLM's `mf` router generalized from 2 models to K.

RouteLLM (lm-sys/RouteLLM, routellm/routers/matrix_factorization/model.py, `MFModel`) scores a
(model, prompt) pair as `classifier(normalize(P[model]) * text_proj(prompt_embedding))` and
routes on the sigmoid of the difference of two such logits. Here every model gets its own
calibrated probability: score(q, m) = sigmoid(w^T (v_m ⊙ P q) + b_m), with v_m the L2-normalized
learned model embedding, P a bias-free projection of the query embedding, w shared and b_m a
per-model bias (RouteLLM has none; it lets a model's base rate live outside the interaction).
Trained with masked BCE on the (query, model) score matrix, NaN scores skipped.
"""

from __future__ import annotations

import numpy as np
import torch

from routers.baselines.torch_fit import TorchScoreRouter


class MFModel(torch.nn.Module):
    def __init__(self, text_dim: int, n_models: int, dim: int = 128):
        super().__init__()
        self.P = torch.nn.Linear(text_dim, dim, bias=False)      # query projection
        self.V = torch.nn.Embedding(n_models, dim)                # model embeddings v_m
        self.w = torch.nn.Linear(dim, 1, bias=False)              # shared classifier
        self.b = torch.nn.Parameter(torch.zeros(n_models))        # per-model bias b_m

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        v = torch.nn.functional.normalize(self.V.weight, p=2, dim=1)   # (m, dim)
        inter = self.P(q)[:, None, :] * v[None, :, :]                   # (n, m, dim)
        return self.w(inter).squeeze(-1) + self.b                       # (n, m) logits


class MFRouter(TorchScoreRouter):
    name = "mf"
    defaults = {"dim": 128, "lr": 3e-3, "weight_decay": 1e-4}

    def _build(self, in_dim: int) -> MFModel:
        return MFModel(in_dim, len(self.models), int(self.params["dim"]))

    def _init_net(self, y: np.ndarray) -> None:
        with torch.no_grad():  # start each model at its base rate
            rate = np.clip(np.nan_to_num(np.nanmean(y, axis=0), nan=0.5), 1e-3, 1 - 1e-3)
            self._net.b.copy_(torch.as_tensor(np.log(rate / (1 - rate)), dtype=torch.float32))
