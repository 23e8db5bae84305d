"""Conductor checkpoints and the serving wrapper.

A checkpoint is the policy's HF model folder (`save_pretrained`, tokenizer included) plus
`conductor_config.json`: the pool it was trained for (names, descriptions, prices), the prompt
rules and the limits, so serving rebuilds exactly the training prompt. `routers.registry` knows a
Conductor checkpoint by that file.

`ConductorRouter` is Hub-native (`routers.checkpoint.HubMixin`): `save_pretrained` (with a model
card), `from_pretrained` (a folder or a Hub repo id), `push_to_hub`.

`ConductorRouter.answer` writes a workflow with the policy (greedy), parses it, runs it through
the caller's `CallFn` (or, called synchronously with `pool=`, through that pool as the Python
API's other routers do), and reports the policy's own tokens as orchestration tokens. An unparsable
workflow falls back to one step to `fallback_worker` (recorded in the episode's meta).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, Awaitable

from conductor.env import ConductorEnv
from conductor.executor import execute
from conductor.prompts import build_prompt
from conductor.workflow import Workflow, WorkflowError, parse_workflow
from routers.checkpoint import HubMixin, make_readable, write_model_card
from routers.errors import CheckpointError, ConfigError
from routers.pool.base import Message
from routers.serving_router import CallFn, Episode, ServingRouter, last_user_text

CONFIG_FILE = "conductor_config.json"
FORMAT_VERSION = 1


def conductor_config(env: ConductorEnv) -> dict[str, Any]:
    cfg = env.cfg
    pool = env.pool
    workers = {}
    for n in env.workers:
        pin, pout = pool.prices(n) if hasattr(pool, "prices") else (0.0, 0.0)
        tags = pool.tags(n) if hasattr(pool, "tags") else {}
        desc = cfg.pool.descriptions.get(n) or (tags.get("description") if isinstance(tags, dict) else None)
        workers[n] = {"description": desc, "input_price": pin, "output_price": pout}
    return {"router_type": "conductor", "format_version": FORMAT_VERSION, "name": cfg.name,
            "workers": workers, "template": cfg.prompt.template, "few_shot": cfg.prompt.few_shot,
            "prefill": cfg.prompt.prefill, "max_steps": cfg.workflow.max_steps,
            "max_new_tokens": cfg.grpo["max_completion_length"],
            "use_subtasks": cfg.workflow.use_subtasks, "force_worker": cfg.workflow.force_worker,
            "fallback_worker": cfg.workflow.fallback_worker or env.workers[0],
            "recursion": {"enabled": cfg.recursion.enabled, "max_depth": cfg.recursion.max_depth,
                          "name": cfg.recursion.name},
            "worker_params": env.worker_params(), "train_config": cfg.to_dict()}


def save_conductor(model, tokenizer, env: ConductorEnv, out: str | Path, metrics: dict | None = None) -> Path:
    """Write the HF model folder plus conductor_config.json into `out`; `metrics` (e.g. the held-out
    evaluation after training) go into it and onto the model card."""
    cfg = conductor_config(env)
    if metrics:
        cfg["metrics"] = metrics
    return _write(model, tokenizer, cfg, out)


def _write(model, tokenizer, config: dict[str, Any], out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    write_model_card(out, **card_facts(config))
    make_readable(out)
    return out


def card_facts(c: dict[str, Any]) -> dict[str, Any]:
    """The model card of a checkpoint from its conductor_config.json (`routers.checkpoint.write_model_card`)."""
    train = c.get("train_config") or {}
    policy = (train.get("policy") or {}).get("model")
    return {"router_type": "conductor", "workers": list(c["workers"]),
            "coordinator": {"policy_model": policy, "revision": None, "max_new_tokens": c.get("max_new_tokens")},
            "training_data": train.get("data"), "training_config": train, "metrics": c.get("metrics"),
            "summary": f"A Conductor router (arXiv 2512.04388): policy LM `{policy}`, fine-tuned with GRPO, "
                       f"writes a workflow of at most {c.get('max_steps')} steps over the workers.",
            "limitations": [
                "The policy was trained on the training task's questions with these workers described as in "
                "the training prompt; other workers or descriptions are outside what it learned.",
                f"An unparsable workflow falls back to one call to `{c.get('fallback_worker')}` (recorded in "
                "the episode's meta).",
                "Workflows call several workers per question: cost and latency are a multiple of one call's."]}


class _StoredPool:
    """The pool as the checkpoint remembers it (for the prompt's worker lines)."""

    def __init__(self, workers: dict[str, dict]):
        self.w = workers

    def tags(self, n):
        return {"description": self.w[n].get("description")} if self.w[n].get("description") else {}

    def prices(self, n):
        return self.w[n].get("input_price", 0.0), self.w[n].get("output_price", 0.0)


class ConductorRouter(HubMixin, ServingRouter):
    def __init__(self, model, tokenizer, config: dict[str, Any], *, name: str | None = None):
        from conductor.policy import Generator

        self.cfg = config
        self.name = name or config.get("name") or "conductor"
        self.workers = list(config["workers"])
        self.recursion = config.get("recursion") or {"enabled": False}
        self.generator = Generator(model, tokenizer, max_new_tokens=int(config["max_new_tokens"]))
        self._pool = _StoredPool(config["workers"])

    def _names(self, depth: int) -> list[str]:
        r = self.recursion
        return self.workers + ([r["name"]] if r.get("enabled") and depth < r.get("max_depth", 0) else [])

    def prompt(self, question: str, depth: int = 0) -> str:
        c = self.cfg
        return build_prompt(question, self._pool, self._names(depth), template=c.get("template"),
                            few_shot=c.get("few_shot", True), max_steps=c["max_steps"], prefill=c.get("prefill", ""),
                            self_name=self.recursion.get("name") if self.recursion.get("enabled") else None)

    async def _orchestrate(self, question: str, call: CallFn, depth: int) -> Episode:
        c = self.cfg
        t0 = time.perf_counter()
        gen = (await asyncio.to_thread(self.generator, [self.prompt(question, depth)]))[0]
        orch = time.perf_counter() - t0
        meta: dict[str, Any] = {"conductor_output": gen.text}
        try:
            wf = parse_workflow(c.get("prefill", "") + gen.text, self._names(depth), c["max_steps"])
        except WorkflowError as e:
            fb = c["fallback_worker"]
            wf = Workflow([fb], [""], [[]])
            meta.update(parse_error=str(e), parse_error_code=e.code, fallback=fb)

        async def recurse(q: str, d: int) -> Episode:
            return await self._orchestrate(q, call, d)

        ep = await execute(wf, question, call, depth=depth, params=dict(c.get("worker_params") or {}),
                           use_subtasks=c.get("use_subtasks", True), force_worker=c.get("force_worker"),
                           self_name=self.recursion.get("name") if self.recursion.get("enabled") else None,
                           recurse=recurse)
        ep.orchestration_input_tokens += gen.prompt_tokens
        ep.orchestration_output_tokens += gen.completion_tokens
        ep.orchestration_latency_s += orch
        ep.meta.update(meta)
        return ep

    def answer(self, messages: list[Message], call: CallFn | None = None, *, pool: Any = None,
               lam: float = 0.0) -> Episode | Awaitable[Episode]:
        """One episode, two ways to ask. As a `ServingRouter` (`baton serve`, `baton eval`):
        `await router.answer(messages, call)`. From synchronous code, as `TrinityRouter.answer`:
        `router.answer(messages, pool=pool)` returns the Episode, each step sent to the first of its
        workers that answers, through the same serving path (`routers.baselines.base.run_episode_sync`)."""
        if pool is not None:
            if call is not None:
                raise ConfigError(f"{self.name}: answer takes a CallFn (awaited) or pool= (synchronous), not both")
            from routers.baselines.base import run_episode_sync
            return run_episode_sync(self, messages, pool, lam)
        if call is None:
            raise ConfigError(f"{self.name}: answer needs pool= (synchronous) or a CallFn (awaited, as served)")
        return self._orchestrate(last_user_text(messages), call, 0)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "max_steps": self.cfg["max_steps"], "recursion": self.recursion}

    # -- Hub (routers.checkpoint.HubMixin) -----------------------------------------------------
    @classmethod
    def checkpoint_type(cls) -> str:
        return "conductor"

    @classmethod
    def _from_checkpoint(cls, path: Path, **kw: Any) -> "ConductorRouter":
        return load_router(path, **kw)

    def save(self, path: str | Path) -> Path:
        return _write(self.generator.model, self.generator.tok, self.cfg, path)

    def card(self) -> dict[str, Any]:
        return card_facts(self.cfg)

