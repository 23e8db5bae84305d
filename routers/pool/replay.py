"""Replay a recorded RoutingDataset as if its models were live: routers trained and graded on
recorded scores (llmrouter, RouteLLM data) can be run through the same pool interface.

A query is found by `params["item_id"]` (the dataset id), else by exact match of the last user
message with a recorded prompt, else by a recorded prompt contained in a message. A query the
recording does not have, or a (query, model) pair with no recorded score, raises `UnknownQuery`:
never a silent default. Where the recording has no response text the reply text is empty and the
recorded score is in `meta["score"]`; missing tokens are estimated (`meta["tokens_estimated"]`),
missing costs are computed from the worker's prices.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Callable

from routers.data.schema import RoutingDataset
from routers.errors import ConfigError
from routers.pool.base import Message, UnknownQuery, Worker, WorkerReply, estimate_tokens, messages_tokens
from routers.serving_router import last_user_text


class ReplayData:
    """A dataset loaded once (lazily) and indexed by id and prompt; shared by a pool's replay workers."""

    def __init__(self, source: RoutingDataset | Callable[[], RoutingDataset], where: str = "replay data"):
        self._source, self.where = source, where
        self._ds: RoutingDataset | None = source if isinstance(source, RoutingDataset) else None
        self._by_id: dict[str, int] | None = None
        self._by_prompt: dict[str, int] = {}
        self._found: dict[str, int | None] = {}

    @property
    def dataset(self) -> RoutingDataset:
        if self._ds is None:
            self._ds = self._source()  # type: ignore[operator]
        if self._by_id is None:
            self._by_id = {}
            for i, (qid, p) in enumerate(zip(self._ds.ids, self._ds.prompts)):
                self._by_id.setdefault(str(qid), i)
                self._by_prompt.setdefault(p, i)
        return self._ds

    def row(self, messages: list[Message], params: dict[str, Any]) -> int | None:
        self.dataset  # loads and indexes on first use
        if params.get("item_id") is not None:
            return self._by_id.get(str(params["item_id"]))  # type: ignore[union-attr]
        last = last_user_text(messages)
        if last in self._by_prompt:
            return self._by_prompt[last]
        texts = [str(m.get("content") or "") for m in messages]
        key = hashlib.sha256("\x00".join(texts).encode("utf-8", "surrogatepass")).hexdigest()
        if key not in self._found:
            self._found[key] = next((i for p, i in self._by_prompt.items() if p and any(p in t for t in texts)),
                                    None)
        return self._found[key]


def _finite(a, i: int, j: int) -> float | None:
    if a is None:
        return None
    v = float(a[i, j])
    return None if math.isnan(v) else v


class ReplayWorker(Worker):
    """One model column of a recorded dataset. `model` names the column (defaults to `name`)."""

    def __init__(self, name: str, *, data: ReplayData | RoutingDataset, model: str | None = None,
                 input_price: float = 0.0, output_price: float = 0.0, tags: dict[str, Any] | None = None):
        super().__init__(name, model=model, input_price=input_price, output_price=output_price, tags=tags)
        self.data = data if isinstance(data, ReplayData) else ReplayData(data)

    def _column(self) -> int:
        ds = self.data.dataset
        if self.model not in ds.models:
            raise ConfigError(f"replay worker {self.name!r}: model {self.model!r} is not in {self.data.where} "
                              f"(models: {', '.join(ds.models)})")
        return ds.models.index(self.model)

    async def _chat(self, messages: list[Message], **params: Any) -> WorkerReply:
        j = self._column()
        ds = self.data.dataset
        i = self.data.row(messages, params)
        if i is None:
            what = (f"item_id {params['item_id']!r}" if params.get("item_id") is not None
                    else f"prompt {last_user_text(messages)[:80]!r}")
            raise UnknownQuery(self.name, f"{what} is not in {self.data.where} ({len(ds)} recorded queries)")
        score = _finite(ds.scores, i, j)
        if score is None:
            raise UnknownQuery(self.name, f"{self.data.where} has no recorded score of {self.model!r} "
                               f"for query {ds.ids[i]!r}")
        text = (ds.responses[i][j] if ds.responses is not None else None) or ""
        meta: dict[str, Any] = {"score": score, "item_id": ds.ids[i], "category": ds.categories[i],
                                "replayed": True}
        n_in, n_out = _finite(ds.input_tokens, i, j), _finite(ds.output_tokens, i, j)
        if n_in is None or n_out is None:
            meta["tokens_estimated"] = True
            n_in = messages_tokens([{"role": "user", "content": ds.prompts[i]}]) if n_in is None else n_in
            n_out = (estimate_tokens(text) if text else 0) if n_out is None else n_out
        cost = _finite(ds.costs, i, j)
        if cost is None:
            cost = self.price(int(n_in), int(n_out))
            meta["cost_from_prices"] = True
        latency = _finite(ds.latencies, i, j)
        return WorkerReply(text=text, worker=self.name, model=self.model, input_tokens=int(n_in),
                           output_tokens=int(n_out), cost=cost, latency_s=latency or 0.0, meta=meta)


def load_replay_data(spec: str, where: str) -> ReplayData:
    """Lazily load a dataset spec with `routers.data.load_dataset` (the data area's adapters)."""
    def load() -> RoutingDataset:
        try:
            from routers.data import load_dataset
        except ImportError as e:
            raise ConfigError(f"{where}: cannot load {spec!r}: routers.data.load_dataset is unavailable ({e})") \
                from None
        return load_dataset(spec)
    return ReplayData(load, where=f"{where} ({spec})")
