"""Pool YAML: which workers exist, how to reach them, what they cost, and their limits.

    name: my-pool
    seed: 0                      # simulated pools: the seed of every draw
    tasks: [mmlu, gsm8k]         # simulated pools: suites loaded when an unregistered item is asked
    data: ../data/recording      # replay pools: dataset spec (relative to this file)
    cache: ~/.cache/baton/responses.sqlite   # optional response cache (load_pool(cache=) overrides)
    defaults:                    # limits every worker inherits
      max_concurrency: 8
      timeout: 60
      retries: 3
      allowed_fails: 3           # serving: failures before a cooldown
      cooldown_s: 30
    workers:
      - name: gpt-4o-mini
        backend: openai          # openai | hf | replay | simulated
        model: openai/gpt-4o-mini
        base_url: https://openrouter.ai/api/v1
        api_key_env: OPENROUTER_API_KEY   # the variable's NAME; null for keyless local servers
        input_price: 0.15        # $ per million tokens
        output_price: 0.6
        tags: {provider: openai, region: us, open_weights: false}
        limits: {max_concurrency: 4}
        stream: {chunk_chars: 16, delay_s: 0.02}   # hf/replay/simulated: how `stream` hands out a
                                                   # finished reply (openai streams natively)

Everything is validated on load; errors name the file and the field, e.g.
`configs/pools/x.yaml: workers[2].input_price: expected a number, got 'cheap'`.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any


from routers.errors import ConfigError
from routers.yamlfile import read_yaml
from routers.pool.pool import DEFAULT_LIMITS, Pool

BACKENDS = ("openai", "hf", "replay", "simulated")
TOP_KEYS = {"name", "description", "seed", "tasks", "task_limit", "data", "cache", "defaults", "workers",
            "coordination"}
COORDINATION_KEYS = {"context_delta", "adopt", "verify_words", "domain_delta", "off_domain_delta", "domains"}
COMMON_KEYS = {"name", "backend", "model", "input_price", "output_price", "tags", "limits", "params",
               "description"}
BACKEND_KEYS = {
    "openai": {"base_url", "api_key_env"},
    "hf": {"gguf_file", "device", "dtype", "max_new_tokens", "max_batch_size", "batch_wait_s", "stream"},
    "replay": {"data", "stream"},
    "simulated": {"accuracy", "verifier", "thinker", "latency", "extra_output_tokens", "simulate_latency", "stream"},
}
LIMIT_KEYS = {"max_concurrency": int, "timeout": float, "retries": int, "allowed_fails": int, "cooldown_s": float}


def _num(v: Any, where: str, *, lo: float | None = None, hi: float | None = None, integer: bool = False) -> Any:
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok:
        raise ConfigError(f"{where}: expected {'an integer' if integer else 'a number'}, got {v!r}")
    if lo is not None and v < lo:
        raise ConfigError(f"{where}: must be >= {lo}, got {v!r}")
    if hi is not None and v > hi:
        raise ConfigError(f"{where}: must be <= {hi}, got {v!r}")
    return v


def _str(v: Any, where: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ConfigError(f"{where}: expected a non-empty string, got {v!r}")
    return v


def _map(v: Any, where: str) -> dict:
    if not isinstance(v, dict):
        raise ConfigError(f"{where}: expected a mapping, got {v!r}")
    return v


def _keys(d: dict, allowed: set[str], where: str) -> None:
    extra = sorted(set(d) - allowed)
    if extra:
        at = f"{where} {extra[0]}" if where.endswith(":") else f"{where}.{extra[0]}"
        raise ConfigError(f"{at}: unknown field (allowed: {', '.join(sorted(allowed))})")


def _limits(v: Any, where: str) -> dict[str, Any]:
    _keys(_map(v, where), set(LIMIT_KEYS), where)
    out = {}
    for k, typ in LIMIT_KEYS.items():
        if k in v:
            lo = 1 if k == "max_concurrency" else (0 if k != "timeout" else 1e-9)
            out[k] = _num(v[k], f"{where}.{k}", lo=lo, integer=typ is int)
    return out


def _resolve(path: str, base: Path | None) -> str:
    p = Path(os.path.expanduser(path))
    if not p.is_absolute() and base is not None and (path.startswith(".") or (base / p).exists()):
        p = base / p
    return os.path.normpath(p)


def _worker(w: Any, i: int, src: str, base: Path | None, defaults: dict[str, Any]) -> dict[str, Any]:
    where = f"{src}: workers[{i}]"
    _map(w, where)
    name = _str(w.get("name"), f"{where}.name")
    backend = w.get("backend")
    if backend not in BACKENDS:
        raise ConfigError(f"{where}.backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    _keys(w, COMMON_KEYS | BACKEND_KEYS[backend], where)
    out: dict[str, Any] = {"name": name, "backend": backend}
    if "model" in w:
        out["model"] = _str(w["model"], f"{where}.model")
    elif backend == "hf":
        raise ConfigError(f"{where}.model: required for backend hf (hub id, folder, .gguf or pkg:...)")
    elif backend == "openai":
        raise ConfigError(f"{where}.model: required for backend openai (the endpoint's model id)")
    for k in ("input_price", "output_price"):
        out[k] = float(_num(w.get(k, 0.0), f"{where}.{k}", lo=0))
    tags = dict(_map(w.get("tags", {}), f"{where}.tags"))
    for k in ("provider", "region"):
        if k in tags:
            _str(tags[k], f"{where}.tags.{k}")
    if "open_weights" in tags and not isinstance(tags["open_weights"], bool):
        raise ConfigError(f"{where}.tags.open_weights: expected true or false, got {tags['open_weights']!r}")
    out["tags"] = tags
    out["limits"] = {**defaults, **_limits(w.get("limits", {}), f"{where}.limits")}
    if "params" in w:
        out["params"] = dict(_map(w["params"], f"{where}.params"))
    if "stream" in w:
        st = _map(w["stream"], f"{where}.stream")
        _keys(st, {"chunk_chars", "delay_s"}, f"{where}.stream")
        out["stream"] = {"chunk_chars": _num(st.get("chunk_chars", 16), f"{where}.stream.chunk_chars", lo=1,
                                             integer=True),
                         "delay_s": float(_num(st.get("delay_s", 0.0), f"{where}.stream.delay_s", lo=0))}

    if backend == "openai":
        if "base_url" in w:
            out["base_url"] = _str(w["base_url"], f"{where}.base_url")
        key = w.get("api_key_env", "OPENAI_API_KEY")
        out["api_key_env"] = None if key is None else _str(key, f"{where}.api_key_env")
    elif backend == "hf":
        for k in ("gguf_file", "device", "dtype"):
            if k in w:
                out[k] = _str(w[k], f"{where}.{k}")
        for k in ("max_new_tokens", "max_batch_size"):
            if k in w:
                out[k] = _num(w[k], f"{where}.{k}", lo=1, integer=True)
        if "batch_wait_s" in w:
            out["batch_wait_s"] = float(_num(w["batch_wait_s"], f"{where}.batch_wait_s", lo=0))
        if not out["model"].startswith("pkg:") and out["model"].startswith("."):
            out["model"] = _resolve(out["model"], base)
    elif backend == "replay":
        if "data" in w:
            out["data"] = _resolve(_str(w["data"], f"{where}.data"), base)
    elif backend == "simulated":
        acc = _map(w.get("accuracy"), f"{where}.accuracy")
        if "default" not in acc:
            raise ConfigError(f"{where}.accuracy.default: required (the accuracy on categories not listed)")
        out["accuracy"] = {str(k): float(_num(v, f"{where}.accuracy.{k}", lo=0, hi=1)) for k, v in acc.items()}
        for sect, fields in (("verifier", ("p_catch", "p_false_reject")), ("thinker", ("delta",))):
            if sect in w:
                s = _map(w[sect], f"{where}.{sect}")
                _keys(s, set(fields), f"{where}.{sect}")
                out[sect] = {k: float(_num(s[k], f"{where}.{sect}.{k}", lo=-1 if k == "delta" else 0, hi=1))
                             for k in fields if k in s}
        if "latency" in w:
            lat = _map(w["latency"], f"{where}.latency")
            _keys(lat, {"base_s", "per_output_token_s"}, f"{where}.latency")
            out["latency"] = {k: float(_num(v, f"{where}.latency.{k}", lo=0)) for k, v in lat.items()}
        if "extra_output_tokens" in w:
            ext = _map(w["extra_output_tokens"], f"{where}.extra_output_tokens")
            _keys(ext, {"worker", "thinker", "verifier"}, f"{where}.extra_output_tokens")
            out["extra_output_tokens"] = {k: _num(v, f"{where}.extra_output_tokens.{k}", lo=0, integer=True)
                                          for k, v in ext.items()}
        if "simulate_latency" in w:
            if not isinstance(w["simulate_latency"], bool):
                raise ConfigError(f"{where}.simulate_latency: expected true or false, got {w['simulate_latency']!r}")
            out["simulate_latency"] = w["simulate_latency"]
    return out


def _words(v: Any, where: str) -> list[str]:
    if not isinstance(v, list) or not v or not all(isinstance(w, str) and w.strip() for w in v):
        raise ConfigError(f"{where}: expected a non-empty list of words, got {v!r}")
    return [w.strip() for w in v]


def _coordination(v: Any, where: str) -> dict[str, Any]:
    """The simulated pool's coordination effects (routers.pool.simulated.Coordination)."""
    c = _map(v, where)
    _keys(c, COORDINATION_KEYS, where)
    out: dict[str, Any] = {k: float(_num(c[k], f"{where}.{k}", lo=-1, hi=1))
                           for k in ("context_delta", "domain_delta", "off_domain_delta") if k in c}
    if "adopt" in c:
        out["adopt"] = float(_num(c["adopt"], f"{where}.adopt", lo=0, hi=1))
    if "verify_words" in c:
        out["verify_words"] = _words(c["verify_words"], f"{where}.verify_words")
    if "domains" in c:
        out["domains"] = {str(k): _words(w, f"{where}.domains.{k}") for k, w in _map(c["domains"], f"{where}.domains").items()}
    return out


