"""A small, fully offline routing problem on which the right workflow is learnable.

Three question categories and a pool of simulated workers, each reliable on one category only, so
the best workflow depends on the question. Worker names are neutral (the pool description does not
reveal who is good at what): the Conductor has to learn the mapping from reward. Correctness is a
deterministic hash of (worker, item), so the same workflow always gets the same reward.

Used by configs/conductor/demo.yaml, the tests and the benchmark; real runs use a pool YAML
(`routers.pool.config.load_pool`) and a task suite (`routers.tasks.get_task`).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re

from routers.pool.base import Message, UnknownQuery, WorkerReply, messages_tokens, estimate_tokens
from routers.tasks.base import Task, TaskItem

CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Kenya": "Nairobi", "Peru": "Lima", "Canada": "Ottawa",
            "Egypt": "Cairo", "Norway": "Oslo", "Chile": "Santiago", "India": "New Delhi",
            "Italy": "Rome", "Spain": "Madrid", "Cuba": "Havana", "Ghana": "Accra", "Nepal": "Kathmandu"}
WORDS = ["river", "planet", "garden", "silver", "candle", "window", "forest", "market", "rocket",
         "yellow", "pencil", "bridge", "castle", "dragon", "button", "island"]

# worker -> (category it is good at, $/M input, $/M output)
DEFAULT_WORKERS = {"alpha": ("capitals", 0.2, 0.6), "beta": ("spelling", 0.5, 1.5),
                   "gamma": ("arithmetic", 1.0, 3.0)}


class ToyTask(Task):
    """Questions tagged with their category; graded on "The answer is X." (last one wins)."""

    name = "toy"

    def load(self, limit: int | None = None, seed: int = 0, **kw) -> list[TaskItem]:
        rng = random.Random(seed)
        n = limit or 60
        items = []
        for k in range(n):
            cat = ("arithmetic", "capitals", "spelling")[k % 3]
            if cat == "arithmetic":
                a, b = rng.randint(2, 99), rng.randint(2, 99)
                q, ans = f"What is {a} + {b}?", str(a + b)
            elif cat == "capitals":
                c = rng.choice(sorted(CAPITALS))
                q, ans = f"What is the capital of {c}?", CAPITALS[c]
            else:
                w = rng.choice(WORDS)
                q, ans = f"Spell the word '{w}' backwards.", w[::-1]
            items.append(TaskItem(id=f"toy-{seed}-{k}", prompt=f"[{cat}] {q}", answer=ans, task="toy", category=cat))
        return items

    def extract(self, response: str, item: TaskItem) -> str | None:
        found = re.findall(r"The answer is (.+?)\.(?:\s|$)", response or "")
        return found[-1].strip() if found else None


class ToyPool:
    """Simulated workers with the `Pool` interface the Conductor uses: `names`, `tags(name)`,
    `prices(name)`, `register(items)`, `await call(worker, messages, **params)`."""

    def __init__(self, workers: dict[str, tuple[str, float, float]] | None = None, *,
                 good: float = 0.95, bad: float = 0.05, latency_s: float = 0.0):
        self.workers = dict(workers or DEFAULT_WORKERS)
        self.good, self.bad, self.latency_s = good, bad, latency_s
        self.items: dict[str, TaskItem] = {}
        self.calls = 0

    @property
    def names(self) -> list[str]:
        return list(self.workers)

    def tags(self, name: str) -> dict:
        return {}

    def prices(self, name: str) -> tuple[float, float]:
        _, pin, pout = self.workers[name]
        return pin, pout

    def register(self, items: list[TaskItem]) -> None:
        self.items.update({it.id: it for it in items})

    def correct(self, worker: str, item: TaskItem) -> bool:
        acc = self.good if self.workers[worker][0] == item.category else self.bad
        h = int(hashlib.sha256(f"{worker}|{item.id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        return h < acc

    async def call(self, worker: str, messages: list[Message], **params) -> WorkerReply:
        if worker not in self.workers:
            raise UnknownQuery(worker, f"no such worker in the toy pool {self.names}")
        item = self.items.get(params.get("item_id") or "")
        if item is None:
            raise UnknownQuery(worker, f"item {params.get('item_id')!r} was not registered with the toy pool")
        self.calls += 1
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        text = f"The answer is {item.answer if self.correct(worker, item) else item.answer + '0'}."
        tin, tout = messages_tokens(messages), estimate_tokens(text)
        pin, pout = self.prices(worker)
        return WorkerReply(text=text, worker=worker, model=f"toy/{worker}", input_tokens=tin,
                           output_tokens=tout, cost=(tin * pin + tout * pout) / 1e6, latency_s=self.latency_s)
