"""Micro-batching of coordinator forward passes across concurrent requests.

TRINITY routers call `coordinator.features(texts)` from worker threads (`asyncio.to_thread`), one
request at a time. `MicroBatcher` stands in for the coordinator: calls that arrive within
`max_wait_ms` of each other (up to `max_batch` texts) are merged into ONE `features` call, i.e. one
padded forward pass, and each caller gets its own rows back. It is device-agnostic (it only
reorders calls), so the same code batches bf16 passes on CUDA and fp32 passes in CPU tests.

    model.coordinator = MicroBatcher(model.coordinator, max_batch=16, max_wait_ms=5)

`measure_decision_latency` times a serving router's decisions with workers that answer instantly
(what scripts/gpu_check.py reports as the served decision latency).
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future
from typing import Any

import numpy as np


class MicroBatcher:
    def __init__(self, featurizer: Any, *, max_batch: int = 16, max_wait_ms: float = 5.0):
        self.inner = featurizer
        self.max_batch, self.max_wait_s = int(max_batch), float(max_wait_ms) / 1000
        self._queue: list[tuple[list[str], Future]] = []
        self._cv = threading.Condition()
        self.batches = 0          # forward calls made (tests and benchmarks read these)
        self.texts = 0
        self._thread = threading.Thread(target=self._run, name="baton-batcher", daemon=True)
        self._thread.start()

    def __getattr__(self, name: str) -> Any:   # count_tokens, identity, svf, d, ... of the coordinator
        return getattr(self.inner, name)

    def features(self, texts: list[str], progress: bool = False):
        """Blocking, thread-safe: the (n, d) features of `texts`, computed in a shared batch."""
        texts = list(texts)
        if not texts:
            return self.inner.features(texts)
        fut: Future = Future()
        with self._cv:
            self._queue.append((texts, fut))
            self._cv.notify()
        return fut.result()

    def _take(self) -> list[tuple[list[str], Future]]:
        with self._cv:
            while not self._queue:
                self._cv.wait()
            deadline = time.monotonic() + self.max_wait_s
            while sum(len(t) for t, _ in self._queue) < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            batch, n = [], 0
            while self._queue and (not batch or n + len(self._queue[0][0]) <= self.max_batch):
                item = self._queue.pop(0)
                batch.append(item)
                n += len(item[0])
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take()
            flat = [t for texts, _ in batch for t in texts]
            try:
                feats = self.inner.features(flat)
            except BaseException as e:  # noqa: BLE001 - every waiting request gets the error
                for _, fut in batch:
                    fut.set_exception(e)
                continue
            self.batches += 1
            self.texts += len(flat)
            i = 0
            for texts, fut in batch:
                fut.set_result(feats[i:i + len(texts)])
                i += len(texts)


async def _instant(candidates: list[str], messages: list[dict], params: dict[str, Any]):
    from routers.pool.base import WorkerReply
    return WorkerReply(text="ok", worker=candidates[0], model=candidates[0], input_tokens=1,
                       output_tokens=1, cost=0.0, latency_s=0.0)


async def measure_decision_latency(router, prompts: list[str], *, concurrency: int = 8) -> dict[str, Any]:
    """Serve `prompts` through `router.answer` with instant workers, `concurrency` at a time;
    returns decision latency p50/p99 (seconds, per request, wall clock) and requests/s."""
    sem = asyncio.Semaphore(concurrency)
    lat: list[float] = []

    async def one(p: str) -> None:
        async with sem:
            t0 = time.perf_counter()
            await router.answer([{"role": "user", "content": p}], _instant)
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*[one(p) for p in prompts])
    wall = time.perf_counter() - t0
    a = np.asarray(lat)
    return {"n": len(prompts), "concurrency": concurrency, "p50_s": float(np.percentile(a, 50)),
            "p99_s": float(np.percentile(a, 99)), "requests_per_s": len(prompts) / wall}
