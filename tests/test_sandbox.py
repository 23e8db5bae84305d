"""The code sandbox: each hostile or broken program is contained, ends in time, and is not `ok`."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from routers.tasks.sandbox import nproc_enforced, run_code

REPO = Path(__file__).resolve().parents[1]


def test_clean_program_passes():
    r = run_code("def f(x):\n    return x + 1\nassert f(1) == 2\nprint('fine')")
    assert r.ok and r.returncode == 0 and r.stdout == "fine\n" and not r.timed_out and r.killed_reason is None


def test_failing_assert_and_syntax_error():
    r = run_code("assert 1 == 2, 'nope'")
    assert not r.ok and r.returncode == 1 and "AssertionError: nope" in r.stderr
    r = run_code("def f(:\n    pass")
    assert not r.ok and "SyntaxError" in r.stderr


@pytest.mark.parametrize("code", ["while True:\n    pass", "import time\ntime.sleep(60)"])
def test_infinite_loop_and_sleep_are_killed_at_the_timeout(code):
    t0 = time.monotonic()
    r = run_code(code, timeout_s=1)
    assert time.monotonic() - t0 < 5
    assert not r.ok and r.timed_out and r.killed_reason == "timeout" and r.returncode == -9


def test_fork_bomb_is_blocked():
    r = run_code("import os\nwhile True:\n    os.fork()", timeout_s=3)
    assert not r.ok and not r.timed_out and r.blocked == ["os.fork"]


@pytest.mark.parametrize("code,what", [
    ("import subprocess\nsubprocess.run(['true'])", "import _posixsubprocess"),
    ("import os\nos.system('true')", "os.system"),
    ("import ctypes", "import ctypes"),
    ("import socket\nsocket.socket()", "socket.__new__"),
    ("import os, signal\nos.kill(os.getppid(), signal.SIGTERM)", "os.kill"),
    ("import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))", "resource.setrlimit"),
])
def test_processes_sockets_signals_and_limit_changes_are_blocked(code, what):
    r = run_code(code)
    assert not r.ok and r.blocked and r.blocked[0].startswith(what)


def test_memory_bomb_hits_the_memory_limit():
    r = run_code("a = []\nwhile True:\n    a.append(bytearray(10**7))", memory_mb=256, timeout_s=10)
    assert not r.ok and r.killed_reason == "memory_limit" and not r.timed_out


def test_huge_output_is_capped_and_killed():
    r = run_code("while True:\n    print('x' * 1000)", max_output_kb=16, timeout_s=10)
    assert not r.ok and r.killed_reason == "output_limit" and not r.timed_out
    assert len(r.stdout) <= 16 * 1024


def test_big_file_hits_the_file_size_limit():
    r = run_code("f = open('big', 'wb')\nfor _ in range(64):\n    f.write(b'x' * (1 << 20))", max_file_mb=4)
    assert not r.ok and r.killed_reason == "file_size_limit"


def test_writes_outside_the_sandbox_are_refused(tmp_path):
    outside = Path("/tmp") / f"outside_{uuid.uuid4().hex}"
    in_repo = REPO / f"sandbox_probe_{uuid.uuid4().hex}"
    for target in (outside, in_repo):
        r = run_code(f"open({str(target)!r}, 'w').write('x')")
        assert not r.ok and r.blocked and not target.exists()
        r = run_code(f"import os\nos.open({str(target)!r}, os.O_WRONLY | os.O_CREAT)")
        assert not r.ok and not target.exists()
    victim = tmp_path / "keep.txt"
    victim.write_text("keep")
    for code in (f"import os\nos.remove({str(victim)!r})", f"import shutil\nshutil.rmtree({str(tmp_path)!r})",
                 f"import os\nopen('a', 'w').close()\nos.rename('a', {str(tmp_path / 'moved')!r})",
                 f"import os\nos.chmod({str(victim)!r}, 0)"):
        r = run_code(code)
        assert not r.ok and r.blocked, code
    assert victim.read_text() == "keep" and not (tmp_path / "moved").exists()


def test_writes_inside_its_own_dir_work_and_the_dir_is_removed():
    r = run_code("import os\nopen('a.txt', 'w').write('hi')\nprint(open('a.txt').read(), os.getcwd())\n"
                 "print(os.environ['HOME'] == os.getcwd(), os.environ['TMPDIR'] == os.getcwd())")
    assert r.ok, r.stderr
    first, second = r.stdout.splitlines()
    workdir = first.split()[1]
    assert first.startswith("hi ") and second == "True True"
    assert not os.path.exists(workdir)


def test_stdin_reads_eof():
    r = run_code("print(input())")
    assert not r.ok and "EOFError" in r.stderr and not r.timed_out


def test_nproc_enforcement_is_reported():
    assert nproc_enforced() == (os.geteuid() != 0)
