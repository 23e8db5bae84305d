"""The README's `baton ...` and `python scripts/...` lines are commands users paste: each one must
parse, and each `baton train` line's config and overrides must load."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _commands() -> list[list[str]]:
    text = (REPO / "README.md").read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split("  #")[0].strip()
            for part in line.split("&&"):
                argv = shlex.split(part.strip())
                if argv and argv[0] == "baton":
                    out.append(argv[1:])
    return out


COMMANDS = _commands()


def test_the_readme_has_commands():
    assert len(COMMANDS) >= 8


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a)[:60])
def test_readme_command_parses(argv):
    from routers.cli import build_parser
    args = build_parser().parse_args(argv)
    if argv[0] == "train":
        mod = {"trinity": "trinity.config", "conductor": "conductor.config"}[argv[1]]
        load_config = __import__(mod, fromlist=["load_config"]).load_config
        load_config(REPO / args.config, list(args.overrides))   # unknown keys or bad values raise


# The README commands that finish in well under a minute on CI are executed as written (in a scratch
# folder that sees the repository's configs); the rest are parsed above, for the reason given.
EXECUTED = [["pool", "check", "configs/pools/simulated.yaml"],
            ["record", "--pool", "configs/pools/simulated.yaml", "--tasks", "mmlu:200,gsm8k:50", "--out", "rec.jsonl"],
            ["eval", "--data", "rec.jsonl", "--routers", "random,best-single,knn"]]
NOT_EXECUTED = {"../shared": "needs the optional team data", "outputs/demo": "needs `make demo`'s checkpoint",
                "serve": "a server that runs until stopped (tests/test_serve_routers.py runs it)",
                "paper.yaml": "GPU-scale models from the Hub", "train": "minutes of training (tests/test_demo.py)",
                "test.jsonl": "the user's own files", "logs": "needs a server's decision log",
                "export": "needs `make demo`'s checkpoint"}


def test_every_readme_command_is_executed_or_has_a_reason():
    for argv in COMMANDS:
        line = " ".join(argv)
        assert argv in EXECUTED or any(k in line for k in NOT_EXECUTED), f"README command neither run nor excused: {line}"


def test_quick_readme_commands_run_as_written(tmp_path, monkeypatch, capsys):
    from routers.cli import main
    (tmp_path / "configs").symlink_to(REPO / "configs")
    monkeypatch.chdir(tmp_path)
    for argv in EXECUTED:
        assert argv in COMMANDS, f"{argv} is no longer in the README"
        assert main(list(argv)) == 0, " ".join(argv)
    out = capsys.readouterr().out
    assert (tmp_path / "rec.jsonl").stat().st_size > 0 and "knn" in out and "best-single" in out
