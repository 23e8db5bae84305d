"""Bearer API keys mapped to tenants.

Keys come from `--keys FILE` (YAML/JSON mapping `key: tenant`) or the `BATON_API_KEYS` environment
variable (`key1:tenant1,key2:tenant2`; a key without `:tenant` belongs to tenant "default").
With neither, auth is off and every request belongs to tenant "default" (the server says so at
start). Keys never leave this module: logs and metrics see only the tenant.
"""

from __future__ import annotations

import hmac
import json
import os
from pathlib import Path

import yaml

from routers.errors import ConfigError

ENV = "BATON_API_KEYS"
DEFAULT_TENANT = "default"


class KeyStore:
    def __init__(self, keys: dict[str, str] | None):
        self.keys = dict(keys) if keys else None   # None: auth is off

    @property
    def enabled(self) -> bool:
        return self.keys is not None

    def tenant(self, authorization: str | None) -> str | None:
        """The tenant of an `Authorization: Bearer <key>` header; None if the key is not valid."""
        if self.keys is None:
            return DEFAULT_TENANT
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        given = authorization[7:].strip().encode()
        found = None
        for key, tenant in self.keys.items():  # compare every key in constant time
            if hmac.compare_digest(given, key.encode()):
                found = tenant
        return found


def _check(mapping: object, src: str) -> dict[str, str]:
    if not isinstance(mapping, dict) or not mapping:
        raise ConfigError(f"{src}: expected a non-empty mapping of API key -> tenant")
    out = {}
    for k, t in mapping.items():
        if not isinstance(k, str) or len(k) < 8:
            raise ConfigError(f"{src}: API keys must be strings of at least 8 characters "
                              f"(entry for tenant {t!r} is not)")
        if not isinstance(t, str) or not t.strip():
            raise ConfigError(f"{src}: the tenant of a key must be a non-empty string, got {t!r}")
        out[k] = t
    return out


def parse_env(value: str) -> dict[str, str]:
    out = {}
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        key, _, tenant = part.partition(":")
        out[key.strip()] = tenant.strip() or DEFAULT_TENANT
    return _check(out, f"environment variable {ENV}")


def load_keys(path: str | Path | None = None, env: dict[str, str] | None = None) -> KeyStore:
    """--keys FILE wins over BATON_API_KEYS; neither means auth is off."""
    env = os.environ if env is None else env
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: keys file not found")
        try:
            raw = json.loads(p.read_text()) if p.suffix == ".json" else yaml.safe_load(p.read_text())
        except (json.JSONDecodeError, yaml.YAMLError) as e:
            raise ConfigError(f"{p}: cannot parse keys file ({e})") from None
        return KeyStore(_check(raw, str(p)))
    if env.get(ENV):
        return KeyStore(parse_env(env[ENV]))
    return KeyStore(None)
