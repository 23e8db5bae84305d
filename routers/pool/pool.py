"""A pool: the named workers a router chooses from, their tags and limits, and the response cache.

Routers and trainers call `await pool.call(name, messages, **params)`; serving reads
`pool.limits(name)` (allowed_fails, cooldown_s, ...) and `pool.tags(name)` (provider, region,
open_weights) for fallback and compliance. Build one from YAML with `routers.pool.load_pool`.
"""

from __future__ import annotations

from typing import Any

from routers.errors import ConfigError
from routers.pool.base import Delta, Message, Worker, WorkerReply, worker_params
from routers.pool.cache import ResponseCache, cache_key
from routers.tasks.base import Task, TaskItem

DEFAULT_LIMITS: dict[str, Any] = {"max_concurrency": 8, "timeout": 60.0, "retries": 3,
                                  "allowed_fails": 3, "cooldown_s": 30.0}


class Pool:
    def __init__(self, workers: list[Worker], *, config: dict[str, Any] | None = None,
                 cache: ResponseCache | None = None, limits: dict[str, dict[str, Any]] | None = None):
        names = [w.name for w in workers]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"pool: duplicate worker names {dup}")
        if not workers:
            raise ConfigError("pool: no workers")
        self.workers: dict[str, Worker] = {w.name: w for w in workers}
        self.config: dict[str, Any] = config if config is not None else {
            "workers": [{"name": w.name, "model": w.model, "input_price": w.input_price,
                         "output_price": w.output_price, "tags": w.tags} for w in workers]}
        self.cache = cache
        self._limits = {n: {**DEFAULT_LIMITS, **((limits or {}).get(n) or {})} for n in names}

    @property
    def names(self) -> list[str]:
        return list(self.workers)

    def __getitem__(self, name: str) -> Worker:
        try:
            return self.workers[name]
        except KeyError:
            raise ConfigError(f"unknown worker {name!r}; this pool has: {', '.join(self.workers)}") from None

    def __contains__(self, name: str) -> bool:
        return name in self.workers

    def __len__(self) -> int:
        return len(self.workers)

    def tags(self, name: str) -> dict[str, Any]:
        return dict(self[name].tags)

    def limits(self, name: str) -> dict[str, Any]:
        self[name]
        return dict(self._limits[name])

    def prices(self, name: str) -> tuple[float, float]:
        """($ per M input tokens, $ per M output tokens)."""
        w = self[name]
        return w.input_price, w.output_price

    def register(self, items: list[TaskItem], tasks: dict[str, Task] | None = None) -> None:
        """Tell the workers that answer from known items (simulated) which items exist. `tasks`
        supplies Task objects for suites not in `routers.tasks`' registry."""
        seen: set[int] = set()
        for w in self.workers.values():
            reg = getattr(w, "register", None)
            target = getattr(w, "sim", w)
            if reg is not None and id(target) not in seen:
                seen.add(id(target))
                reg(items, tasks)

    async def call(self, name: str, messages: list[Message], **params: Any) -> WorkerReply:
        """Ask worker `name`; a cached reply is returned when the cache has this exact call."""
        worker = self[name]
        params = worker_params(params)
        if self.cache is None:
            return await worker.chat(messages, **params)
        salt = getattr(worker, "cache_salt", None)  # backend state that changes replies (e.g. a seed)
        key = cache_key(name, worker.model, messages, {**params, "_salt": salt} if salt else params)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        reply = await worker.chat(messages, **params)
        self.cache.put(key, reply)
        return reply

    async def stream(self, name: str, messages: list[Message], **params: Any):
        """Worker `name`'s answer as it is produced: `Delta`s, then the `WorkerReply` (see
        `Worker.stream`). A cached reply comes as one piece; a streamed reply is cached whole."""
        worker = self[name]
        params = worker_params(params)
        key = None
        if self.cache is not None:
            salt = getattr(worker, "cache_salt", None)
            key = cache_key(name, worker.model, messages, {**params, "_salt": salt} if salt else params)
            hit = self.cache.get(key)
            if hit is not None:
                if hit.text or hit.tool_calls:
                    yield Delta(content=hit.text or None, tool_calls=hit.tool_calls)
                yield hit
                return
        async for item in worker.stream(messages, **params):
            if isinstance(item, WorkerReply) and key is not None:
                self.cache.put(key, item)
            yield item

    async def aclose(self) -> None:
        for w in self.workers.values():
            await w.aclose()
        if self.cache is not None:
            self.cache.close()

    def __repr__(self) -> str:
        return f"Pool({self.config.get('name', '?')!r}, workers={self.names})"
