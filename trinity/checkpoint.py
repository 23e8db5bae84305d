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
  save_run(out, *, metrics, history, coordinator=None, **save_kw)   # + metrics.json, history.json
  load(path, device="cpu", *, coordinator=None, pool=None, workers=None) -> TrinityModel
  trinity.load(path, device=...) is `load`; `trinity.serving.load_router` wraps it as a router.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from routers.checkpoint import load_safetensors, read_router_config, save_safetensors, write_model_card
from routers.errors import CheckpointError, ConfigError

FORMAT_VERSION = 1
WEIGHTS = "router.safetensors"
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.gguf", "*.pt")


# -- where the coordinator's weights come from, and a fingerprint over all of them -----------------
def _file_sha256(f: Path, cache: dict) -> str:
    st = f.stat()
    key = f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    if key not in cache:
        import hashlib
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        cache[key] = h.hexdigest()
    return cache[key]


def weights_sha256(path: str | Path) -> str:
    """sha256 over every byte of a model's weights: one file (a GGUF), or the weight files of a folder
    (names and contents, sorted). Streamed in 1 MiB blocks and cached per file by (path, size,
    mtime) under the baton cache, so each model is read once."""
    import hashlib

    from routers.paths import cache_root
    path = Path(path)
    files = [path] if path.is_file() else sorted({f for pat in WEIGHT_FILES for f in path.glob(pat)})
    if not files:
        raise CheckpointError(f"{path}: no weight files ({', '.join(WEIGHT_FILES)}) to fingerprint")
    cf = cache_root() / "weights_sha256.json"
    try:
        cache = json.loads(cf.read_text())
    except (OSError, json.JSONDecodeError):
        cache = {}
    n = len(cache)
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name}:{_file_sha256(f, cache)}\n".encode())
    if len(cache) != n:
        cf.parent.mkdir(parents=True, exist_ok=True)
        tmp = cf.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, cf)
    return h.hexdigest()


def coordinator_source(spec: str) -> dict[str, Any]:
    """Where coordinator `spec` comes from: a package's GGUF (package, version, file), a local path,
    or a Hub repo id at the revision (commit) in the local Hub cache; with the sha256 of its weights."""
    from routers.model_files import PACKAGED, packaged
    if spec in PACKAGED or spec.startswith("pkg:"):
        pkg, rel = PACKAGED[spec] if spec in PACKAGED else spec[4:].partition("/")[::2]
        from importlib.metadata import packages_distributions, version
        f = packaged(pkg, rel)
        dists = packages_distributions().get(pkg) or [None]
        src = {"kind": "package", "package": pkg, "distribution": dists[0],
               "version": version(dists[0]) if dists[0] else None, "file": rel, "path": str(f)}
    elif Path(spec).expanduser().exists():
        src = {"kind": "local", "path": str(Path(spec).expanduser().resolve())}
    else:
        from huggingface_hub import snapshot_download
        try:
            folder = Path(snapshot_download(spec, local_files_only=True))
        except Exception as e:  # noqa: BLE001 - any failure means: not in the local Hub cache
            raise CheckpointError(f"coordinator {spec!r}: not found in the local Hub cache "
                                  f"({type(e).__name__})") from None
        src = {"kind": "hub", "repo_id": spec, "revision": folder.name, "path": str(folder)}
    src["weights_sha256"] = weights_sha256(src["path"])
    return src


