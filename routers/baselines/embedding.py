"""Routers that read a query through its sentence embedding (kNN, MLP, MF, SW-Elo, cascade).

The encoder is a name (`encoder=` param, saved in config.json) resolved by
`routers.embed.get_encoder`, so checkpoints stay JSON and tests can swap in the model-free
"hashing" encoder or one registered with `routers.embed.register_encoder`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from routers.baselines.base import Router
from routers.embed import get_encoder


class EmbeddingRouter(Router):
    def __init__(self, **params: Any):
        params.setdefault("encoder", None)
        params.setdefault("max_length", 256)
        super().__init__(**params)
        self._last: tuple[tuple[str, ...], np.ndarray] | None = None  # route() embeds the same batch twice

    @property
    def encoder(self):
        return get_encoder(self.params["encoder"])

    def embed(self, prompts: list[str]) -> np.ndarray:
        """(n, d) float32 L2-normalized embeddings (disk-cached; the last batch kept in memory)."""
        key = tuple(prompts)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        x = self.encoder.encode(list(prompts), max_length=int(self.params["max_length"]),
                                progress=len(prompts) > 256)
        self._last = (key, x)
        return x
