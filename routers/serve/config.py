"""`baton serve --config FILE`: the server's settings, as one dataclass (defaults work).

    fallback:
      backoff_s: 0.2            # first retry wait when the worker sent no Retry-After (doubles, jittered)
      max_backoff_s: 2.0
      max_retry_wait_s: 5.0     # a Retry-After longer than this moves on to the next worker instead
      fail_window_s: 60         # allowed_fails (pool limits) failures within this window ...
      min_failure_rate: 0.5     # ... that are at least this share of the worker's calls there -> cooldown
      budget_max_tokens: 512    # output tokens assumed for a call without max_tokens (cost checks)
    redact_content: false       # true: the decision log keeps message lengths, not their text
    log_fsync_window_ms: 20     # decision log: records are written before each reply and fsynced within
                                # this window (a power loss loses at most it; kill -9 loses nothing);
                                # 0: fsync before each reply
    max_body_bytes: 1048576     # larger request bodies get 413
    max_messages: 256
    batch: {max_batch: 16, max_wait_ms: 5}   # coordinator micro-batching (TRINITY routers)

Per-worker retries, allowed_fails, cooldown_s and timeout come from the pool's `limits`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from routers.errors import ConfigError
from routers.yamlfile import read_yaml


@dataclass
class FallbackConfig:
    backoff_s: float = 0.2
    max_backoff_s: float = 2.0
    max_retry_wait_s: float = 5.0
    fail_window_s: float = 60.0
    min_failure_rate: float = 0.5
    budget_max_tokens: int = 512


@dataclass
class BatchConfig:
    max_batch: int = 16
    max_wait_ms: float = 5.0


@dataclass
class ServeConfig:
    fallback: FallbackConfig = field(default_factory=FallbackConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    redact_content: bool = False
    log_fsync_window_ms: float = 20.0
    max_body_bytes: int = 1 << 20
    max_messages: int = 256


def _section(cls, raw: Any, where: str):
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kw = {}
    for k, v in raw.items():
        if k not in fields:
            raise ConfigError(f"{where}.{k}: unknown field (allowed: {', '.join(fields)})")
        default = getattr(cls(), k)
        if dataclasses.is_dataclass(default):
            kw[k] = _section(type(default), v, f"{where}.{k}")
        elif isinstance(default, bool):
            if not isinstance(v, bool):
                raise ConfigError(f"{where}.{k}: expected true or false, got {v!r}")
            kw[k] = v
        else:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ConfigError(f"{where}.{k}: expected a number >= 0, got {v!r}")
            kw[k] = type(default)(v)
    return cls(**kw)


def parse_serve_config(raw: Any, src: str = "<serve config>") -> ServeConfig:
    return _section(ServeConfig, raw, src)


def load_serve_config(path: str | Path | None) -> ServeConfig:
    if path is None:
        return ServeConfig()
    return parse_serve_config(read_yaml(path, "serve config"), str(path))
