"""The code sandbox: each hostile or broken program is contained, ends in time, and is not `ok`.

Every behaviour test runs in both modes ("namespace": Linux namespaces + the tripwire inside;
"tripwire": rlimits + audit hook only). The escape tests switch the audit hook's relevant check
off (`allow_network` / `allow_subprocess`, i.e. as if the code had bypassed it) to show that the
namespaces alone contain the attack, and run the same harmless attack in tripwire mode as a control
that it is real. Destructive attacks (an unbounded fork bomb) run in namespace mode only.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from routers.tasks import get_task, sandbox
from routers.tasks.sandbox import SandboxUnavailable, isolation_mode, nproc_enforced, run_code

REPO = Path(__file__).resolve().parents[1]
MODES = ("namespace", "tripwire")


@pytest.fixture(params=MODES)
def mode(request, monkeypatch):
    monkeypatch.setenv(sandbox.ENV_VAR, request.param)
    return request.param


@pytest.fixture
def fresh_probe():
    """Forget the cached namespace probe and fallback warning (before and after)."""
    sandbox.namespace_support.cache_clear()
    sandbox._warn_fallback.cache_clear()
    yield
    sandbox.namespace_support.cache_clear()
    sandbox._warn_fallback.cache_clear()


def test_clean_program_passes(mode):
    r = run_code("def f(x):\n    return x + 1\nassert f(1) == 2\nprint('fine')")
    assert r.ok and r.returncode == 0 and r.stdout == "fine\n" and not r.timed_out and r.killed_reason is None
    assert r.sandbox == mode


def test_failing_assert_and_syntax_error(mode):
    r = run_code("assert 1 == 2, 'nope'")
    assert not r.ok and r.returncode == 1 and "AssertionError: nope" in r.stderr
    r = run_code("def f(:\n    pass")
    assert not r.ok and "SyntaxError" in r.stderr


@pytest.mark.parametrize("code", ["while True:\n    pass", "import time\ntime.sleep(60)"])
def test_infinite_loop_and_sleep_are_killed_at_the_timeout(code, mode):
    t0 = time.monotonic()
    r = run_code(code, timeout_s=1)
    assert time.monotonic() - t0 < 5
    assert not r.ok and r.timed_out and r.killed_reason == "timeout" and r.returncode == -9


def test_signal_death_is_reported_as_a_signal(mode):
    r = run_code("import faulthandler\nfaulthandler._sigsegv()")
    assert not r.ok and r.returncode == -11 and r.killed_reason == "signal SIGSEGV"


def test_fork_bomb_is_blocked(mode):
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
def test_processes_sockets_signals_and_limit_changes_are_blocked(code, what, mode):
    r = run_code(code)
    assert not r.ok and r.blocked and r.blocked[0].startswith(what)


def test_memory_bomb_hits_the_memory_limit(mode):
    r = run_code("a = []\nwhile True:\n    a.append(bytearray(10**7))", memory_mb=256, timeout_s=10)
    assert not r.ok and r.killed_reason == "memory_limit" and not r.timed_out


def test_memory_bomb_in_a_child_process_is_limited_too(mode):
    r = run_code("import subprocess, sys\nr = subprocess.run([sys.executable, '-c', "
                 "'a = []\\nwhile True: a.append(bytearray(10**7))'], capture_output=True, text=True)\n"
                 "print(r.returncode, 'MemoryError' in r.stderr)", memory_mb=256, timeout_s=10,
                 allow_subprocess=True)
    assert r.ok and r.stdout == "1 True\n", r.stderr


def test_huge_output_is_capped_and_killed(mode):
    r = run_code("while True:\n    print('x' * 1000)", max_output_kb=16, timeout_s=10)
    assert not r.ok and r.killed_reason == "output_limit" and not r.timed_out
    assert len(r.stdout) <= 16 * 1024


def test_big_file_hits_the_file_size_limit(mode):
    r = run_code("f = open('big', 'wb')\nfor _ in range(64):\n    f.write(b'x' * (1 << 20))", max_file_mb=4)
    assert not r.ok and r.killed_reason == "file_size_limit"


def test_writes_outside_the_sandbox_are_refused(tmp_path, mode):
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


def test_writes_inside_its_own_dir_work_and_the_dir_is_removed(mode):
    r = run_code("import os\nopen('a.txt', 'w').write('hi')\nprint(open('a.txt').read(), os.getcwd())\n"
                 "print(os.environ['HOME'] == os.getcwd(), os.environ['TMPDIR'] == os.getcwd())")
    assert r.ok, r.stderr
    first, second = r.stdout.splitlines()
    workdir = first.split()[1]
    assert first.startswith("hi ") and second == "True True"
    if mode == "namespace":
        assert workdir == "/sandbox"  # the host path of its dir is not even known to the code
    else:
        assert not os.path.exists(workdir)


def test_stdin_reads_eof(mode):
    r = run_code("print(input())")
    assert not r.ok and "EOFError" in r.stderr and not r.timed_out


# --- escapes: the hook's check is off, so only the namespaces stand in the way ---------------------

def test_secret_in_home_and_the_repository_are_not_readable(mode):
    secret = Path.home() / f".baton-sandbox-secret-{uuid.uuid4().hex}"
    token = uuid.uuid4().hex
    secret.write_text(token)
    try:
        code = (f"import os\nfor p in [{str(secret)!r}, {str(REPO / 'pyproject.toml')!r}]:\n"
                "    try:\n        print(open(p).read())\n    except OSError as e:\n"
                "        print('refused', type(e).__name__)\n"
                "print(sorted(os.listdir(os.path.dirname(" + repr(str(secret)) + "))))")
        r = run_code(code)
        assert r.ok, r.stderr
        if mode == "namespace":
            assert token not in r.stdout and "[build-system]" not in r.stdout
            assert r.stdout.count("refused FileNotFoundError") == 2
            assert secret.name not in r.stdout  # not even its name
        else:  # control: the tripwire does not restrict reads
            assert token in r.stdout and "[build-system]" in r.stdout
    finally:
        secret.unlink()


def test_loopback_server_is_unreachable(mode):
    srv = socket.create_server(("127.0.0.1", 0))  # the kernel completes a connection into the backlog
    port = srv.getsockname()[1]
    try:
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3).sendall(b'escaped')"
        r = run_code(code, allow_network=True, timeout_s=8)
        srv.settimeout(0.5)
        try:
            conn, _ = srv.accept()
            got = conn.recv(16)
            conn.close()
        except TimeoutError:
            got = None
        if mode == "namespace":
            assert not r.ok and "Network is unreachable" in r.stderr, r.stderr
            assert got is None
            hooked = run_code(code)  # and with the hook on, the socket is refused before that
            assert not hooked.ok and hooked.blocked and hooked.blocked[0].startswith("socket.")
        else:  # control: the server is really there
            assert r.ok and got == b"escaped", r.stderr
    finally:
        srv.close()


def _sandbox_pids(uid: int) -> list[int]:
    pids = []
    for d in os.listdir("/proc"):
        try:
            status = Path(f"/proc/{d}/status").read_text()
        except OSError:
            continue
        uids = next((ln.split()[1:] for ln in status.splitlines() if ln.startswith("Uid:")), [])
        if str(uid) in uids:
            pids.append(int(d))
    return pids


def test_fork_bomb_without_the_hook_stops_at_max_procs(mode):
    code = ("import os\nr, w = os.pipe()\nn = 0\nfor _ in range(200):\n    try:\n        pid = os.fork()\n"
            "    except OSError:\n        break\n    if pid == 0:\n        os.read(r, 1)\n        os._exit(0)\n"
            "    n += 1\nprint(n)")
    r = run_code(code, max_procs=32, allow_subprocess=True, timeout_s=10)
    assert r.ok, r.stderr
    forked = int(r.stdout)
    assert nproc_enforced() == (mode == "namespace" or os.geteuid() != 0)
    if nproc_enforced():
        assert forked < 32
    else:  # control: as root the tripwire lets all 200 through
        assert forked == 200


@pytest.mark.skipif(os.geteuid() != 0, reason="the per-run uid (and so this leftover check) needs root")
def test_unbounded_fork_bomb_stays_inside_and_leaves_nothing(monkeypatch):
    uid = sandbox._UID_BASE + sandbox._UID_SPAN - 1  # a uid no other run draws in this test
    monkeypatch.setattr(sandbox, "_sandbox_uid", lambda: uid)
    code = "import os\nprint(os.getuid(), flush=True)\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    t0 = time.monotonic()
    r = run_code(code, max_procs=32, allow_subprocess=True, timeout_s=2, isolation="namespace")
    assert time.monotonic() - t0 < 8
    assert not r.ok and r.timed_out and r.sandbox == "namespace" and r.stdout == f"{uid}\n"
    deadline = time.monotonic() + 5  # the PID namespace dies with its init
    while _sandbox_pids(uid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _sandbox_pids(uid) == []


def test_writes_outside_by_a_child_process_do_not_reach_the_host(mode):
    target = Path("/tmp") / f"baton_outside_{uuid.uuid4().hex}"
    targets = [target] + ([REPO / f"sandbox_probe_{uuid.uuid4().hex}",
                           Path.home() / f"sandbox_probe_{uuid.uuid4().hex}"] if mode == "namespace" else [])
    code = ("import subprocess\nfor t in %r:\n    r = subprocess.run(['sh', '-c', 'echo x > ' + t])\n"
            "    print(r.returncode)" % [str(t) for t in targets])
    try:
        r = run_code(code, allow_subprocess=True)
        assert r.ok, r.stderr
        if mode == "namespace":
            assert not any(t.exists() for t in targets)
            # the private /tmp takes it (code that needs scratch space works); the rest is read-only
            assert r.stdout.split() == ["0", "2", "2"], r.stdout + r.stderr
        else:  # control: the write really happens without namespaces
            assert target.read_text() == "x\n"
    finally:
        for t in targets:
            t.unlink(missing_ok=True)


@pytest.mark.parametrize("userns", [False, True], ids=["as-root", "user-namespace"])
def test_the_program_has_no_privileges_and_sees_no_host(userns, monkeypatch):
    """Both ways in: as root (fresh uid) and, as a non-root user must, via a user namespace."""
    if not userns and os.geteuid() != 0:
        pytest.skip("the as-root path needs root")
    monkeypatch.setattr(sandbox, "_needs_user_namespace", lambda: userns)
    code = ("import os, socket\nst = open('/proc/self/status').read().splitlines()\n"
            "print(os.getuid(), *[ln.split()[1] for ln in st if ln.startswith(('CapEff', 'CapBnd', 'NoNewPrivs'))])\n"
            "print(sorted(os.listdir('/')))\n"
            "print(os.path.exists(%r), os.path.exists(%r))\n"
            "try:\n    socket.create_connection(('127.0.0.1', 9), timeout=2)\nexcept OSError as e:\n    print(e.errno)\n"
            "print(sum(d.isdigit() for d in os.listdir('/proc')) <= 2)"  # its init and itself
            % (str(REPO), str(Path.home() / ".bashrc")))
    r = run_code(code, isolation="namespace", allow_network=True)
    assert r.ok and r.sandbox == "namespace", r.stderr
    ids, top, hidden, errno_, few_procs = r.stdout.splitlines()
    uid, cap_eff, cap_bnd, no_new_privs = ids.split()
    assert cap_eff == cap_bnd == "0000000000000000" and no_new_privs == "1"
    assert (uid == "0") == userns  # as root: a fresh unprivileged uid
    assert set(eval(top)) <= {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "root", "sandbox",
                              "sbin", "tmp", "usr", "home", "opt"}  # home/opt/root: the interpreter's prefix
    assert hidden == "False False" and errno_ == "101" and few_procs == "True"


def test_the_chroot_fallback_hides_the_host_too(monkeypatch):
    """Where pivot_root is refused (an initramfs root), the init moves the new root over / and chroots."""
    monkeypatch.setattr(sandbox, "_INIT", sandbox._INIT.replace("SYS_PIVOT_ROOT = {", "SYS_PIVOT_ROOT = {} or {"))
    r = run_code(f"import os\nprint(sorted(os.listdir('/')), os.path.exists({str(REPO)!r}))", isolation="namespace")
    assert r.ok and "'sandbox'" in r.stdout and "'work'" not in r.stdout and r.stdout.endswith(" False\n"), r


# --- modes --------------------------------------------------------------------------------------

def test_mode_comes_from_the_argument_then_the_environment(monkeypatch):
    monkeypatch.setenv(sandbox.ENV_VAR, "tripwire")
    assert run_code("pass").sandbox == "tripwire"
    assert run_code("pass", isolation="namespace").sandbox == "namespace"
    monkeypatch.setenv(sandbox.ENV_VAR, "container")
    with pytest.raises(ValueError, match="'container'.*BATON_SANDBOX.*auto, namespace, tripwire"):
        run_code("pass")
    monkeypatch.delenv(sandbox.ENV_VAR)
    assert isolation_mode() == "namespace"  # auto, where namespaces work (they do on CI)


def test_auto_falls_back_to_the_tripwire_with_a_warning(monkeypatch, fresh_probe):
    monkeypatch.setattr(sandbox, "_UNSHARE", "/nonexistent/unshare")
    monkeypatch.delenv(sandbox.ENV_VAR, raising=False)
    with pytest.warns(RuntimeWarning, match="namespaces are unavailable.*nonexistent.*tripwire only"):
        r = run_code("print('ran')")
    assert r.ok and r.stdout == "ran\n" and r.sandbox == "tripwire"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once, not per run
        assert run_code("pass").sandbox == "tripwire"
    with pytest.raises(SandboxUnavailable, match="nonexistent"):
        run_code("pass", isolation="namespace")


def test_a_failing_namespace_setup_is_a_clear_fallback(monkeypatch, fresh_probe):
    monkeypatch.setattr(sandbox, "_INIT", "import os\nos.write({CFG}['status_fd'], b'setup-error: mount: EPERM')")
    usable, why = sandbox.namespace_support()
    assert not usable and "namespace setup failed: setup-error: mount: EPERM" in why


def test_humaneval_grading_reports_its_sandbox(mode):
    task = get_task("humaneval")
    it = task.load(1, seed=0)[0]
    res = task.run(task.render_answer(it, True, np.random.default_rng(0)), it)
    assert res.ok and res.sandbox == mode


@pytest.mark.slow
def test_all_humaneval_canonical_solutions_pass_in_the_namespace(monkeypatch):
    """All 164 canonical solutions still pass with the namespaces on (2 at a time)."""
    monkeypatch.setenv(sandbox.ENV_VAR, "namespace")
    task = get_task("humaneval")
    items = task.load()
    assert len(items) == 164
    with ThreadPoolExecutor(2) as ex:
        results = list(ex.map(lambda it: task.run(it.meta["canonical_solution"], it), items))
    failed = [(it.id, r.killed_reason, r.stderr[-300:]) for it, r in zip(items, results) if not r.ok]
    assert not failed
    assert {r.sandbox for r in results} == {"namespace"}
