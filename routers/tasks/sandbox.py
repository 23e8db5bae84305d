"""Run model-written Python with time, memory, process, file and output limits.

What it does:
- a fresh `python -I -S -B` subprocess (isolated mode: no user site, no PYTHON* env, no site-packages,
  no .pyc writes) with a clean environment; cwd, HOME and TMPDIR are its own
  `tempfile.TemporaryDirectory`, deleted afterwards; stdin is /dev/null;
- started in a new session, so on a timeout the whole process group is SIGKILLed (`os.killpg`);
- a bootstrap sets resource limits on itself before the code runs (RLIMIT_AS memory, RLIMIT_CPU,
  RLIMIT_NPROC, RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_CORE=0; soft = hard). It is done in the child
  rather than in `preexec_fn`, which is unsafe when the parent has threads (an HF worker, asyncio);
- the bootstrap installs a `sys.addaudithook` that refuses: opening files for writing, deleting,
  renaming, chmod/chown/mkdir/link/utime outside the sandbox dir; process creation and signals
  (os.fork/exec/spawn/system, subprocess, os.kill) and the modules that bypass those checks
  (ctypes, _posixsubprocess) unless `allow_subprocess`; sockets unless `allow_network`; and any
  further `resource.setrlimit` (a root child could raise its hard limits back);
- stdout/stderr are read by the parent with a byte cap: past it the run is killed
  (killed_reason "output_limit"), so a print loop never fills the caller's memory;
- the parent enforces the wall-clock timeout.

What it does NOT contain (it is not a VM or a container):
- the audit hook is a tripwire for the mistakes and accidents of generated code, not a security
  boundary: code determined to escape can (e.g. via gc/frame tricks to reach unhooked internals);
- reads are not restricted: the code can read any file the user can (keys, the repo);
- it runs as the same user. RLIMIT_NPROC counts all of that user's processes and is NOT enforced
  for root (`nproc_enforced()` says which); as root the audit hook is the only fork barrier;
- a child that calls setsid() (only possible if subprocess is allowed) leaves the process group.
Run untrusted code from unknown sources in a real container (gVisor, firejail, nsjail) instead.
"""

from __future__ import annotations

import math
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

_BOOTSTRAP = r'''
import os, sys, resource
_ROOT = os.path.realpath(os.getcwd())
_LIMITS = {LIMITS}
for _name, _value in _LIMITS.items():
    try:
        resource.setrlimit(getattr(resource, _name), (_value, _value))
    except (ValueError, OSError):
        pass  # e.g. a hard limit already lower than ours
_ALLOW_PROC = {ALLOW_PROC}
_ALLOW_NET = {ALLOW_NET}
_PROC = {"os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
         "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill"}
_NET = {"socket.__new__", "socket.connect", "socket.bind", "socket.sendto", "socket.getaddrinfo"}
_PATHS = {"os.remove": (0,), "os.rmdir": (0,), "os.rename": (0, 1), "os.mkdir": (0,),
          "os.chmod": (0,), "os.chown": (0,), "os.link": (0, 1), "os.symlink": (1,),
          "os.truncate": (0,), "os.utime": (0,), "shutil.rmtree": (0,), "os.chflags": (0,),
          "os.lchflags": (0,), "os.setxattr": (0,), "os.removexattr": (0,)}
_MODS = {"ctypes", "_ctypes", "_posixsubprocess"}
_WFLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_realpath, _join, _getcwd, _fsdecode, _write = (os.path.realpath, os.path.join, os.getcwd,
                                                 os.fsdecode, os.write)

def _inside(p):
    if isinstance(p, int) or p is None:
        return True  # an fd: it was checked when opened
    p = _realpath(_join(_getcwd(), _fsdecode(p)))
    return p == _ROOT or p.startswith(_ROOT + os.sep) or p == "/dev/null"

def _deny(what):
    try:
        _write(2, ("[sandbox] blocked: " + what + "\n").encode("utf-8", "replace"))
    except OSError:
        pass
    raise PermissionError("sandbox: " + what)

def _hook(event, args):
    if event == "open":
        path, mode, flags = (tuple(args) + (None, None, None))[:3]
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags > 0 and flags & _WFLAGS)
        if writing and not _inside(path):
            _deny("write outside the sandbox: " + str(path))
    elif event in _PATHS:
        for i in _PATHS[event]:
            if i < len(args) and not _inside(args[i]):
                _deny(event + " outside the sandbox: " + str(args[i]))
    elif event == "import":
        if not _ALLOW_PROC and args[0].split(".")[0] in _MODS:
            _deny("import " + args[0])
    elif event in _PROC:
        if not _ALLOW_PROC:
            _deny(event)
    elif event in _NET:
        if not _ALLOW_NET:
            _deny(event)
    elif event in ("resource.setrlimit", "resource.prlimit"):
        _deny(event)

sys.addaudithook(_hook)
del _hook
with open("main.py", encoding="utf-8") as _f:
    _src = _f.read()
_g = {"__name__": "__main__", "__file__": "main.py", "__builtins__": __builtins__}
exec(compile(_src, "main.py", "exec"), _g)
'''


