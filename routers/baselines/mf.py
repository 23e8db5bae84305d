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

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from routers.baselines.embedding import EmbeddingRouter
from routers.baselines.torch_fit import fit_masked_bce
from routers.baselines.tuning import holdout
from routers.errors import CheckpointError


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


class MFRouter(EmbeddingRouter):
    name = "mf"

    def __init__(self, **params):
        for k, v in dict(dim=128, lr=3e-3, weight_decay=1e-4, epochs=200, patience=10, batch_size=256,
                         seed=0).items():
            params.setdefault(k, v)
        super().__init__(**params)
        self._net: MFModel | None = None

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
        self._net = MFModel(x.shape[1], len(self.models), int(p["dim"]))
        with torch.no_grad():  # start each model at its base rate
            rate = np.clip(np.nan_to_num(np.nanmean(y, axis=0), nan=0.5), 1e-3, 1 - 1e-3)
            self._net.b.copy_(torch.as_tensor(np.log(rate / (1 - rate)), dtype=torch.float32))
        self.params["fit_info"] = fit_masked_bce(
            self._net, x, y, xv, yv, epochs=int(p["epochs"]), lr=float(p["lr"]),
            weight_decay=float(p["weight_decay"]), batch_size=int(p["batch_size"]),
            patience=int(p["patience"]), seed=int(p["seed"]), desc="mf")

    def predict_quality(self, prompts, categories=None):
        with torch.no_grad():
            return torch.sigmoid(self._net(torch.as_tensor(self.embed(prompts)))).double().numpy()

    def _save_state(self, path: Path) -> None:
        save_file(self._net.state_dict(), str(path / "model.safetensors"))

    def _load_state(self, path: Path) -> None:
        f = path / "model.safetensors"
        if not f.is_file():
            raise CheckpointError(f"{path}: missing model.safetensors")
        self._net = MFModel(int(self.params["in_dim"]), len(self.models), int(self.params["dim"]))
        self._net.load_state_dict(load_file(str(f)))
        self._net.eval()
