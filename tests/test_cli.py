import subprocess
import sys

import pytest

from routers.cli import build_parser, main
from routers.errors import CheckpointError
from routers.checkpoint import read_checkpoint_type


def test_every_subcommand_target_resolves_to_a_module_path():
    p = build_parser()
    for argv in (["demo"], ["eval", "--data", "x"], ["pool", "check", "p.yaml"],
                 ["record", "--pool", "p", "--tasks", "mmlu", "--out", "o"],
                 ["train", "trinity", "--config", "c"], ["train", "conductor", "--config", "c"],
                 ["serve", "--router", "random", "--pool", "p"], ["export", "c", "--out", "o"],
                 ["logs", "summarize", "l"]):
        ns = p.parse_args(argv)
        assert ":" in ns._fn


def test_baton_help_runs_without_importing_heavy_modules():
    code = ("import sys; from routers.cli import build_parser; build_parser(); "
            "print('torch' in sys.modules, 'trinity' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_checkpoint_errors_are_clear(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        read_checkpoint_type(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="invalid JSON"):
        read_checkpoint_type(tmp_path)


def test_user_errors_exit_2_with_a_message(capsys):
    """A BatonError raised inside a command becomes exit code 2 and one line on stderr."""
    from routers import cli

    def boom(args):
        raise CheckpointError("bad checkpoint: thing")
    cli_target = cli._target
    try:
        cli._target = lambda spec: boom
        rc = main(["demo"])
    finally:
        cli._target = cli_target
    assert rc == 2
    assert "baton: error: bad checkpoint: thing" in capsys.readouterr().err
