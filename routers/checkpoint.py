"""Checkpoint directories, for every router kind: reading `config.json` (one place for its
"missing", "invalid JSON" and "wrong router_type" errors), safetensors files that fail with the
file's name instead of a traceback, readable file modes, and the Hugging Face side: a folder or a
Hub repo id (`huggingface_hub.snapshot_download`, so HF_HUB_OFFLINE and the local Hub cache work
as for any model), `push_to_hub`, and the model card (README.md with YAML metadata).

`HubMixin` gives a router class `save_pretrained` / `from_pretrained` / `push_to_hub` on top of
its own `save` (which writes the model card too, so a checkpoint from `baton train` is ready for the
Hub as well) and `_from_checkpoint(path, **kw)`; it is hand-written rather than
`huggingface_hub.ModelHubMixin` because that one owns config.json, and ours carry the format.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from routers.errors import CheckpointError, ConfigError


def read_router_config(path: str | Path, expected_type: str | None = None) -> dict:
    """`path/config.json` as a dict with a string `router_type` (equal to `expected_type` if given)."""
    path = Path(path)
    f = path / "config.json"
    if not f.is_file():
        raise CheckpointError(f"{path}: no config.json; not a router checkpoint")
    try:
        cfg = json.loads(f.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{f}: invalid JSON ({e})") from None
    rtype = cfg.get("router_type") if isinstance(cfg, dict) else None
    if not isinstance(rtype, str):
        raise CheckpointError(f"{f}: missing 'router_type'")
    if expected_type is not None and rtype != expected_type:
        raise CheckpointError(f"{f}: router_type {rtype!r}, expected {expected_type!r}")
    return cfg


# -- files ------------------------------------------------------------------------------------------
def read_checkpoint_type(path: str | Path) -> str:
    """The router_type of a checkpoint directory. A Conductor checkpoint is an HF model folder
    (whose config.json is the model's), so its type lives in conductor_config.json."""
    path = Path(path)
    if (path / "conductor_config.json").is_file():
        return "conductor"
    return read_router_config(path)["router_type"]


def make_readable(path: str | Path) -> None:
    """Give every file under `path` the mode the umask allows (0644 usually). safetensors writes
    0600, which a server running as another user cannot read."""
    umask = os.umask(0)
    os.umask(umask)
    path = Path(path)
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        if p.is_symlink():
            continue
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)


def save_safetensors(tensors: dict, file: str | Path) -> Path:
    """numpy arrays -> a safetensors file, readable like the rest of the checkpoint."""
    from safetensors.numpy import save_file
    save_file(tensors, str(file))
    make_readable(file)
    return Path(file)


