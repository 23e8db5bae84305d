"""Pool YAML: validation errors name the file and the field; bundled pools load; `baton pool check`."""

from __future__ import annotations

import json

import pytest
import yaml

from routers.cli import main as baton
from routers.errors import ConfigError
from routers.pool import load_pool
from routers.pool.stub import start_stub_server


def sim_worker(**kw):
    return {"name": "a", "backend": "simulated", "accuracy": {"default": 0.5}, **kw}


def write(tmp_path, cfg) -> str:
    p = tmp_path / "x.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return str(p)


@pytest.mark.parametrize("cfg,where", [
    ({"workers": [sim_worker(), sim_worker(name="b"), sim_worker(name="c", input_price="cheap")]},
     r"x\.yaml: workers\[2\]\.input_price: expected a number, got 'cheap'"),
    ({"workers": [sim_worker(backend="grpc")]}, r"workers\[0\]\.backend: expected one of"),
    ({"workers": [sim_worker(limits={"max_concurrency": 0})]}, r"workers\[0\]\.limits\.max_concurrency: must be >= 1"),
    ({"workers": [sim_worker(limits={"retry": 2})]}, r"workers\[0\]\.limits\.retry: unknown field"),
    ({"workers": [sim_worker(accuracy={"default": 1.5})]}, r"workers\[0\]\.accuracy\.default: must be <= 1"),
    ({"workers": [sim_worker(tags={"open_weights": "yes"})]}, r"workers\[0\]\.tags\.open_weights: expected true or false"),
    ({"workers": [sim_worker(), sim_worker()]}, r"workers\[1\]\.name: 'a' repeats workers\[0\]"),
    ({"workers": [{"name": "o", "backend": "openai"}]}, r"workers\[0\]\.model: required for backend openai"),
    ({"workers": [{"name": "r", "backend": "replay"}]}, r"workers\[0\]\.data: replay workers need 'data'"),
    ({"workers": []}, r"x\.yaml: workers: expected a non-empty list"),
    ({"workerz": []}, r"x\.yaml: workerz: unknown field"),
    ({"seed": "zero", "workers": [sim_worker()]}, r"x\.yaml: seed: expected an integer"),
])
def test_validation_errors_name_file_and_field(tmp_path, cfg, where):
    with pytest.raises(ConfigError, match=where):
        load_pool(write(tmp_path, cfg))


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="pool file not found"):
        load_pool(str(tmp_path / "nope.yaml"))
    p = tmp_path / "bad.yaml"
    p.write_text("workers: [\n")
    with pytest.raises(ConfigError, match="bad.yaml: invalid YAML"):
        load_pool(str(p))


def test_replay_data_absent_is_a_clear_error(tmp_path):
    cfg = {"data": "./no_such_recording", "workers": [{"name": "m", "backend": "replay"}]}
    with pytest.raises(ConfigError, match=r"x\.yaml: data: .*no_such_recording does not exist"):
        load_pool(write(tmp_path, cfg))


def test_defaults_tags_limits_and_config_export(tmp_path):
    cfg = {"name": "p", "defaults": {"retries": 5, "cooldown_s": 7},
           "workers": [sim_worker(limits={"retries": 1}, tags={"provider": "x", "region": "eu", "open_weights": True}),
                       sim_worker(name="b")]}
    pool = load_pool(write(tmp_path, cfg))
    assert pool.names == ["a", "b"]
    assert pool.limits("a")["retries"] == 1 and pool.limits("b")["retries"] == 5 and pool.limits("b")["cooldown_s"] == 7
    assert pool.tags("a") == {"provider": "x", "region": "eu", "open_weights": True}
    json.dumps(pool.config)  # exportable
    assert load_pool(pool.config).names == pool.names
    with pytest.raises(ConfigError, match="unknown worker 'zz'"):
        pool["zz"]


def test_bundled_pools_validate():
    for name in ("simulated", "smollm2_local"):
        pool = load_pool(name)
        assert pool.names
    assert load_pool("smollm2_local")["smollm2-135m"].api_key_env is None


def test_pool_check_cli_table_and_exit_code(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # rich wraps cells to the terminal width
    url, stop = start_stub_server()
    try:
        ok = {"workers": [{"name": "good", "backend": "openai", "model": "plain", "base_url": url,
                           "api_key_env": None, "input_price": 0.5, "output_price": 1.5}]}
        assert baton(["pool", "check", write(tmp_path, ok)]) == 0
        out = capsys.readouterr().out
        assert "good" in out and "yes" in out and "1.5" in out
        ok["workers"].append({"name": "locked", "backend": "openai", "model": "stub/401", "base_url": url,
                              "api_key_env": None})
        assert baton(["pool", "check", write(tmp_path, ok)]) == 1
        out = capsys.readouterr().out
        assert "locked" in out and "AuthFailed" in out
    finally:
        stop()
