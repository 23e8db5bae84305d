"""Serve any baseline `Router` as a `ServingRouter`: rank the workers for the last user message,
make one call down that ranking (the caller handles fallback), and report the decision."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from routers.pool.base import Message
from routers.serving_router import CallFn, Episode, ServingRouter, Step, last_user_text

if TYPE_CHECKING:  # an annotation only: base.Router.answer imports this module
    from routers.baselines.base import Router


class SingleChoice(ServingRouter):
    def __init__(self, router: Router, name: str, workers: list[str] | None = None):
        self.router = router
        self.name = name
        self.workers = list(workers if workers is not None else router.models)

    def _prompt_tokens(self, prompt: str) -> int:
        """Tokens the router read: the encoder's count for embedding routers, else 0 (no model read it)."""
        enc = getattr(self.router, "encoder", None)
        if enc is None or not hasattr(enc, "count_tokens"):
            return 0
        limit = int(self.router.params.get("max_length", 256))
        return min(int(enc.count_tokens(prompt)), limit)

    async def answer(self, messages: list[Message], call: CallFn, *, lam: float = 0.0) -> Episode:
        prompt = last_user_text(messages)
        t0 = time.perf_counter()
        ranking = [w for w in self.router.rank(prompt, lam) if w in self.workers]
        latency = time.perf_counter() - t0
        reply = await call(ranking, messages, {"role": "worker"})  # the role a single answer plays
        return Episode(answer=reply.text, steps=[Step(worker=reply.worker, role="answer", reply=reply, candidates=ranking)],
                       orchestration_input_tokens=self._prompt_tokens(prompt),
                       orchestration_latency_s=latency, meta={"router": self.router.name, "lam": lam})

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "router_type": self.router.name}