def load_safetensors(file: str | Path) -> dict:
    """A safetensors file as numpy arrays; a truncated or garbage file is a CheckpointError naming it."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file
    try:
        return load_file(str(file))
    except FileNotFoundError:
        raise CheckpointError(f"{file}: missing") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{file}: not a readable safetensors file, truncated or corrupt ({e})") from None


# -- the Hub ------------------------------------------------------------------------------------------
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def pretrained_dir(id_or_path: str | Path, *, revision: str | None = None, cache_dir: str | Path | None = None,
                   token: str | None = None) -> Path:
    """The local folder of a checkpoint: `id_or_path` itself if it is a directory, else the Hub
    snapshot of repo `id_or_path` at `revision` (from the local Hub cache when HF_HUB_OFFLINE=1)."""
    p = Path(id_or_path)
    if p.is_dir():
        return p
    if p.exists():
        raise CheckpointError(f"{p}: a file, not a checkpoint directory")
    spec = str(id_or_path)
    if not _REPO_ID.match(spec) or spec.startswith((".", "/")) or spec.count("/") > 1:
        raise CheckpointError(f"{spec}: no such checkpoint directory (and not a Hub repo id)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)
    try:
        return Path(snapshot_download(spec, revision=revision, cache_dir=cache_dir, token=token))
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:
        raise CheckpointError(f"{spec}: no such checkpoint directory, and the Hub has no such repo or "
                              f"revision ({type(e).__name__})") from None
    except LocalEntryNotFoundError:
        raise CheckpointError(f"{spec}: no such checkpoint directory, and Hub repo {spec!r}"
                              f"{'@' + revision if revision else ''} is not in the local Hub cache while the "
                              "Hub is unreachable (HF_HUB_OFFLINE or no network)") from None
    except HfHubHTTPError as e:
        raise CheckpointError(f"{spec}: the Hub refused the download ({e})") from None


def hub_token(repo_id: str, token: str | None = None) -> str:
    """The token to push with (given, HF_TOKEN or `hf auth login`'s), checked with the repo id
    before anything is saved or uploaded."""
    from huggingface_hub import get_token
    if not isinstance(repo_id, str) or not _REPO_ID.match(repo_id) or repo_id.count("/") != 1:
        raise ConfigError(f"push_to_hub: {repo_id!r} is not a Hub repo id (expected owner/name)")
    token = token or get_token()
    if not token:
        raise ConfigError(f"push_to_hub {repo_id}: no Hugging Face token; log in with `hf auth login` or "
                          "set HF_TOKEN (nothing was uploaded)")
    return token


def push_folder(folder: str | Path, repo_id: str, *, token: str | None = None, private: bool | None = None,
                commit_message: str | None = None, api: Any = None) -> str:
    """Upload a saved checkpoint folder to Hub repo `repo_id` (created if needed); returns the commit
    URL. Without a token it fails before anything is uploaded."""
    from huggingface_hub import HfApi
    token = hub_token(repo_id, token)
    api = api or HfApi()
    api.create_repo(repo_id, token=token, private=private, exist_ok=True)
    info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), token=token,
                             commit_message=commit_message or f"Upload baton router to {repo_id}")
    return str(getattr(info, "commit_url", info))


# -- model cards -----------------------------------------------------------------------------------
def _fmt_metric(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else json.dumps(v, default=str)


def _metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(split/name, value, 95% interval) rows of the scalar metrics, with `<name>_ci` as the interval."""
    rows = []
    for split, m in (metrics or {}).items():
        if not isinstance(m, dict):
            if isinstance(m, (int, float)) and not isinstance(m, bool):
                rows.append((split, _fmt_metric(m), "not recorded"))
            continue
        for k, v in m.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                ci = m.get(f"{k}_ci")
                rows.append((f"{split} {k}", _fmt_metric(v),
                             f"[{_fmt_metric(ci[0])}, {_fmt_metric(ci[1])}]" if isinstance(ci, (list, tuple))
                             and len(ci) == 2 and None not in ci else "not recorded"))
    return rows


def write_model_card(path: str | Path, *, router_type: str, workers: list[str], training_data: Any = None,
                     training_config: Any = None, metrics: dict | None = None, coordinator: dict | None = None,
                     base_model: str | None = None, limitations: list[str] = (), summary: str = "") -> Path:
    """README.md with YAML metadata (library, tags, workers in head order, coordinator and revision,
    training data and config, metrics) and the same facts as prose, from what the checkpoint knows.
    What it does not know is said to be unknown."""
    from huggingface_hub import ModelCard, ModelCardData
    path = Path(path)
    meta: dict[str, Any] = {"router_type": router_type, "workers": list(workers)}
    if coordinator is not None:
        meta["coordinator"] = coordinator
    meta["training_data"] = training_data
    meta["metrics"] = metrics or {}
    data = ModelCardData(library_name="baton", tags=["baton", "llm-routing", router_type],
                         base_model=base_model, baton=json.loads(json.dumps(meta, default=str)))
    rows = _metric_rows(metrics or {})
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    metric_md = ("| metric | value | 95% interval |\n|---|---|---|\n" + table
                 if rows else "No evaluation metrics are recorded in this checkpoint.")
    coord_md = ""
    if coordinator is not None:
        coord_md = ("\n## Coordinator\n\n" + "\n".join(f"- **{k}**: `{v}`" for k, v in coordinator.items()) +
                    "\n\nThe checkpoint loads only with a coordinator whose weights fingerprint matches.\n")
    config_md = ("```json\n" + json.dumps(training_config, indent=2, default=str) + "\n```"
                 if training_config else "Not recorded in this checkpoint.")
    data_md = (f"`{json.dumps(training_data, default=str)}`" if training_data not in (None, {}, "")
               else "Not recorded in this checkpoint.")
    lim = "\n".join(f"- {x}" for x in limitations) or "- None recorded beyond the workers it was trained on."
    text = f"""---
{data.to_yaml()}
---

# baton {router_type} router

{summary or f'A {router_type} LLM router saved by baton.'} It routes over these workers
(in head order): {', '.join(f'`{w}`' for w in workers)}.

```python
import baton
router = baton.from_pretrained("<this repo id or folder>")
router.route("What is the capital of Peru?")   # workers, best first
```
{coord_md}
## Training data

{data_md}

## Training config

{config_md}

## Evaluation

{metric_md}

## Limitations

{lim}
"""
    ModelCard(text).save(path / "README.md")
    make_readable(path / "README.md")
    return path / "README.md"


class HubMixin:
    """`save_pretrained` / `from_pretrained` / `push_to_hub` for a router class that has `save(path)`,
    a classmethod `_from_checkpoint(path, **kw)` and `card()` (keyword arguments of `write_model_card`)."""

    @classmethod
    def checkpoint_type(cls) -> str | None:
        """The router_type `from_pretrained` accepts (None: any)."""
        return None

    def save_pretrained(self, path: str | Path, **card: Any) -> Path:
        """Write the checkpoint with its model card (README.md; `save` writes one too) into `path`;
        `card` adds to / overrides the card's fields (e.g. metrics=... from `baton.evaluate`)."""
        path = Path(path)
        self.save(path)
        if card:
            write_model_card(path, **{**self.card(), **card})
        make_readable(path)
        return path

    @classmethod
    def from_pretrained(cls, id_or_path: str | Path, *, revision: str | None = None,
                        cache_dir: str | Path | None = None, token: str | None = None, **kw: Any):
        """Load from a local folder or a Hub repo id (`revision`: branch, tag or commit)."""
        path = pretrained_dir(id_or_path, revision=revision, cache_dir=cache_dir, token=token)
        want = cls.checkpoint_type()
        if want is not None:
            rtype = read_checkpoint_type(path)
            if rtype != want:
                raise CheckpointError(f"{id_or_path}: a {rtype!r} checkpoint, not {want!r}; load it with "
                                      "baton.from_pretrained")
        return cls._from_checkpoint(path, **kw)

    def push_to_hub(self, repo_id: str, *, token: str | None = None, private: bool | None = None,
                    commit_message: str | None = None, api: Any = None, **card: Any) -> str:
        """save_pretrained into a temporary folder and upload it; returns the commit URL."""
        token = hub_token(repo_id, token)  # before saving anything
        with tempfile.TemporaryDirectory(prefix="baton-push-") as tmp:
            self.save_pretrained(tmp, **card)
            return push_folder(tmp, repo_id, token=token, private=private, commit_message=commit_message, api=api)
