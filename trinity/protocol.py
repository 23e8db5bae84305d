"""TRINITY's multi-turn protocol, shared by training and serving.

Each turn: the coordinator reads the transcript (`role: content` lines), the head turns its feature
into agent logits and role logits (separate softmaxes; sampled in training, argmax at evaluation),
and the chosen worker is called in the chosen role through a `routers.serving_router.CallFn` with the head's
full agent ranking (so a server can fall back down it). Rules:
  - at most `max_turns` turns (paper K = 5);
  - a Verifier reply containing `VERDICT: ACCEPT` ends the episode;
  - a Thinker may end with `<suggested_role>worker|verifier|thinker</suggested_role>`: the next
    turn then takes that role (the head still picks the agent); recorded as role_source "thinker";
  - roles not in `cfg.roles` are never chosen (the no-Thinker ablation masks that logit);
  - the answer is the last Worker output ("" if no Worker spoke);
  - `cfg.require_answer`: an ACCEPT before any Worker spoke does not end the episode, and the last
    turn is a Worker turn if no Worker has spoken (role_source "final"), so every episode answers;
  - a roles-free head (n_roles = 0) makes every turn a Worker turn.
Each turn is a `routers.serving_router.Step` (worker, role, reply with tokens, cost and latency), and the
coordinator's tokens are `Episode.orchestration_input_tokens`.

Many episodes run together (`run_episodes`): per turn one batched coordinator pass over all active
transcripts and concurrent worker calls. A `policy(features (n, d), states) -> logits (n, n_out)`
decides; `HeadPolicy` covers one head or a whole CMA-ES population (state.tag = candidate row).

API:
  st = start(messages, item_id=None, rng=None, tag=None) -> EpisodeState
  episodes = await run_episodes(states, featurizer=coord, policy=HeadPolicy(head[, X]), call=call,
                                workers=[...], cfg=ProtocolConfig, sample=True)
  episode = await run_episode(messages, ..., item_id=..., rng=...)        # one
  call = routers.serving_router.pool_call(pool)   # the trainers' CallFn: ask the first candidate, no fallback
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from routers.errors import ConfigError
from routers.serving_router import CallFn, Episode, Step, last_user_text
from trinity.coordinator import render_transcript
from trinity.heads import ROLES, Head, softmax

ACCEPT_RE = re.compile(r"VERDICT:\s*ACCEPT", re.IGNORECASE)
SUGGEST_RE = re.compile(r"<suggested_role>\s*([A-Za-z]+)\s*</suggested_role>", re.IGNORECASE)


@dataclass
class EpisodeState:
    messages: list[dict]
    item_id: str | None = None
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    tag: Any = None                                   # e.g. the candidate's row in a population
    turns: list[dict] = field(default_factory=list)   # transcript: {"role", "content"}
    steps: list[Step] = field(default_factory=list)
    answer: str = ""
    done: bool = False
    accepted: bool = False
    next_role: str | None = None                      # a Thinker's suggestion for the next turn
    answered: bool = False                            # a Worker has spoken
    coordinator_tokens: int = 0
    coordinator_s: float = 0.0


def start(messages: list[dict], item_id: str | None = None, rng: np.random.Generator | None = None,
          tag: Any = None) -> EpisodeState:
    """A fresh episode; the transcript starts with the user's question."""
    question = last_user_text(messages)
    if not question:
        raise ConfigError("trinity protocol: the request has no user message to route")
    return EpisodeState(messages=list(messages), item_id=item_id, tag=tag,
                        rng=rng if rng is not None else np.random.default_rng(0),
                        turns=[{"role": "user", "content": question}])


class HeadPolicy:
    """Logits from one head (its own parameters) or from population rows X[state.tag]."""

    def __init__(self, head: Head, X: np.ndarray | None = None):
        self.head, self.X = head, None if X is None else np.atleast_2d(np.asarray(X))

    @property
    def n_out(self) -> int:
        return self.head.n_out

    def __call__(self, features, states: Sequence[EpisodeState]) -> np.ndarray:
        if self.X is None:
            return self.head.logits(features)
        tags = np.array([int(s.tag) for s in states])
        uniq, inv = np.unique(tags, return_inverse=True)
        all_logits = self.head.population_logits(self.X[uniq], features)   # (U, n, O)
        return all_logits[inv, np.arange(len(states))]


def _pick(logits: np.ndarray, rng: np.random.Generator, sample: bool) -> int:
    if sample:
        return int(rng.choice(len(logits), p=softmax(logits)))
    return int(np.argmax(logits))