def validate_pool_config(raw: Any, src: str = "<pool>", base: Path | None = None) -> dict[str, Any]:
    """The validated, normalized config (relative paths resolved against `base`)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{src}: expected a mapping with a 'workers' list, got {type(raw).__name__}")
    _keys(raw, TOP_KEYS, f"{src}:")
    cfg: dict[str, Any] = {"name": str(raw.get("name") or (Path(src).stem if src != "<pool>" else "pool"))}
    if "description" in raw:
        cfg["description"] = str(raw["description"])
    cfg["seed"] = _num(raw.get("seed", 0), f"{src}: seed", integer=True)
    if "tasks" in raw:
        tasks = raw["tasks"]
        if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
            raise ConfigError(f"{src}: tasks: expected a list of task names, got {tasks!r}")
        cfg["tasks"] = list(tasks)
    if raw.get("task_limit") is not None:
        cfg["task_limit"] = _num(raw["task_limit"], f"{src}: task_limit", lo=1, integer=True)
    if raw.get("data") is not None:
        cfg["data"] = _resolve(_str(raw["data"], f"{src}: data"), base)
    if raw.get("cache") is not None:
        cfg["cache"] = _resolve(_str(raw["cache"], f"{src}: cache"), base)
    if raw.get("coordination") is not None:
        cfg["coordination"] = _coordination(raw["coordination"], f"{src}: coordination")
    defaults = {**DEFAULT_LIMITS, **_limits(raw.get("defaults", {}), f"{src}: defaults")}
    cfg["defaults"] = defaults
    workers = raw.get("workers")
    if not isinstance(workers, list) or not workers:
        raise ConfigError(f"{src}: workers: expected a non-empty list, got {workers!r}")
    cfg["workers"] = [_worker(w, i, src, base, defaults) for i, w in enumerate(workers)]
    if "coordination" in cfg and not any(w["backend"] == "simulated" for w in cfg["workers"]):
        raise ConfigError(f"{src}: coordination: only simulated workers have coordination effects, and this "
                          "pool has none")
    seen: dict[str, int] = {}
    for i, w in enumerate(cfg["workers"]):
        if w["name"] in seen:
            raise ConfigError(f"{src}: workers[{i}].name: {w['name']!r} repeats workers[{seen[w['name']]}]")
        seen[w["name"]] = i
        if w["backend"] == "replay" and "data" not in w and "data" not in cfg:
            raise ConfigError(f"{src}: workers[{i}].data: replay workers need 'data' (here or at the top level)")
    return cfg


CONFIG_DIR = (Path(__file__).resolve().parents[2] / "baton" / "configs").resolve() / "pools"  # repo link or installed data


def pool_path(name_or_path: str | Path) -> Path:
    """A pool file path; a bare name such as "simulated" means configs/pools/simulated.yaml."""
    p = Path(name_or_path)
    if not p.exists() and p.suffix == "" and (CONFIG_DIR / f"{p.name}.yaml").is_file():
        return CONFIG_DIR / f"{p.name}.yaml"
    return p


def read_pool_config(path: str | Path) -> dict[str, Any]:
    path = pool_path(path)
    return validate_pool_config(_read_with_base(path), str(path), path.resolve().parent)


def unpriced_workers(path_or_dict: str | Path | dict[str, Any]) -> list[str]:
    """Workers whose entry sets neither input_price nor output_price. Their validated 0.0 is a
    default, not a price (an explicit 0 is: a free local model), so spend accounting must not read
    it as free (routers.accounting's rule)."""
    raw = path_or_dict if isinstance(path_or_dict, dict) else _read_with_base(pool_path(path_or_dict))
    return [str(w.get("name")) for w in (raw or {}).get("workers") or []
            if isinstance(w, dict) and "input_price" not in w and "output_price" not in w]


def _read_with_base(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The pool file's mapping; `base: other.yaml` (relative to this file) supplies every top-level
    key this file does not set, so a variant pool restates only what it changes."""
    raw = read_yaml(path, "pool file")
    if not isinstance(raw, dict) or "base" not in raw:
        return raw
    base = raw.pop("base")
    target = (path.resolve().parent / _str(base, f"{path}: base")).resolve()
    if target in seen or target == path.resolve():
        raise ConfigError(f"{path}: base: {base} makes a cycle of pool files")
    if not target.is_file():
        raise ConfigError(f"{path}: base: {target} does not exist")
    parent = _read_with_base(target, (*seen, path.resolve()))
    if not isinstance(parent, dict):
        raise ConfigError(f"{target}: expected a mapping with a 'workers' list (the base of {path})")
    return {**parent, **raw}


def build_pool(cfg: dict[str, Any], *, cache: str | None = None, src: str = "<pool>") -> Pool:
    """Workers from a validated config. Backends are imported only when a pool uses them."""
    from routers.pool.cache import ResponseCache
    workers, sims, datas = [], {}, {}
    for i, w in enumerate(cfg["workers"]):
        where = f"{src}: workers[{i}]"
        if w["backend"] == "openai":
            from routers.pool.openai_worker import make_worker
            workers.append(make_worker(w["name"], w, where))
        elif w["backend"] == "hf":
            from routers.pool.hf_worker import make_worker as make_hf
            workers.append(make_hf(w["name"], w))
        elif w["backend"] == "simulated":
            from routers.pool.simulated import make_simulation, make_worker as make_sim
            sim = sims.setdefault("sim", make_simulation(cfg))
            workers.append(make_sim(w["name"], w, sim))
        else:
            from routers.pool.replay import ReplayWorker, load_replay_data
            spec = w.get("data", cfg.get("data"))
            if spec not in datas:
                if "://" not in spec and (spec.startswith("/") or spec.startswith(".")) and not Path(spec).exists():
                    field = "data" if "data" in w else None
                    raise ConfigError(f"{where + '.data' if field else src + ': data'}: {spec} does not exist "
                                      "(the recorded data this replay pool needs is absent)")
                datas[spec] = load_replay_data(spec, src)
            workers.append(ReplayWorker(w["name"], data=datas[spec], model=w.get("model"),
                                        input_price=w["input_price"], output_price=w["output_price"],
                                        tags=w["tags"]))
    for w, spec in zip(workers, cfg["workers"]):
        if "stream" in spec:
            w.stream_chunk_chars, w.stream_delay_s = spec["stream"]["chunk_chars"], spec["stream"]["delay_s"]
    sim_workers = [w for w in workers if hasattr(w, "peers")]
    for w in sim_workers:  # thinkers are looked up by name
        w.peers = {p.name: p for p in sim_workers}
    cache_path = cache or cfg.get("cache")
    return Pool(workers, config=cfg, cache=ResponseCache(cache_path) if cache_path else None,
                limits={w["name"]: w["limits"] for w in cfg["workers"]})


def load_pool(path_or_dict: str | Path | dict[str, Any], *, cache: str | None = None) -> Pool:
    """A Pool from a YAML file, a bundled pool name ("simulated", "smollm2_local",
    "llmrouter_replay"), or an in-memory dict (validated the same way)."""
    if isinstance(path_or_dict, dict):
        cfg = validate_pool_config(copy.deepcopy(path_or_dict))
        return build_pool(cfg, cache=cache)
    cfg = read_pool_config(path_or_dict)
    return build_pool(cfg, cache=cache, src=str(pool_path(path_or_dict)))
