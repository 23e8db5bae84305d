"""Load the Conductor's policy LM and generate workflows with it.

Model specs are resolved by `routers.model_files.resolve_model` (one resolver for the project):
"tiny" / "smollm2" (packaged GGUFs, converted once to a plain HF folder under $BATON_CACHE), a
.gguf path, an HF folder, or a hub id.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import torch


def load_policy(spec: str, dtype: str = "float32", device: str = "cpu"):
    """(model, tokenizer) ready for GRPO and generation; the tokenizer pads on the left."""
    from routers.model_files import check_device, load_causal_lm, torch_dtype

    torch_dtype(dtype, "policy.dtype")
    check_device(device, "conductor policy device")
    model, tok = load_causal_lm(spec, dtype=dtype, padding_side="left")
    model = model.to(device)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float


class Generator:
    """Greedy (or sampled) batched generation with token accounting; one call at a time, since
    one model object is not safe to run from several threads at once."""

    def __init__(self, model, tokenizer, max_new_tokens: int = 256, temperature: float = 0.0):
        self.model, self.tok = model, tokenizer
        self.max_new_tokens, self.temperature = max_new_tokens, temperature
        self._lock = threading.Lock()

    @torch.no_grad()
    def __call__(self, prompts: list[str]) -> list[Generation]:
        with self._lock:
            t0 = time.perf_counter()
            dev = next(self.model.parameters()).device
            enc = self.tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(dev)
            kw = dict(max_new_tokens=self.max_new_tokens, pad_token_id=self.tok.pad_token_id)
            kw.update(do_sample=True, temperature=self.temperature) if self.temperature > 0 else kw.update(do_sample=False)
            was_training = self.model.training
            self.model.eval()
            try:
                out = self.model.generate(**enc, **kw)
            finally:
                self.model.train(was_training)
            new = out[:, enc["input_ids"].shape[1]:]
            dt = (time.perf_counter() - t0) / max(1, len(prompts))
            res = []
            for i in range(len(prompts)):
                ids = new[i]
                n = int((ids != self.tok.pad_token_id).sum()) if self.tok.pad_token_id is not None else len(ids)
                res.append(Generation(self.tok.decode(ids, skip_special_tokens=True),
                                      int(enc["attention_mask"][i].sum()), n, dt))
            return res

    def texts(self, prompts: list[str]) -> list[str]:
        return [g.text for g in self(prompts)]
