"""A calibrated SIMULATION of a worker pool, for CPU research and tests: no model runs.

Each simulated worker has a per-category accuracy (from the pool YAML, where each number's source
is written next to it) and prices. Asked a registered task item, it draws "correct or not" with
that probability and writes a response in the task's own format with `Task.render_answer`, so the
task grader scores it exactly as drawn. Roles (`params["role"]`):

- worker (default): answers; accuracy + delta of the last Thinker plan found in the transcript.
- thinker: returns a plan containing the marker `[thinker]` (and `plan by <name>`, which tells the
  next worker whose delta applies).
- verifier: grades the LAST worker answer in the transcript with the task grader; a wrong answer
  is caught (REJECT) with probability p_catch, a right one wrongly rejected with p_false_reject.
  The reply ends with a line `VERDICT: ACCEPT` or `VERDICT: REJECT`.

Coordination (off unless the pool YAML has a `coordination:` block; `Coordination`): a worker step
written as a workflow step prompt (`Question:` / `<Agent j response>` blocks / `Your task:`, the
format `conductor.executor.render_step_prompt` writes) gets effects from what it reads:
- instruction naming the question's domain (`domains` word lists): accuracy + `domain_delta`;
  naming only other domains: + `off_domain_delta` (a misdirected subtask);
- earlier answers visible and an instruction with a `verify_words` word: the step verifies the
  last visible answer at its own verifier rates: a wrong one is caught with p_catch and re-solved
  (own accuracy), a right one kept unless falsely rejected (p_false_reject, then re-solved);
  P(correct) = p_false_reject * a + (1 - p_false_reject) if that answer is right, else p_catch * a.
  Keeping an answer costs the `verifier` extra output tokens, re-solving the `worker` ones;
- earlier answers visible otherwise: with probability `adopt` the step goes along with the last
  visible answer (right or wrong), else it solves with accuracy + `context_delta` (the earlier
  work acts as a Thinker's plan).
Each reply's meta says which applied (`meta["coordination"]`).

Determinism: every draw comes from a numpy Generator seeded by sha256 over (pool seed, worker,
item id, role, transcript hash, params.get("nonce", 0)); the same call gives the same reply.

Accuracy lookup for an item of task T and category C (C normalized: lower case, spaces and dashes
to underscores; "mmlu/x" is split): `T/C`, `C`, `T/<MMLU group of C>` (humanities, stem,
social_sciences, other), `T`, `default`.

Tokens: input = `messages_tokens(messages)` (~4 characters a token plus 4 a message); output =
`estimate_tokens(reply text)` + `extra_output_tokens[role]` (the reasoning a real model would write
that the simulated text leaves out; from the YAML, default 0). Cost = tokens x prices. Latency =
base_s + per_output_token_s x output tokens, reported, and slept only if `simulate_latency`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from typing import Any, Callable

import numpy as np

from routers.errors import ConfigError
from routers.pool.base import (BadRequest, Message, UnknownQuery, Worker, WorkerReply, estimate_tokens,
                               messages_tokens)
from routers.tasks.base import Task, TaskItem

ROLES = ("worker", "thinker", "verifier")
THINKER_MARK = "[thinker]"
_PLAN_BY = re.compile(r"\[thinker\] plan by (\S+)")
_VERDICT = re.compile(r"VERDICT:\s*(ACCEPT|REJECT)")

# MMLU subject -> group, as in the MMLU paper's categories (Hendrycks et al. 2021).
MMLU_GROUPS: dict[str, str] = {s: g for g, subjects in {
    "humanities": "formal_logic high_school_european_history high_school_us_history "
                  "high_school_world_history international_law jurisprudence logical_fallacies "
                  "moral_disputes moral_scenarios philosophy prehistory professional_law world_religions",
    "social_sciences": "econometrics high_school_geography high_school_government_and_politics "
                       "high_school_macroeconomics high_school_microeconomics high_school_psychology "
                       "human_sexuality professional_psychology public_relations security_studies "
                       "sociology us_foreign_policy",
    "stem": "abstract_algebra anatomy astronomy college_biology college_chemistry "
            "college_computer_science college_mathematics college_physics computer_security "
            "conceptual_physics electrical_engineering elementary_mathematics high_school_biology "
            "high_school_chemistry high_school_computer_science high_school_mathematics "
            "high_school_physics high_school_statistics machine_learning",
    "other": "business_ethics clinical_knowledge college_medicine global_facts human_aging management "
             "marketing medical_genetics miscellaneous nutrition professional_accounting "
             "professional_medicine virology",
}.items() for s in subjects.split()}


def _norm(category: str) -> str:
    return re.sub(r"[\s\-]+", "_", category.strip().lower())


def domain_of(item: TaskItem) -> str:
    """The item's domain for instruction effects: "<task>/<MMLU group>" for MMLU subjects (e.g.
    "mmlu/stem"), else the task name ("gsm8k")."""
    task, cat = _norm(item.task), item.category
    if "/" in cat:
        task_part, cat = cat.split("/", 1)
        task = _norm(task_part) or task
    group = MMLU_GROUPS.get(_norm(cat))
    return f"{task}/{group}" if group else task


# The workflow step prompt (conductor.executor.render_step_prompt writes it; a test keeps them in step)
_STEP_QUESTION = "Question:\n"
_AGENT_BLOCK = re.compile(r"<Agent (\d+) response>\n(.*?)\n</Agent \1 response>", re.S)
_TASK_BLOCK = re.compile(r"\n\nYour task:\n(.*)\Z", re.S)


def step_context(messages: list[Message]) -> tuple[list[str], str | None] | None:
    """(visible earlier answers, instruction) of a workflow step prompt (the last user message),
    or None when the call is not one."""
    last = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    text = str((last or {}).get("content") or "")
    if not text.startswith(_STEP_QUESTION):
        return None
    task = _TASK_BLOCK.search(text)
    body = text[:task.start()] if task else text
    return [m.group(2) for m in _AGENT_BLOCK.finditer(body)], (task.group(1).strip() if task else None)


class Coordination:
    """Pool-level effects of a step's context and instruction (see the module docstring)."""

    def __init__(self, *, context_delta: float = 0.0, adopt: float = 0.0, verify_words: list[str] | None = None,
                 domain_delta: float = 0.0, off_domain_delta: float = 0.0,
                 domains: dict[str, list[str]] | None = None):
        self.context_delta, self.adopt = float(context_delta), float(adopt)
        self.domain_delta, self.off_domain_delta = float(domain_delta), float(off_domain_delta)
        self.verify_words = [w.lower() for w in (verify_words or [])]
        self.domains = {k: [w.lower() for w in v] for k, v in (domains or {}).items()}
        self._verify = self._words_re(self.verify_words)
        self._domain_re = {k: self._words_re(v) for k, v in self.domains.items()}

    @staticmethod
    def _words_re(words: list[str]) -> re.Pattern | None:
        # a word matches at a word start ("verif" matches "verify" and "verification")
        return re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + ")", re.I) if words else None

    def to_dict(self) -> dict[str, Any]:
        return {"context_delta": self.context_delta, "adopt": self.adopt, "verify_words": self.verify_words,
                "domain_delta": self.domain_delta, "off_domain_delta": self.off_domain_delta,
                "domains": self.domains}

    def is_verify(self, instruction: str | None) -> bool:
        return bool(instruction and self._verify and self._verify.search(instruction))

    def instruction_delta(self, instruction: str | None, domain: str) -> tuple[float, str | None]:
        """(accuracy delta, "domain" | "off_domain" | None) of an instruction for an item's domain.
        A domain key names the item's domain when equal to it or to its task ("mmlu" for "mmlu/stem")."""
        if not instruction:
            return 0.0, None
        named = [k for k, rx in self._domain_re.items() if rx is not None and rx.search(instruction)]
        if not named:
            return 0.0, None
        if any(k == domain or k == domain.split("/")[0] for k in named):
            return self.domain_delta, "domain"
        return self.off_domain_delta, "off_domain"


