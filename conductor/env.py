"""What a Conductor run works against: the pool, the task (items + grader), and the prompt rules.

`ConductorEnv` is built once from a config and shared by the reward (training), the evaluation
and the ablations; the serving wrapper keeps its own copy of the prompt rules in the checkpoint.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from conductor.config import ConductorConfig
from conductor.prompts import build_prompt
from conductor.workflow import Workflow, parse_workflow
from routers.errors import ConfigError
from routers.tasks.base import Task, TaskItem


def load_pool(source: str):
    if source == "toy":
        from conductor.toy import ToyPool
        return ToyPool()
    from routers.pool.config import load_pool as _load  # the pool owners' loader (YAML)
    return _load(source)


def load_task(name: str) -> Task:
    if name == "toy":
        from conductor.toy import ToyTask
        return ToyTask()
    from routers.tasks import get_task
    return get_task(name)


@dataclass
class ConductorEnv:
    cfg: ConductorConfig
    pool: Any
    task: Task
    items: dict[str, TaskItem] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: ConductorConfig, pool: Any = None, task: Task | None = None) -> "ConductorEnv":
        return cls(cfg, pool if pool is not None else load_pool(cfg.pool.source),
                   task if task is not None else load_task(cfg.data.task))

    @property
    def workers(self) -> list[str]:
        return list(self.pool.names)

    def add_items(self, items: list[TaskItem]) -> None:
        self.items.update({it.id: it for it in items})
        if hasattr(self.pool, "register"):
            self.pool.register(items)

    def names_at(self, names: list[str], depth: int) -> list[str]:
        """Workers a workflow at `depth` may use: `names` plus the Conductor itself while the
        recursion depth limit allows one more level."""
        rc = self.cfg.recursion
        base = [n for n in names if n != rc.name]
        return base + [rc.name] if rc.enabled and depth < rc.max_depth else base

    def sample_workers(self, rng: random.Random) -> list[str]:
        """All workers, or a random subset of [min, max] of them (adaptive-pool training)."""
        ws = self.workers
        if self.cfg.pool.subset is None:
            return ws
        lo, hi = self.cfg.pool.subset
        k = rng.randint(min(lo, len(ws)), min(hi, len(ws)))
        return sorted(rng.sample(ws, k), key=ws.index)

    def prompt(self, question: str, names: list[str], depth: int = 0) -> str:
        p, w = self.cfg.prompt, self.cfg.workflow
        return build_prompt(question, self.pool, self.names_at(names, depth), template=p.template,
                            few_shot=p.few_shot, max_steps=w.max_steps, prefill=p.prefill,
                            descriptions=self.cfg.pool.descriptions,
                            self_name=self.cfg.recursion.name if self.cfg.recursion.enabled else None)

    def parse(self, completion: str, names: list[str], depth: int = 0) -> Workflow:
        return parse_workflow(self.cfg.prompt.prefill + completion, self.names_at(names, depth),
                              self.cfg.workflow.max_steps)

    def worker_params(self) -> dict[str, Any]:
        return {"max_tokens": self.cfg.pool.worker_max_tokens, "temperature": self.cfg.pool.worker_temperature}

    def dataset_rows(self, items: list[TaskItem], seed: int) -> list[dict[str, Any]]:
        """Rows for GRPOTrainer: prompt, item_id, and the worker subset shown in the prompt."""
        rng = random.Random(seed)
        rows = []
        for it in items:
            names = self.sample_workers(rng)
            rows.append({"prompt": self.prompt(it.prompt, names), "item_id": it.id, "workers": names})
        return rows

    def check(self) -> None:
        w = self.cfg.workflow
        for key, name in (("workflow.force_worker", w.force_worker), ("workflow.fallback_worker", w.fallback_worker)):
            if name is not None and name not in self.workers:
                raise ConfigError(f"{key}: {name!r} is not in the pool {self.workers}")
        if self.cfg.recursion.enabled and self.cfg.recursion.name in self.workers:
            raise ConfigError(f"recursion.name {self.cfg.recursion.name!r} clashes with a pool worker")