def load_router(path: str | Path, serving: bool = False, pool: Any = None, name: str | None = None,
                device: str = "cpu", dtype: str = "float32") -> ConductorRouter:
    """Load a Conductor checkpoint as a `ServingRouter` (a workflow router has no per-model quality
    table, so `serving=False` returns the same object). With `pool`, check it has every worker."""
    from conductor.policy import load_policy

    path = Path(path)
    try:
        cfg = json.loads((path / CONFIG_FILE).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no {CONFIG_FILE}; not a Conductor checkpoint") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path / CONFIG_FILE}: not valid JSON ({e})") from None
    if cfg.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path / CONFIG_FILE}: format_version {cfg.get('format_version')!r}, "
                              f"expected {FORMAT_VERSION}")
    for key in ("workers", "max_steps", "max_new_tokens", "fallback_worker"):
        if key not in cfg:
            raise CheckpointError(f"{path / CONFIG_FILE}: missing {key!r}")
    if pool is not None:
        missing = [w for w in cfg["workers"] if w not in list(pool.names)]
        if missing:
            raise CheckpointError(f"{path}: the pool lacks workers the Conductor was trained with: {missing}")
    if not (path / "config.json").is_file():
        raise CheckpointError(f"{path}: no model config.json beside {CONFIG_FILE}")
    try:
        model, tok = load_policy(str(path), dtype=dtype, device=device)
    except (OSError, ValueError) as e:  # missing or damaged weights / tokenizer files
        raise CheckpointError(f"{path}: the policy model cannot be loaded ({type(e).__name__}: {e})") from None
    return ConductorRouter(model, tok, cfg, name=name)
