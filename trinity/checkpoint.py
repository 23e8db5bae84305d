"""TRINITY checkpoints: a directory with config.json (what to rebuild and what it must match) and
router.safetensors (the trained numbers: head parameters and SVF offsets, float64).

config.json keys: router_type "trinity", format_version, coordinator (model spec, weights
fingerprint, hidden size, layer, position, max_tokens, truncation side, dtype), head (spec),
svf (targets and sizes, or null), workers (head order), roles, protocol, training, metrics,
mean_cost (per worker, head order, or null).

Loading refuses, with a `CheckpointError` naming the mismatch: another format version, another
coordinator (weights fingerprint or hidden size differ), a pool that lacks a checkpoint worker,
a head/SVF vector of the wrong length.

API:
  save(path, *, coordinator, head, workers, protocol=None, svf=None, training=None, metrics=None,
       mean_cost=None) -> Path          # coordinator: a Coordinator (or its identity() dict)
  load(path, device="cpu", *, coordinator=None, pool=None, workers=None) -> TrinityModel
  load_router(path, serving=False, **kw)  # the registry's entry: Router for `baton eval`,
                                          # ServingRouter (serving=True, pool=, name=, device=)
  trinity.load(path, device=...) is `load`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from routers.checkpoint import load_safetensors, read_router_config, save_safetensors
from routers.errors import CheckpointError, ConfigError

FORMAT_VERSION = 1
WEIGHTS = "router.safetensors"


def _jsonable(x: Any) -> Any:
    if x is None:
        return None
    if dataclasses.is_dataclass(x):
        return dataclasses.asdict(x)
    return json.loads(json.dumps(x, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def save(path, *, coordinator, head, workers: list[str], protocol=None, svf=None,
         training: Any = None, metrics: dict | None = None, mean_cost=None) -> Path:
    """Write a checkpoint. `svf` is the coordinator's SVF object (its current offsets are saved) or
    None; `training` the run config (dataclass or dict)."""
    path = Path(path)
    if len(workers) != head.n_agents:
        raise CheckpointError(f"{path}: {len(workers)} workers for a head with {head.n_agents} agents")
    ident = coordinator.identity() if hasattr(coordinator, "identity") else dict(coordinator)
    if hasattr(coordinator, "dtype"):
        ident["dtype"] = coordinator.dtype
    if int(ident.get("hidden_size", head.d)) != head.d:
        raise CheckpointError(f"{path}: head expects d={head.d}, coordinator has {ident.get('hidden_size')}")
    if svf is None and getattr(coordinator, "svf", None) is not None and np.any(coordinator.svf.offsets):
        svf = coordinator.svf
    cfg = {
        "router_type": "trinity", "format_version": FORMAT_VERSION,
        "coordinator": ident, "head": head.spec(),
        "svf": None if svf is None else {"targets": list(svf.names), "sizes": list(svf.sizes)},
        "workers": list(workers),
        "roles": list(getattr(protocol, "roles", [])) if protocol is not None and head.n_roles else [],
        "protocol": _jsonable(protocol), "training": _jsonable(training), "metrics": _jsonable(metrics or {}),
        "mean_cost": None if mean_cost is None else [float(c) for c in np.asarray(mean_cost).reshape(-1)],
    }
    path.mkdir(parents=True, exist_ok=True)
    tensors = {"head": np.ascontiguousarray(head.get_flat(), dtype=np.float64)}
    if svf is not None:
        tensors["svf_offsets"] = np.ascontiguousarray(svf.offsets, dtype=np.float64)
    save_safetensors(tensors, path / WEIGHTS)
    (path / "config.json").write_text(json.dumps(cfg, indent=2))
    return path


@dataclass
class TrinityModel:
    """A loaded checkpoint: coordinator (SVF applied), head, workers in head order, protocol."""
    coordinator: Any
    head: Any
    workers: list[str]
    protocol: Any
    config: dict = field(default_factory=dict)

    @property
    def mean_cost(self) -> np.ndarray | None:
        mc = self.config.get("mean_cost")
        return None if mc is None else np.asarray(mc, dtype=np.float64)

    def agent_logits(self, texts: list[str]) -> np.ndarray:
        """(n, L) worker logits for rendered transcripts."""
        return self.head.split(self.head.logits(self.coordinator.features(texts)))[0]

    def policy(self):
        from trinity.protocol import HeadPolicy
        return HeadPolicy(self.head)


def read_config(path) -> dict:
    path = Path(path)
    f = path / "config.json"
    cfg = read_router_config(path, "trinity")
    if cfg.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{f}: format_version {cfg.get('format_version')!r}; this baton reads "
                              f"version {FORMAT_VERSION}")
    for k in ("coordinator", "head", "workers"):
        if k not in cfg:
            raise CheckpointError(f"{f}: missing {k!r}")
    if not (path / WEIGHTS).is_file():
        raise CheckpointError(f"{path}: missing {WEIGHTS}")
    return cfg


def check_coordinator(cfg: dict, coordinator, where) -> None:
    want = cfg["coordinator"]
    have = coordinator.identity()
    for k in ("fingerprint", "hidden_size"):
        if want.get(k) is not None and want.get(k) != have.get(k):
            raise CheckpointError(
                f"{where}: trained with coordinator {want.get('model')!r} ({k} {want.get(k)}), but the "
                f"coordinator given is {have.get('model')!r} ({k} {have.get(k)}): another model")
    for k in ("layer", "position", "max_tokens", "truncation_side"):
        if k in want and want[k] != have.get(k):
            raise CheckpointError(f"{where}: coordinator {k} is {have.get(k)!r}, the checkpoint was "
                                  f"trained with {want[k]!r}")


def check_workers(cfg: dict, names, where) -> None:
    missing = [w for w in cfg["workers"] if w not in set(names)]
    if missing:
        raise CheckpointError(f"{where}: the pool lacks worker(s) {', '.join(missing)} that this router "
                              f"was trained on (pool has: {', '.join(names)})")


def _protocol(cfg: dict, where):
    from trinity.config import from_dict
    try:
        return from_dict({"protocol": cfg.get("protocol") or {}}).protocol
    except ConfigError as e:
        raise CheckpointError(f"{where}: bad protocol section ({e})") from None


def load(path, device: str = "cpu", *, coordinator=None, pool=None, workers: list[str] | None = None,
         dtype: str | None = None) -> TrinityModel:
    """Restore a checkpoint on `device`. Pass an already loaded `coordinator` to reuse it (it is
    checked against the checkpoint), and `pool` (anything with `.names`) or `workers` to check the
    pool has every worker the head routes to."""
    from trinity.coordinator import Coordinator
    from trinity.heads import Head
    path = Path(path)
    cfg = read_config(path)
    where = str(path)
    names = list(pool.names) if pool is not None else workers
    if names is not None:
        check_workers(cfg, names, where)
    tensors = load_safetensors(path / WEIGHTS)  # before the coordinator loads: a corrupt file fails at once
    c = cfg["coordinator"]
    if coordinator is None:
        coordinator = Coordinator(c["model"], layer=c["layer"], position=c["position"],
                                  max_tokens=c["max_tokens"], truncation_side=c.get("truncation_side", "right"),
                                  device=device, dtype=dtype or c.get("dtype", "float32"))
    check_coordinator(cfg, coordinator, where)
    try:
        head = Head.from_spec(cfg["head"])
    except (ConfigError, KeyError, TypeError) as e:
        raise CheckpointError(f"{where}: bad head spec {cfg['head']!r} ({e})") from None
    if head.n_agents != len(cfg["workers"]):
        raise CheckpointError(f"{where}: head has {head.n_agents} agents for {len(cfg['workers'])} workers")
    if "head" not in tensors or tensors["head"].size != head.n_params:
        raise CheckpointError(f"{where}/{WEIGHTS}: 'head' has {tensors.get('head', np.zeros(0)).size} "
                              f"values, the {head.kind} head needs {head.n_params}")
    head.set_flat(tensors["head"])
    if cfg.get("svf"):
        svf = coordinator.svf
        if svf is None or list(svf.names) != list(cfg["svf"]["targets"]):
            svf = coordinator.enable_svf(list(cfg["svf"]["targets"]))
        if "svf_offsets" not in tensors or tensors["svf_offsets"].size != svf.n_params:
            raise CheckpointError(f"{where}/{WEIGHTS}: 'svf_offsets' does not match the {svf.n_params} "
                                  "singular values of the SVF targets")
        svf.apply(tensors["svf_offsets"])
    elif coordinator.svf is not None:
        coordinator.svf.restore()
    return TrinityModel(coordinator=coordinator, head=head, workers=list(cfg["workers"]),
                        protocol=_protocol(cfg, where), config=cfg)


def warm_start(path, *, coordinator, head, workers: list[str], svf=None) -> np.ndarray:
    """The flat [SVF offsets; head] vector of checkpoint `path`, to start a new search from
    (`train.init_from`): e.g. a head trained on cached features on a CPU, then SVF and head tuned
    together on a GPU. Refused unless the coordinator, the workers (in head order) and the head
    match; a checkpoint without SVF starts the offsets at 0."""
    path = Path(path)
    cfg = read_config(path)
    where = f"train.init_from: {path}"
    if coordinator is None:
        raise CheckpointError(f"{where}: warm starts need the coordinator (not an encoder)")
    check_coordinator(cfg, coordinator, where)
    if list(cfg["workers"]) != list(workers):
        raise CheckpointError(f"{where}: trained for workers {cfg['workers']}, this run routes to {list(workers)} "
                              "(same workers in the same order needed)")
    if dict(cfg["head"]) != head.spec():
        raise CheckpointError(f"{where}: head {cfg['head']} differs from this run's {head.spec()}")
    tensors = load_safetensors(path / WEIGHTS)
    h = np.asarray(tensors.get("head", np.zeros(0)), dtype=np.float64).reshape(-1)
    if h.size != head.n_params:
        raise CheckpointError(f"{where}/{WEIGHTS}: 'head' has {h.size} values, the head needs {head.n_params}")
    ck_svf = cfg.get("svf")
    if svf is None:
        if ck_svf and np.any(tensors.get("svf_offsets", 0)):
            raise CheckpointError(f"{where}: its head was trained on SVF-modified features; enable svf "
                                  f"(targets {ck_svf['targets']}) to start from it")
        return h
    offsets = np.zeros(svf.n_params)
    if ck_svf:
        if list(ck_svf["targets"]) != list(svf.names):
            raise CheckpointError(f"{where}: SVF targets {ck_svf['targets']} differ from this run's {list(svf.names)}")
        offsets = np.asarray(tensors["svf_offsets"], dtype=np.float64).reshape(-1)
    return np.concatenate([offsets, h])


def load_router(path, serving: bool = False, **kw):
    """`routers.registry` entry point: a fitted `Router` (selection softmax as predict_quality) or,
    with serving=True, a `ServingRouter` (kw: pool, name, device, dtype, coordinator)."""
    if serving:
        from trinity.serving import TrinityServingRouter
        m = load(path, kw.get("device", "cpu"), coordinator=kw.get("coordinator"), pool=kw.get("pool"),
                 dtype=kw.get("dtype"))
        return TrinityServingRouter(m, name=kw.get("name") or f"trinity-{Path(path).name}")
    from trinity.serving import TrinityRouter
    m = load(path, kw.get("device", "cpu"), coordinator=kw.get("coordinator"), workers=kw.get("workers"),
             dtype=kw.get("dtype"))
    return TrinityRouter(m)
