"""Install without the repository: build the wheel, install it (not editable, --no-deps) into a fresh
venv whose only other packages are the dev venv's third-party ones, and from a directory outside
the repository run the issue-14 snippet, `baton train trinity --config route` and
`baton serve --pool simulated` (start, GET /v1/models, stop). The shipped configs must come from
the installed package."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ["baton", "configs", "routers", "trinity", "conductor", "pyproject.toml", "README.md"]

SNIPPET = """
import json, sys
import baton, routers
ds = baton.load_dataset("embedded")
knn = baton.baselines.KNN().fit(ds.split("train"))
report = baton.evaluate({"knn": knn}, ds, n_boot=100)
router = baton.train_trinity("route", data=ds, **{"train.iterations": 2, "coordinator.model": "tiny",
                                                  "train.popsize": 4, "data.limit": 40})
router.save_pretrained("runs/t1")
router = baton.TrinityRouter.from_pretrained("runs/t1")
ranked = router.route("What is the capital of Peru?")
pool = baton.load_pool("simulated")
reply = router.answer([{"role": "user", "content": "2+2?"}], pool=pool)
conductor = baton.ConductorRouter.from_pretrained(sys.argv[1])
from routers.registry import config_path
print(json.dumps({"baton": baton.__file__, "routers": routers.__file__,
                  "knn_accuracy": report["routers"]["knn"]["accuracy"],
                  "ranked": ranked, "reply_worker": reply.steps[0].worker, "conductor_workers": conductor.workers,
                  "pool_file": str(config_path("pools", "simulated")), "demo": str(config_path("trinity", "demo"))}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv python, bin dir, env, work dir outside the repository)."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:  # a clean copy: the build writes build/ and *.egg-info beside the sources
        p = REPO / name
        if p.is_dir():
            shutil.copytree(p, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(p, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(src),
                    "-w", str(tmp / "dist")], check=True, capture_output=True)
    (wheel,) = (tmp / "dist").glob("baton-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # third-party packages from the dev venv, appended after the venv's own site-packages; its
    # editable-install hook (a .pth there) is not run, so `baton` can only come from the wheel
    Path(purelib, "dev_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BATON_CONFIGS", "VIRTUAL_ENV")}
    env.update(WANDB_MODE="offline", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    work = tmp / "work"
    work.mkdir()
    return py, venv / "bin", env, work, Path(purelib)


@pytest.fixture(scope="module")
def conductor_ckpt(tmp_path_factory):
    from test_hub import make_conductor
    return make_conductor(tmp_path_factory.mktemp("cond") / "c1")


@pytest.mark.slow
def test_wheel_snippet_runs_outside_the_repository(installed, conductor_ckpt):
    py, _, env, work, site = installed
    (work / "snippet.py").write_text(textwrap.dedent(SNIPPET))
    r = subprocess.run([str(py), "snippet.py", str(conductor_ckpt)], cwd=work, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    for key in ("baton", "routers", "pool_file", "demo"):
        assert Path(out[key]).is_relative_to(site), (key, out[key])     # the wheel's files, not the repo's
    assert 0 < out["knn_accuracy"] <= 1 and len(out["ranked"]) == 6 and out["reply_worker"] in out["ranked"]
    assert out["conductor_workers"] and (work / "runs" / "t1" / "README.md").is_file()


@pytest.mark.slow
def test_installed_cli_train_by_config_name_and_serve(installed):
    _, bin_dir, env, work, _ = installed
    r = subprocess.run([str(bin_dir / "baton"), "train", "trinity", "--config", "route", "--out", "t2",
                        "coordinator.model=tiny", "train.iterations=1", "train.popsize=4", "data.limit=30"],
                       cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((work / "t2" / "config.json").read_text())["router_type"] == "trinity"
    port = _free_port()
    proc = subprocess.Popen([str(bin_dir / "baton"), "serve", "--pool", "simulated", "--router", "random",
                             "--port", str(port), "--log", "decisions.jsonl"], cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, models = time.time() + 120, None
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as resp:
                    models = json.loads(resp.read())
                    break
            except OSError:
                time.sleep(0.3)
        assert models is not None, proc.stdout.read() if proc.poll() is not None else "server did not answer"
        assert "random" in [m["id"] for m in models["data"]]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
