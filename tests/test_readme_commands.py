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