def _default_resolver(name: str) -> Task:
    try:
        from routers.tasks import get_task
    except ImportError as e:
        raise ConfigError(f"simulated pool: cannot load task suite {name!r} "
                          f"(routers.tasks.get_task is unavailable: {e})") from None
    return get_task(name)


class Simulation:
    """State shared by the simulated workers of one pool: the seed and the registered items."""

    def __init__(self, seed: int = 0, tasks: list[str] | None = None,
                 resolver: Callable[[str], Task] | None = None, task_limit: int | None = None,
                 coordination: Coordination | None = None):
        self.seed = int(seed)
        self.coordination = coordination
        self.task_names = list(tasks or [])
        self.task_limit = task_limit
        self.resolver = resolver or _default_resolver
        self._tasks: dict[str, Task] = {}
        self.by_id: dict[str, TaskItem] = {}
        self.by_prompt: dict[str, TaskItem] = {}
        self._loaded = not self.task_names
        self._found: dict[str, TaskItem | None] = {}

    def register(self, items: list[TaskItem], tasks: dict[str, Task] | None = None) -> None:
        """Make `items` answerable. `tasks` maps task names to Task objects for suites not in the
        task registry (tests, custom suites); others are resolved by name when first graded."""
        self._tasks.update(tasks or {})
        for it in items:
            if not isinstance(it, TaskItem):
                raise TypeError(f"register() expects TaskItem objects, got {type(it).__name__}")
            self.by_id[it.id] = it
            self.by_prompt.setdefault(it.prompt, it)
        self._found.clear()

    def task(self, name: str) -> Task:
        if name not in self._tasks:
            self._tasks[name] = self.resolver(name)
        return self._tasks[name]

    def _load_named_tasks(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for name in self.task_names:
            self.register(self.task(name).load(self.task_limit))

    def find(self, messages: list[Message], params: dict[str, Any]) -> TaskItem | None:
        """The item asked: by params["item_id"], else a message equal to a registered prompt, else a
        registered prompt contained in a message. Loads the pool's task suites on the first miss."""
        item_id = params.get("item_id")
        if item_id is not None:
            item = self.by_id.get(str(item_id))
            if item is None and not self._loaded:
                self._load_named_tasks()
                item = self.by_id.get(str(item_id))
            if item is None:
                raise UnknownQuery("simulated", f"item_id {item_id!r} is not registered "
                                   f"({len(self.by_id)} items; tasks {self.task_names})")
            return item
        item = self._match(messages)
        if item is None and not self._loaded:
            self._load_named_tasks()
            item = self._match(messages)
        return item

    def _match(self, messages: list[Message]) -> TaskItem | None:
        texts = [str(m.get("content") or "") for m in messages if m.get("role") != "assistant"]
        for t in reversed(texts):
            if t in self.by_prompt:
                return self.by_prompt[t]
        key = hashlib.sha256("\x00".join(texts).encode("utf-8", "surrogatepass")).hexdigest()
        if key not in self._found:
            self._found[key] = next((it for p, it in self.by_prompt.items()
                                     if any(p in t for t in texts)), None)
        return self._found[key]

    def rng(self, *parts: Any) -> np.random.Generator:
        h = hashlib.sha256(json.dumps([self.seed, *parts], default=str).encode()).digest()
        return np.random.default_rng(int.from_bytes(h[:16], "little"))


def transcript_hash(messages: list[Message]) -> str:
    blob = json.dumps(messages, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()[:16]


class SimulatedWorker(Worker):
    """One simulated LLM. See the module docstring for the model of accuracy, roles and tokens."""

    def __init__(self, name: str, *, accuracy: dict[str, float], model: str | None = None,
                 input_price: float = 0.0, output_price: float = 0.0, tags: dict[str, Any] | None = None,
                 sim: Simulation | None = None, p_catch: float = 0.0, p_false_reject: float = 0.0,
                 thinker_delta: float = 0.0, extra_output_tokens: dict[str, int] | None = None,
                 latency_base_s: float = 0.3, latency_per_token_s: float = 0.01,
                 simulate_latency: bool = False):
        super().__init__(name, model=model, input_price=input_price, output_price=output_price, tags=tags)
        if "default" not in accuracy:
            raise ConfigError(f"simulated worker {name!r}: accuracy needs a 'default' key")
        self.accuracy = {(_norm(k) if "/" not in k else "/".join(_norm(p) for p in k.split("/", 1))): float(v)
                         for k, v in accuracy.items()}
        self.sim = sim or Simulation()
        self.p_catch, self.p_false_reject = float(p_catch), float(p_false_reject)
        self.thinker_delta = float(thinker_delta)
        self.extra_output_tokens = {r: int(v) for r, v in (extra_output_tokens or {}).items()}
        self.latency_base_s, self.latency_per_token_s = float(latency_base_s), float(latency_per_token_s)
        self.simulate_latency = bool(simulate_latency)
        self.peers: dict[str, "SimulatedWorker"] = {name: self}  # thinkers by name (the pool fills it)

    def register(self, items: list[TaskItem], tasks: dict[str, Task] | None = None) -> None:
        self.sim.register(items, tasks)

    @property
    def cache_salt(self) -> str:
        """Everything besides the call that decides a reply: a cache never mixes seeds or settings."""
        coord = self.sim.coordination
        return json.dumps([self.sim.seed, self.accuracy, self.p_catch, self.p_false_reject, self.thinker_delta,
                           self.extra_output_tokens, sorted((n, p.thinker_delta) for n, p in self.peers.items()),
                           *([coord.to_dict()] if coord is not None else [])],
                          sort_keys=True)

    def accuracy_for(self, item: TaskItem) -> float:
        task = _norm(item.task)
        cat = item.category
        if "/" in cat:
            task_part, cat = cat.split("/", 1)
            task = _norm(task_part) or task
        cat = _norm(cat)
        for key in (f"{task}/{cat}", cat, f"{task}/{MMLU_GROUPS.get(cat, '')}", task, "default"):
            if key in self.accuracy:
                return self.accuracy[key]
        raise AssertionError("unreachable: 'default' is required")

    def _thinker_delta(self, messages: list[Message]) -> tuple[float, str | None]:
        for m in reversed(messages):
            found = _PLAN_BY.findall(str(m.get("content") or ""))
            if found:
                peer = self.peers.get(found[-1])
                return (peer.thinker_delta if peer else 0.0), found[-1]
        return 0.0, None

    @staticmethod
    def _last_answer(messages: list[Message], item: TaskItem) -> str | None:
        """The last worker answer in the transcript: the latest assistant message that is not a
        plan or a verdict; else text appended after the question in a user message."""
        usable = [m for m in messages if THINKER_MARK not in str(m.get("content") or "")
                  and not _VERDICT.search(str(m.get("content") or ""))]
        for m in reversed(usable):
            if m.get("role") == "assistant":
                return str(m.get("content") or "")
        for m in reversed(usable):
            c = str(m.get("content") or "")
            if m.get("role") == "user" and item.prompt in c:
                rest = c.replace(item.prompt, "").strip()
                if rest:
                    return rest
        return None

    async def _chat(self, messages: list[Message], **params: Any) -> WorkerReply:
        role = params.get("role", "worker") or "worker"
        if role not in ROLES:
            raise BadRequest(self.name, f"unknown role {role!r}; expected one of {ROLES}")
        try:
            item = self.sim.find(messages, params)
        except UnknownQuery as e:
            raise UnknownQuery(self.name, str(e).split(": ", 1)[-1]) from None
        rng = self.sim.rng(self.name, item.id if item else None, role, transcript_hash(messages),
                           params.get("nonce", 0))
        meta: dict[str, Any] = {"simulated": True, "role": role, "graded": item is not None}
        extra_role = role  # whose extra output tokens this reply is charged
        if item is None:
            text = self._generic(role, messages)
        elif role == "thinker":
            text = (f"{THINKER_MARK} plan by {self.name}\n1. Restate what is asked. 2. Work through the "
                    f"{item.category or item.task} facts step by step. 3. Check the result, then answer.")
            meta.update(item_id=item.id, delta=self.thinker_delta)
        elif role == "verifier":
            answer = self._last_answer(messages, item)
            right = answer is not None and self.sim.task(item.task).grade(answer, item) >= 0.5
            reject = rng.random() < (self.p_false_reject if right else self.p_catch)
            verdict = "REJECT" if reject else "ACCEPT"
            text = (f"I checked the proposed answer against the question.\nVERDICT: {verdict}")
            meta.update(item_id=item.id, verdict=verdict, answer_correct=right,
                        score=float(right != reject))  # 1.0 when the verdict is right
        else:
            base = self.accuracy_for(item)
            delta, thinker = self._thinker_delta(messages)
            p = float(np.clip(base + delta, 0.0, 1.0))
            step = step_context(messages) if self.sim.coordination is not None else None
            if step is None:
                correct = bool(rng.random() < p)
            else:
                p, correct, extra_role, effects = self._coordinated(item, p, *step, rng)
                meta["coordination"] = effects
            text = self.sim.task(item.task).render_answer(item, correct, rng)
            meta.update(item_id=item.id, p_correct=p, score=float(correct),
                        **({"thinker": thinker} if thinker else {}))
        n_in = messages_tokens(messages)
        n_out = estimate_tokens(text) + self.extra_output_tokens.get(extra_role if role == "worker" and item is not None
                                                                     else role, 0)
        latency = self.latency_base_s + self.latency_per_token_s * n_out
        if self.simulate_latency:
            await asyncio.sleep(latency)
        return WorkerReply(text=text, worker=self.name, model=self.model, input_tokens=n_in,
                           output_tokens=n_out, cost=self.price(n_in, n_out), latency_s=latency, meta=meta)

    def _coordinated(self, item: TaskItem, p: float, answers: list[str], instruction: str | None,
                     rng: np.random.Generator) -> tuple[float, bool, str, dict[str, Any]]:
        """(P(correct), correct, extra-token role, effects) of a workflow step (module docstring)."""
        c = self.sim.coordination
        d_inst, kind = c.instruction_delta(instruction, domain_of(item))
        a = float(np.clip(p + d_inst, 0.0, 1.0))
        effects: dict[str, Any] = {"instruction": kind, "visible_answers": len(answers)}
        if not answers:
            return a, bool(rng.random() < a), "worker", effects
        task = self.sim.task(item.task)
        last_ok = task.grade(answers[-1], item) >= 0.5
        effects["last_visible_correct"] = last_ok
        if c.is_verify(instruction):
            p_keep = 1.0 - (self.p_false_reject if last_ok else self.p_catch)
            keep = bool(rng.random() < p_keep)
            correct = last_ok if keep else bool(rng.random() < a)
            effects["verify"] = "kept" if keep else "redone"
            return p_keep * last_ok + (1 - p_keep) * a, correct, "verifier" if keep else "worker", effects
        a_ctx = float(np.clip(a + c.context_delta, 0.0, 1.0))
        adopt = bool(rng.random() < c.adopt)
        effects["context"] = "adopted" if adopt else "solved"
        correct = last_ok if adopt else bool(rng.random() < a_ctx)
        return c.adopt * last_ok + (1 - c.adopt) * a_ctx, correct, "worker", effects

    def _generic(self, role: str, messages: list[Message]) -> str:
        if role == "thinker":
            return f"{THINKER_MARK} plan by {self.name}\n1. Understand the request. 2. Answer it directly."
        if role == "verifier":
            return "No registered question to check against.\nVERDICT: ACCEPT"
        return (f"(simulated reply from {self.name}: this pool is a simulation and has no recorded "
                "answer for this message)")


def make_simulation(cfg: dict[str, Any]) -> Simulation:
    coord = cfg.get("coordination")
    return Simulation(seed=cfg.get("seed", 0), tasks=cfg.get("tasks"), task_limit=cfg.get("task_limit"),
                      coordination=Coordination(**coord) if coord is not None else None)


def make_worker(name: str, spec: dict[str, Any], sim: Simulation) -> SimulatedWorker:
    """Build from a validated pool-config worker entry (see `routers.pool.config`)."""
    ver, th, lat = spec.get("verifier", {}), spec.get("thinker", {}), spec.get("latency", {})
    return SimulatedWorker(name, accuracy=spec["accuracy"], model=spec.get("model"),
                           input_price=spec.get("input_price", 0.0), output_price=spec.get("output_price", 0.0),
                           tags=spec.get("tags"), sim=sim, p_catch=ver.get("p_catch", 0.0),
                           p_false_reject=ver.get("p_false_reject", 0.0), thinker_delta=th.get("delta", 0.0),
                           extra_output_tokens=spec.get("extra_output_tokens"),
                           latency_base_s=lat.get("base_s", 0.3), latency_per_token_s=lat.get("per_output_token_s", 0.01),
                           simulate_latency=spec.get("simulate_latency", False))