def worker_messages(state: EpisodeState, role: str, cfg) -> list[dict]:
    """What the chosen worker sees: its role prompt, the request, then each earlier turn as an
    assistant message named by its role (full text; only the coordinator's copy is cut), then a
    one-line cue for the role. Keeping turns as separate messages lets a verifier find the latest
    answer and a worker find the latest plan."""
    prompt = getattr(cfg, f"{role}_prompt", None)
    if not prompt:
        raise ConfigError(f"protocol.{role}_prompt: missing prompt for role {role!r}")
    msgs = [{"role": "system", "content": prompt}]
    msgs += [m for m in state.messages if m.get("role") != "system"]
    if len(state.turns) > 1:
        msgs += [{"role": "assistant", "name": t["role"], "content": t["content"]} for t in state.turns[1:]]
        msgs.append({"role": "user", "content": f"Continue as the {role.capitalize()}."})
    return msgs


async def run_episodes(states: list[EpisodeState], *, featurizer, policy: Callable, call: CallFn,
                       workers: list[str], cfg, sample: bool = True,
                       max_turns: int | None = None) -> list[Episode]:
    """Run all `states` to the end, one batched coordinator pass per turn.

    featurizer: has `.features(texts) -> (n, d)` and `.count_tokens(texts) -> list[int]` (a Coordinator).
    policy: (features, states) -> (n, L + R) logits, R = 3 (thinker, worker, verifier order) or 0.
    """
    L = len(workers)
    allowed = [r for r in cfg.roles]
    for r in allowed:
        if r not in ROLES:
            raise ConfigError(f"protocol.roles: {r!r} is not one of {', '.join(ROLES)}")
    role_mask = np.array([0.0 if r in allowed else -np.inf for r in ROLES])
    K = int(max_turns if max_turns is not None else cfg.max_turns)
    max_chars = getattr(cfg, "transcript_max_chars", None)
    require_answer = bool(getattr(cfg, "require_answer", False))
    for turn in range(K):
        active = [s for s in states if not s.done]
        if not active:
            break
        texts = [render_transcript(s.turns, max_chars) for s in active]
        t0 = time.perf_counter()
        feats = await asyncio.to_thread(featurizer.features, texts)  # keep a server's event loop free
        logits = np.asarray(policy(feats, active), dtype=np.float64)
        dt = (time.perf_counter() - t0) / len(active)
        if logits.shape[1] not in (L, L + 3):
            raise ConfigError(f"trinity protocol: policy gives {logits.shape[1]} outputs for {L} workers "
                              f"(expected {L} or {L + 3})")
        tokens = featurizer.count_tokens(texts)
        plans = []
        for s, z, ntok in zip(active, logits, tokens):
            s.coordinator_tokens += int(ntok)
            s.coordinator_s += dt
            agent_z = z[:L]
            agent = _pick(agent_z, s.rng, sample)
            ranking = [workers[agent]] + [workers[j] for j in np.argsort(-agent_z, kind="stable") if j != agent]
            if logits.shape[1] == L:
                role, source = "worker", "none"
            elif require_answer and turn == K - 1 and not s.answered:
                role, source = "worker", "final"
            elif s.next_role is not None:
                role, source = s.next_role, "thinker"
            else:
                role, source = ROLES[_pick(z[L:] + role_mask, s.rng, sample)], "head"
            s.next_role = None
            # the protocol's limits; a server lets the client's own bind the Worker turns (answer)
            params = {"role": role, "item_id": s.item_id, "max_tokens": cfg.max_tokens,
                      "temperature": cfg.temperature, "answer": role == "worker", "final": turn == K - 1}
            plans.append((s, role, source, ranking, params))
        replies = await asyncio.gather(*[call(ranking, worker_messages(s, role, cfg), params)
                                         for s, role, source, ranking, params in plans])
        for (s, role, source, ranking, _), reply in zip(plans, replies):
            meta: dict[str, Any] = {"turn": turn, "role_source": source}
            text = reply.text or ""
            if role == "worker":
                s.answer, s.answered = text, True
            elif role == "verifier" and ACCEPT_RE.search(text):
                if s.answered or not require_answer:
                    s.accepted = s.done = True
                    meta["accepted"] = True
                else:
                    meta["accept_ignored"] = "no Worker answer yet"
            elif role == "thinker":
                m = SUGGEST_RE.search(text)
                if m and m.group(1).lower() in allowed:
                    s.next_role = m.group(1).lower()
                    meta["suggested_role"] = s.next_role
            s.turns.append({"role": role, "content": text})
            s.steps.append(Step(worker=reply.worker, role=role, reply=reply, candidates=ranking, meta=meta))
    return [Episode(answer=s.answer, steps=s.steps, orchestration_input_tokens=s.coordinator_tokens,
                    orchestration_latency_s=s.coordinator_s,
                    meta={"turns": len(s.steps), "accepted": s.accepted, "item_id": s.item_id})
            for s in states]


async def run_episode(messages: list[dict], *, featurizer, policy: Callable, call: CallFn,
                      workers: list[str], cfg, sample: bool = False, item_id: str | None = None,
                      rng: np.random.Generator | None = None) -> Episode:
    """One episode (serving: argmax by default)."""
    (ep,) = await run_episodes([start(messages, item_id=item_id, rng=rng)], featurizer=featurizer,
                               policy=policy, call=call, workers=workers, cfg=cfg, sample=sample)
    return ep
