"""TRINITY (arXiv 2512.04695): an evolved LLM coordinator. A small LM reads the transcript; a
linear head on its hidden state picks the next worker and role; sep-CMA-ES trains the head and
singular-value offsets of the LM.

Model side: coordinator, svf, heads, protocol, checkpoint, serving. Training side, in the order
`train.train_route` / `train.train_episode` call them: config, data, fitness (and episodes),
optimizers (with trainer's ask/tell strategies), checkpoint; demo. `trinity.load(path, device=...)` restores a checkpoint.
"""

from __future__ import annotations


def load(path, device: str = "cpu", **kw):
    """Restore a checkpoint directory (see `trinity.checkpoint.load`)."""
    from trinity.checkpoint import load as _load
    return _load(path, device, **kw)


__all__ = ["load"]
