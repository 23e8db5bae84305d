"""Format warm start: a short supervised pass that teaches a policy the workflow *format* only.

A small or random-init policy (the 1M-parameter tiny Llama used on CPU) almost never writes three
parsable lists, so GRPO would see reward 0 everywhere and learn nothing. The paper's 7B policy
already knows Python lists; this pass gives a small one the same starting point. The targets pick
workers uniformly at random and ignore the question, so they carry no routing information: which
worker suits which question is left for GRPO to learn from the reward.
"""

from __future__ import annotations

import random

import torch
from tqdm.auto import tqdm

from conductor.env import ConductorEnv
from conductor.prompts import workflow_text


def format_targets(env: ConductorEnv, items, names_per_item, seed: int = 0, max_len: int = 1) -> list[tuple[str, str]]:
    """(prompt, completion) pairs: one- to `max_len`-step workflows with random workers."""
    rng = random.Random(seed)
    pairs = []
    prefill = env.cfg.prompt.prefill
    for it, names in zip(items, names_per_item):
        n = rng.randint(1, max_len)
        choices = env.names_at(names, 0)  # includes the Conductor itself when recursion is on
        models = [rng.choice(choices) for _ in range(n)]
        subtasks = ["Answer the question."] * n
        access = [[]] + ["all"] * (n - 1)
        text = workflow_text(models, subtasks, access)
        if not text.startswith(prefill):
            raise ValueError(f"prompt.prefill {prefill!r} is not the start of a workflow text")
        pairs.append((env.prompt(it.prompt, names), text[len(prefill):]))
    return pairs


def warm_start(model, tokenizer, pairs: list[tuple[str, str]], *, steps: int, lr: float = 1e-3,
               batch_size: int = 8, seed: int = 0, progress: bool = True) -> list[float]:
    """Minimize the completion tokens' cross-entropy for `steps` AdamW steps; returns the losses."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    dev = next(model.parameters()).device
    eos = tokenizer.eos_token or ""
    losses = []
    model.train()
    for _ in tqdm(range(steps), desc="format warm start", disable=not progress):
        idx = torch.randint(len(pairs), (batch_size,), generator=g).tolist()
        seqs, n_target = [], []
        for i in idx:
            p, c = pairs[i]
            pi = tokenizer(p, add_special_tokens=False)["input_ids"]
            ci = tokenizer(c + eos, add_special_tokens=False)["input_ids"]
            seqs.append(pi + ci)
            n_target.append(len(ci))
        width, k = max(map(len, seqs)), max(n_target)
        pad = tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=dev)
        att = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=dev)
        pos = (att.cumsum(1) - 1).clamp(min=0)
        # left padding puts every completion at the end: only the last k+1 positions need logits
        logits = model(input_ids=ids, attention_mask=att, position_ids=pos, logits_to_keep=k + 1).logits[:, :-1]
        target = ids[:, -k:].clone()
        for r, n in enumerate(n_target):
            target[r, : k - n] = -100
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1),
                                                 ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