def _jsonable(x: Any) -> Any:
    if x is None:
        return None
    if dataclasses.is_dataclass(x):
        return dataclasses.asdict(x)
    return json.loads(json.dumps(x, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def save(path, *, coordinator, head, workers: list[str], protocol=None, svf=None,
         training: Any = None, metrics: dict | None = None, mean_cost=None, frontier: dict | None = None) -> Path:
    """Write a checkpoint. `svf` is the coordinator's SVF object (its current offsets are saved) or
    None; `training` the run config (dataclass or dict); `frontier` a family of heads along the
    cost weights (`trinity.frontier`: {"config": section, "heads": (K, n_params)})."""
    path = Path(path)
    if len(workers) != head.n_agents:
        raise CheckpointError(f"{path}: {len(workers)} workers for a head with {head.n_agents} agents")
    ident = coordinator.identity() if hasattr(coordinator, "identity") else dict(coordinator)
    if hasattr(coordinator, "dtype"):
        ident["dtype"] = coordinator.dtype
    if hasattr(coordinator, "identity") and "source" not in ident:
        try:
            ident["source"] = coordinator_source(ident["model"])
        except (CheckpointError, ConfigError) as e:  # recorded as unknown, never guessed
            ident["source"] = {"kind": "unknown", "why": str(e)}
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
        "frontier": None if frontier is None else frontier["config"],
    }
    path.mkdir(parents=True, exist_ok=True)
    tensors = {"head": np.ascontiguousarray(head.get_flat(), dtype=np.float64)}
    if svf is not None:
        tensors["svf_offsets"] = np.ascontiguousarray(svf.offsets, dtype=np.float64)
    if frontier is not None:
        tensors["frontier"] = np.ascontiguousarray(frontier["heads"], dtype=np.float64)
    save_safetensors(tensors, path / WEIGHTS)
    (path / "config.json").write_text(json.dumps(cfg, indent=2))
    write_model_card(path, **card_facts(cfg))
    return path


def is_main_process() -> bool:
    """False on the non-main ranks of an `accelerate launch` (they evaluate, but write nothing)."""
    return int(os.environ.get("RANK", "0")) == 0


def save_run(out, *, metrics: dict, history: list, coordinator=None, **router) -> None:
    """The last stage of a training run: the router checkpoint (`save`; skipped without a
    coordinator, as in encoder comparison runs) plus metrics.json and history.json in `out`. The
    non-main ranks of an `accelerate launch` write nothing."""
    if out is None or not is_main_process():
        return
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if coordinator is not None:
        save(out, coordinator=coordinator, metrics=metrics, **router)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    (out / "history.json").write_text(json.dumps(history, indent=1))


def card_facts(cfg: dict) -> dict[str, Any]:
    """The model card of a checkpoint from its config.json (`routers.checkpoint.write_model_card`)."""
    training = cfg.get("training") or {}
    coord = dict(cfg.get("coordinator") or {})
    coord.setdefault("revision", (coord.get("source") or {}).get("revision"))  # a Hub commit, else None
    turns = (cfg.get("protocol") or {}).get("max_turns")
    mode = (f"a multi-turn protocol (roles {', '.join(cfg['roles'])}, at most {turns} turns)" if cfg.get("roles")
            else "single-turn selection")
    return {"router_type": "trinity", "workers": list(cfg["workers"]), "coordinator": coord,
            "training_data": training.get("data"), "training_config": training, "metrics": cfg.get("metrics"),
            "summary": f"A TRINITY router (arXiv 2512.04695): a {cfg.get('head', {}).get('kind')} head on the hidden "
                       f"state of coordinator `{coord.get('model')}` chooses the worker, in {mode}.",
            "limitations": [
                "The head was trained on the training data's prompts and on these workers' recorded behaviour; "
                "other workers, or the same names serving other models, invalidate it.",
                f"It needs the coordinator `{coord.get('model')}` with the same weights (sha256 "
                f"{(coord.get('source') or {}).get('weights_sha256') or 'not recorded'}); loading refuses another.",
                "The cost trade-off (lam) uses each worker's mean training cost, not per-prompt costs"
                + ("" if cfg.get("mean_cost") is not None else "; no costs were recorded, so it is unavailable") + ".",
                "Evaluation metrics come from the training run's own test split; judge it on your data with "
                "`baton eval`."]}


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

    frontier: np.ndarray | None = None  # (K, n_params) heads along config["frontier"]["lams"], or None
    _policies: dict = field(default_factory=dict, repr=False)  # frontier head index -> served policy

    @property
    def lams(self) -> list[float] | None:
        """The cost weights (accuracy per dollar) of the frontier's heads, ascending; None without one."""
        f = self.config.get("frontier")
        return None if not f else list(f["lams"])

    def agent_logits(self, texts: list[str], features: np.ndarray | None = None, lam: float | None = None) -> np.ndarray:
        """(n, L) worker logits for rendered transcripts (or their `features`), by the frontier head
        that serves `lam` when the checkpoint has a frontier and lam is given, else the main head."""
        F = self.coordinator.features(texts) if features is None else features
        if lam is None or self.frontier is None:
            return self.head.split(self.head.logits(F))[0]
        from trinity.frontier import head_index
        x = self.frontier[head_index(self.lams, lam)]
        return self.head.split(self.head.population_logits(x[None], np.asarray(F, np.float32))[0])[0]

    def policy(self, lam: float | None = None):
        """The head's decisions; with a frontier and `lam`, the frontier head that serves lam."""
        from trinity.protocol import HeadPolicy
        if lam is None or self.frontier is None:
            return HeadPolicy(self.head)
        import copy

        from trinity.frontier import head_index
        k = head_index(self.lams, lam)
        if k not in self._policies:  # one head object per trained lam, not one per request
            head = copy.deepcopy(self.head)
            head.set_flat(self.frontier[k])
            self._policies[k] = HeadPolicy(head)
        return self._policies[k]


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
    for k in ("layer", "position", "pooling", "max_tokens", "truncation_side"):
        if k == "pooling" and k not in want:  # checkpoints from before pooling existed: token-pooled
            want = {**want, "pooling": "token"}
        if k in want and want[k] != have.get(k):
            raise CheckpointError(f"{where}: coordinator {k} is {have.get(k)!r}, the checkpoint was "
                                  f"trained with {want[k]!r}")


def coordinator_spec(cfg: dict, path: Path) -> str:
    """The model spec to load: a coordinator bundled by `baton export --include-coordinator` (a path
    relative to the checkpoint), else the recorded spec."""
    c = cfg["coordinator"]
    src = c.get("source") or {}
    if src.get("kind") != "bundled":
        return c["model"]
    p = (Path(path) / src["path"]).resolve()
    if not p.exists():
        raise CheckpointError(f"{path}/config.json: the bundled coordinator {src['path']} is missing ({p})")
    return str(p)


def bundle_coordinator(ckpt: Path, router_dir: Path, dest: Path) -> None:
    """`baton export --include-coordinator`: copy the coordinator's weights of checkpoint `ckpt` into
    `dest` and point the copied checkpoint in `router_dir` at them (source kind "bundled", relative
    path, same sha256, the original source kept), refusing weights that differ from the recorded ones."""
    import shutil
    cfg_file = Path(router_dir) / "config.json"
    cfg = json.loads(cfg_file.read_text())
    want = (cfg["coordinator"].get("source") or {}).get("weights_sha256")
    src = coordinator_source(coordinator_spec(cfg, ckpt))
    if want and src["weights_sha256"] != want:
        raise CheckpointError(f"{ckpt}: the coordinator found here ({src['path']}) is not the one it was trained "
                              f"with (weights sha256 {src['weights_sha256'][:16]}..., recorded {want[:16]}...)")
    from_path = Path(src["path"])
    if from_path.is_file():
        dest.mkdir()
        shutil.copy2(from_path, dest / from_path.name)
        rel = os.path.relpath(dest / from_path.name, router_dir)
    else:
        shutil.copytree(from_path, dest, ignore=shutil.ignore_patterns(".cache", "*.lock"))
        rel = os.path.relpath(dest, router_dir)
    cfg["coordinator"]["source"] = {"kind": "bundled", "path": rel, "weights_sha256": src["weights_sha256"],
                                    "original": {k: v for k, v in src.items() if k != "weights_sha256"}}
    cfg_file.write_text(json.dumps(cfg, indent=2))


def check_weights(cfg: dict, coordinator, spec: str, where) -> None:
    """Refuse a coordinator whose weights' sha256 differs from the recorded one (a fine-tune with the
    same embeddings passes the sampled fingerprint, not this)."""
    src = cfg["coordinator"].get("source") or {}
    want = src.get("weights_sha256")
    if not want or coordinator is None or not hasattr(coordinator, "identity"):
        return
    have = coordinator_source(spec if src.get("kind") == "bundled" else coordinator.name)
    if have["weights_sha256"] != want:
        named = ", ".join(f"{k} {src[k]}" for k in ("package", "version", "repo_id", "revision", "path") if k in src)
        raise CheckpointError(
            f"{where}: the coordinator's weights differ from the ones it was trained with: sha256 "
            f"{have['weights_sha256'][:16]}... of {have['path']}, recorded {want[:16]}... "
            f"({named})")


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
    spec = coordinator_spec(cfg, path)
    if coordinator is None:
        coordinator = Coordinator(spec, layer=c["layer"], position=c["position"], pooling=c.get("pooling", "token"),
                                  max_tokens=c["max_tokens"], truncation_side=c.get("truncation_side", "right"),
                                  device=device, dtype=dtype or c.get("dtype", "float32"))
    check_coordinator(cfg, coordinator, where)
    check_weights(cfg, coordinator, spec, where)
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
    frontier = None
    if cfg.get("frontier"):
        frontier = tensors.get("frontier")
        if frontier is None or frontier.shape != (len(cfg["frontier"]["lams"]), head.n_params):
            raise CheckpointError(f"{where}/{WEIGHTS}: 'frontier' must hold {len(cfg['frontier']['lams'])} heads of "
                                  f"{head.n_params} values (config.json's frontier.lams), got "
                                  f"{None if frontier is None else tuple(frontier.shape)}")
    return TrinityModel(coordinator=coordinator, head=head, workers=list(cfg["workers"]),
                        protocol=_protocol(cfg, where), config=cfg, frontier=frontier)


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