@dataclass
class SandboxResult:
    ok: bool                      # exited 0, in time, within every limit
    returncode: int | None        # negative: killed by that signal
    stdout: str                   # truncated at the output cap
    stderr: str
    timed_out: bool               # the parent killed it at the wall-clock timeout
    killed_reason: str | None     # timeout | output_limit | cpu_limit | memory_limit | file_size_limit | signal NAME
    duration_s: float
    blocked: list[str] = field(default_factory=list)  # what the audit hook refused, in order


def nproc_enforced() -> bool:
    """Whether RLIMIT_NPROC can stop a fork bomb here (it is ignored for root)."""
    return os.geteuid() != 0


def run_code(code: str, *, timeout_s: float = 10, memory_mb: int = 512, max_procs: int = 64,
             max_file_mb: int = 16, max_output_kb: int = 64, allow_subprocess: bool = False,
             allow_network: bool = False) -> SandboxResult:
    """Run `code` as a Python program under the limits above and return how it ended.
    Never raises for anything the code does; `ok` is False for every abnormal end."""
    limits = {"RLIMIT_AS": memory_mb << 20, "RLIMIT_CPU": int(math.ceil(timeout_s)) + 1,
              "RLIMIT_NPROC": max_procs, "RLIMIT_FSIZE": max_file_mb << 20, "RLIMIT_NOFILE": 64,
              "RLIMIT_CORE": 0}
    boot = (_BOOTSTRAP.replace("{LIMITS}", repr(limits)).replace("{ALLOW_PROC}", repr(allow_subprocess))
            .replace("{ALLOW_NET}", repr(allow_network)))
    cap = max_output_kb << 10
    with tempfile.TemporaryDirectory(prefix="baton-sandbox-", ignore_cleanup_errors=True) as tmp:
        with open(os.path.join(tmp, "main.py"), "w", encoding="utf-8") as f:
            f.write(code)
        with open(os.path.join(tmp, "_bootstrap.py"), "w", encoding="utf-8") as f:
            f.write(boot)
        env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8",
               "PYTHONIOENCODING": "utf-8"}
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-B", "_bootstrap.py"], cwd=tmp, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, close_fds=True)
        out, err, reason = _collect(proc, t0 + timeout_s, cap)
        duration = time.monotonic() - t0
    rc = proc.returncode
    stderr = err.decode("utf-8", "replace")
    blocked = [ln[len("[sandbox] blocked: "):] for ln in stderr.splitlines() if ln.startswith("[sandbox] blocked: ")]
    if reason is None and rc is not None and rc < 0:
        sig = -rc
        reason = {signal.SIGXCPU: "cpu_limit", signal.SIGXFSZ: "file_size_limit"}.get(
            sig, f"signal {signal.Signals(sig).name}" if sig in signal.Signals._value2member_map_ else f"signal {sig}")
    elif reason is None and rc and "MemoryError" in stderr:
        reason = "memory_limit"
    elif reason is None and rc and "[Errno 27] File too large" in stderr:  # Python ignores SIGXFSZ
        reason = "file_size_limit"
    if len(out) >= cap or len(err) >= cap:
        stderr += "\n[sandbox] output truncated"
    return SandboxResult(ok=(rc == 0 and reason is None), returncode=rc,
                         stdout=out.decode("utf-8", "replace"), stderr=stderr,
                         timed_out=(reason == "timeout"), killed_reason=reason,
                         duration_s=duration, blocked=blocked)


def _collect(proc: subprocess.Popen, deadline: float, cap: int) -> tuple[bytes, bytes, str | None]:
    """Read both pipes until the process ends, the deadline passes, or output exceeds `cap`."""
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    fds = {out_fd: bytearray(), err_fd: bytearray()}
    sel = selectors.DefaultSelector()
    for fd in fds:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    reason = None

    def drain(fd: int) -> bool:
        """Read what is there; False at EOF."""
        nonlocal reason
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return True
            if not chunk:
                sel.unregister(fd)
                return False
            buf = fds[fd]
            buf += chunk[: max(0, cap - len(buf))]
            if len(buf) >= cap:
                reason = "output_limit"
                return True

    try:
        while reason is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                reason = "timeout"
                break
            if sel.get_map():
                for key, _ in sel.select(timeout=min(remaining, 0.05)):
                    drain(key.fd)
                    if reason:
                        break
            exited = proc.poll() is not None
            if exited:  # take what is left in the pipes (a leftover child may hold them open)
                for fd in list(sel.get_map()):
                    drain(fd)
                break
            if not sel.get_map():
                time.sleep(min(remaining, 0.01))
    finally:
        _kill_group(proc)
        sel.close()
        proc.stdout.close()
        proc.stderr.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
            pass
    return bytes(fds[out_fd]), bytes(fds[err_fd]), reason


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
