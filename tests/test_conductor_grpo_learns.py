"""A short GRPO run on a learnable task raises reward, through the real trainer and reward.

The task: toy arithmetic questions only, where `gamma` is right (95%) and `alpha`/`beta` wrong (5%).
The policy is the 1M-parameter random-init tiny Llama; the prompt ends with the subtasks and access
list already written, so the policy's whole job is the worker name (`gamma"]`). A format-only warm
start teaches it to write *some* worker name, picked at random (no routing information); GRPO must
then learn from reward alone that gamma pays.

Measured two ways, both before and after GRPO on the same questions:
- exactly: the policy's expected reward, sum over workers of p(worker | prompt) * reward (no
  sampling noise), and p(gamma) itself;
- as trained: the mean sampled reward of the last steps against the first steps.
A no-op trainer leaves p(gamma) where the random warm start puts it and the curve flat.
Seeds 0-4 (grpo.seed and torch seed): p(gamma) 0.16-0.51 -> 0.85-0.97, sampled reward of the last
three steps 0.10-0.49 above the first three; this test runs seed 0 (deterministic on one thread).
"""

from __future__ import annotations

import json
import random

import pytest
import torch

from conductor.config import load_config
from conductor.env import ConductorEnv
from conductor.toy import ToyPool, ToyTask

PREFILL = 'subtasks = ["Answer."]\naccess_list = [[]]\nmodel_id = ["'
# Only the question: the worker list would triple the prompt, and trl's CPU log-prob pass grows with it
# (the test runs in about half the time); the policy learns the names from the warm start.
TEMPLATE = "{question}\n"


class Arithmetic(ToyTask):
    """The toy task narrowed to one category, so one worker is the right answer to every question."""

    def load(self, limit=None, seed=0, **kw):
        return [it for it in super().load(limit=3 * (limit or 20), seed=seed) if it.category == "arithmetic"][:limit]


def choice_probs(model, tok, prompts: list[str], workers: list[str]) -> torch.Tensor:
    """p(worker | prompt), renormalized over the workers: the policy's exact choice distribution."""
    out = []
    with torch.no_grad():
        for p in prompts:
            pi = tok(p, add_special_tokens=False)["input_ids"]
            lps = []
            for w in workers:
                ci = tok(w + '"]', add_special_tokens=False)["input_ids"]
                ids = torch.tensor([pi + ci])
                logp = torch.log_softmax(model(input_ids=ids).logits[0, len(pi) - 1:-1].float(), -1)
                lps.append(logp.gather(1, torch.tensor(ci)[:, None]).sum())
            out.append(torch.softmax(torch.stack(lps), 0))
    return torch.stack(out)


def expected_reward(probs: torch.Tensor, env: ConductorEnv, items, workers: list[str]) -> float:
    """Mean over items of sum_w p(w) * reward(w's workflow), each reward from the real reward code."""
    from conductor.reward import WorkflowReward
    r = WorkflowReward(env)
    table = [[r.run(r.score(f'{w}"]', it, workers)).reward for w in workers] for it in items]
    return float((probs * torch.tensor(table)).sum(1).mean())


@pytest.mark.slow
def test_short_grpo_run_raises_reward(tmp_path):
    from conductor.train import build_trainer
    from conductor.warmstart import warm_start

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = load_config(None, [
        "policy.model=tiny", "train.wandb=false", "prompt.few_shot=false", f"prompt.template={json.dumps(TEMPLATE)}",
        f"prompt.prefill={json.dumps(PREFILL)}", "data.train_limit=8", "grpo.max_completion_length=4",
        "grpo.num_generations=8", "train.prompts_per_step=2", "grpo.max_steps=10", "grpo.learning_rate=0.01",
        "grpo.lr_scheduler_type=constant", "grpo.save_steps=1000", "grpo.logging_steps=1"])
    env = ConductorEnv(cfg, ToyPool(), Arithmetic())
    items = env.task.load(limit=8)
    workers = env.workers
    trainer, reward = build_trainer(cfg, tmp_path, env, items)
    model, tok = trainer.model, trainer.processing_class
    prompts = [row["prompt"] for row in trainer.train_dataset]
    rng = random.Random(0)
    pairs = [(p, rng.choice(workers) + '"]') for p in prompts for _ in range(3)]  # format only: random workers
    warm_start(model, tok, pairs, steps=80, lr=1e-2, batch_size=8, progress=False)

    before = choice_probs(model, tok, prompts, workers)
    r_before = expected_reward(before, env, items, workers)
    trainer.train()
    after = choice_probs(model, tok, prompts, workers)
    r_after = expected_reward(after, env, items, workers)
    curve = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    g = workers.index("gamma")
    print(f"p(gamma) {before[:, g].mean():.3f} -> {after[:, g].mean():.3f}; expected reward {r_before:.3f} -> "
          f"{r_after:.3f}; sampled reward per step {[round(c, 3) for c in curve]}")

    assert len(curve) == 10
    assert 0.1 < before[:, g].mean() < 0.6      # the warm start left the choice open
    assert after[:, g].mean() > 0.75 and after[:, g].min() > 0.5   # GRPO learned it, on every question
    assert r_after > r_before + 0.1             # exact: a no-op trainer leaves it unchanged
    assert sum(curve[-3:]) / 3 > sum(curve[:3]) / 3 + 0.1   # sampled: about 2 standard errors of a no-op
