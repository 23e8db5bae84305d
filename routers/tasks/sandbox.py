"""Run model-written Python with time, memory, process, file and output limits, inside Linux
namespaces where the machine allows it.

Two layers, and every result says which were active (`SandboxResult.sandbox`):

1. "namespace" (the default wherever `unshare` from util-linux works): the run starts under
   `unshare --net --mount --pid --ipc --uts --fork --kill-child` (plus `--user --map-root-user` when
   not root), whose first process is a small trusted init (`_INIT`) that builds a new root on a
   tmpfs and `pivot_root`s into it (or moves it over / and chroots, where pivot_root is refused):
   - read-only, nosuid binds of the system dirs (/usr, /bin, /lib*, a few /etc files) and of the
     interpreter's own prefix, and nothing else: `$HOME`, the repository, the venv, /etc/shadow,
     the other users' /tmp files are simply absent (and any of them that would lie under a bound
     dir is covered by an empty tmpfs);
   - the run's own directory at /sandbox (cwd, HOME, TMPDIR) is the only writable host path, /tmp
     is a private 64 MB tmpfs, /dev holds null/zero/full/random/urandom, /proc is the new PID
     namespace's own (it shows the sandbox's processes only);
   - a network namespace with no interfaces up: no network at all, not even loopback;
   - a PID namespace: the init waits for the program and then exits, which kills every process the
     program left behind; killing `unshare` (timeout) kills the init (`--kill-child`);
   - the program itself runs with an empty capability bounding set and no_new_privs and, when we
     are root, as a fresh unprivileged uid per run, so RLIMIT_NPROC binds (a fork bomb stops at
     `max_procs`) and one run's processes never count against another's.
2. "tripwire" (always, and the only layer where namespaces are unavailable; a RuntimeWarning says
   so once per process): a fresh `python -I -S -B` with a clean environment in its own temporary
   directory, stdin /dev/null, in a new session (the group is SIGKILLed at the end); a bootstrap
   sets rlimits (RLIMIT_AS, CPU, NPROC, FSIZE, NOFILE, CORE=0; soft = hard) and installs a
   `sys.addaudithook` that refuses writes/deletes/renames outside its dir, process creation and
   signals (os.fork/exec/system, subprocess, os.kill, ctypes, _posixsubprocess) unless
   `allow_subprocess`, sockets unless `allow_network`, and further `resource.setrlimit`. The parent
   caps stdout/stderr (killed_reason "output_limit") and enforces the wall-clock timeout.
   Alone, the tripwire is not a security boundary: the hook can be bypassed (gc/frame tricks),
   reads are not restricted (keys, the repository), and as root RLIMIT_NPROC is not enforced.

`BATON_SANDBOX=auto|namespace|tripwire` (or `run_code(isolation=...)`) picks the mode: "namespace"
fails loudly where it cannot work, "tripwire" skips the namespaces. The namespaces cost about 0.1 s
more per run than the tripwire alone (a second interpreter start, the mounts; measured by
`scripts/bench_sandbox.py`). Neither mode is a VM: a kernel exploit escapes both; run code from
unknown sources in gVisor or a VM.
"""

from __future__ import annotations

import functools
import math
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

MODES = ("auto", "namespace", "tripwire")
ENV_VAR = "BATON_SANDBOX"
_UNSHARE = "unshare"
# system dirs and files the program may read; everything else on the host is absent
_SYSTEM_RO = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32", "/etc/ld.so.cache",
              "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/alternatives")
_UID_BASE, _UID_SPAN = 0x30000000, 1 << 24  # root: each run gets a fresh uid from this range
_REPO = str(Path(__file__).resolve().parents[2])

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

# The namespace's PID 1, run by `unshare` as root (or as root of a new user namespace). It is
# trusted code: it builds the new root, forks the program with privileges dropped, waits for it and
# reports its end on the status fd ("exit N" / "signal N" / "setup-error: ..."), since unshare
# itself does not pass a signal death on.
_INIT = r'''
import ctypes, os
cfg = {CFG}
fd = cfg["status_fd"]
os.set_inheritable(fd, False)
libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
RDONLY, NOSUID, NODEV, NOEXEC, REMOUNT, BIND, MOVE, REC, PRIVATE = 1, 2, 4, 8, 32, 4096, 8192, 16384, 1 << 18
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}

def enc(s):
    return None if s is None else s.encode()

def check(rc, what):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, what + ": " + os.strerror(e))

def mount(src, dst, fstype, flags, data=None):
    check(libc.mount(enc(src), enc(dst), enc(fstype), flags, enc(data)), "mount " + str(src) + " on " + dst)

def bind(src, dst, flags):
    mount(src, dst, None, BIND)
    mount(None, dst, None, REMOUNT | BIND | flags)

def place(src, dst):
    """An empty dir or file at dst to mount src on (or the same symlink)."""
    if os.path.islink(src):
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        os.symlink(os.readlink(src), dst)
        return False
    if os.path.isdir(src):
        os.makedirs(dst, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        open(dst, "w").close()
    return True

def setup():
    R = cfg["root"]
    mount(None, "/", None, REC | PRIVATE)
    mount("tmpfs", R, "tmpfs", NOSUID | NODEV, "size=1m,mode=755")
    for p in cfg["ro"]:
        if place(p, R + p):
            bind(p, R + p, RDONLY | NOSUID | NODEV)
    os.makedirs(R + "/dev")
    mount("tmpfs", R + "/dev", "tmpfs", NOSUID | NOEXEC, "size=64k,mode=755")
    for n in ("null", "zero", "full", "random", "urandom"):
        place("/dev/" + n, R + "/dev/" + n)
        bind("/dev/" + n, R + "/dev/" + n, NOSUID | NOEXEC)
    for n, t in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                 ("stderr", "/proc/self/fd/2")):
        os.symlink(t, R + "/dev/" + n)
    os.makedirs(R + "/dev/shm")
    mount("tmpfs", R + "/dev/shm", "tmpfs", NOSUID | NODEV | NOEXEC, "size=16m,mode=1777")
    os.makedirs(R + "/proc")
    try:  # the new PID namespace's own /proc; absent where the kernel refuses it
        mount("proc", R + "/proc", "proc", NOSUID | NODEV | NOEXEC)
    except OSError:
        pass
    os.makedirs(R + "/tmp")
    mount("tmpfs", R + "/tmp", "tmpfs", NOSUID | NODEV, "size=64m,mode=1777")
    os.makedirs(R + "/sandbox")
    bind(cfg["work"], R + "/sandbox", NOSUID | NODEV)
    for m in cfg["mask"]:
        if os.path.isdir(R + m):
            mount("tmpfs", R + m, "tmpfs", RDONLY | NOSUID | NODEV | NOEXEC, "size=4k,mode=755")
    mount(None, R, None, REMOUNT | RDONLY | NOSUID | NODEV)
    os.chdir(R)
    nr = SYS_PIVOT_ROOT.get(os.uname().machine)
    if nr is not None and libc.syscall(nr, b".", b".") == 0:
        check(libc.umount2(b".", 2), "umount the old root")  # MNT_DETACH
    else:  # unknown syscall number, or an initramfs root pivot_root refuses: what switch_root does
        mount(R, "/", None, MOVE)
        os.chroot(".")  # the program gets no CAP_SYS_CHROOT, so it cannot leave this
    os.chdir("/")

def report(msg):
    os.write(fd, msg.encode("utf-8", "replace"))

try:
    setup()
except BaseException as e:
    report("setup-error: " + str(e))
    os._exit(1)
pid = os.fork()
if pid == 0:
    try:
        os.chdir("/sandbox")
        for cap in range(64):  # an empty bounding set: exec gives no capabilities, even to root
            if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP; EINVAL past the last cap
                break
        if cfg["uid"] is not None:
            os.setgroups([])
            os.setgid(cfg["uid"])
            os.setuid(cfg["uid"])
        check(libc.prctl(38, 1, 0, 0, 0), "no_new_privs")  # PR_SET_NO_NEW_PRIVS
        os.execve(cfg["python"], [cfg["python"], "-I", "-S", "-B", "_bootstrap.py"], cfg["env"])
    except BaseException as e:
        report("setup-error: " + str(e))
    os._exit(127)
while True:
    try:
        _, st = os.waitpid(pid, 0)
        break
    except InterruptedError:
        continue
report("signal %d" % os.WTERMSIG(st) if os.WIFSIGNALED(st) else "exit %d" % os.WEXITSTATUS(st))
'''


class SandboxUnavailable(RuntimeError):
    """`isolation="namespace"` was asked for where Linux namespaces cannot be used."""


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
    sandbox: str = "tripwire"     # the isolation that was active: "namespace" or "tripwire"


@functools.lru_cache(maxsize=1)
def namespace_support() -> tuple[bool, str]:
    """(usable, why not): whether a namespaced run works here, found by doing one."""
    if not sys.platform.startswith("linux"):
        return False, f"not Linux ({sys.platform})"
    if shutil.which(_UNSHARE) is None:
        return False, f"{_UNSHARE!r} (util-linux) is not installed"
    try:
        r = _run("print('ok')", mode="namespace", timeout_s=20, memory_mb=256, max_procs=16, max_file_mb=1,
                 max_output_kb=4, allow_subprocess=False, allow_network=False)
    except SandboxUnavailable as e:
        return False, str(e)
    if not (r.ok and r.stdout == "ok\n"):
        return False, f"a namespaced probe run failed (rc {r.returncode}): {r.stderr.strip()[-300:]}"
    return True, ""


def isolation_mode(isolation: str | None = None) -> str:
    """The mode a run gets: `isolation`, else $BATON_SANDBOX, else "auto" (namespace where it works,
    else the tripwire with a RuntimeWarning, once)."""
    want = (isolation or os.environ.get(ENV_VAR) or "auto").strip().lower()
    if want not in MODES:
        raise ValueError(f"sandbox isolation {want!r} (from {'isolation=' if isolation else ENV_VAR}) "
                         f"is not one of {', '.join(MODES)}")
    if want == "tripwire":
        return want
    usable, why = namespace_support()
    if usable:
        return "namespace"
    if want == "namespace":
        raise SandboxUnavailable(f"namespace sandbox unavailable: {why}")
    _warn_fallback(why)
    return "tripwire"


@functools.lru_cache(maxsize=1)
def _warn_fallback(why: str) -> None:
    warnings.warn(f"baton sandbox: Linux namespaces are unavailable here ({why}); graded code runs under "
                  f"the tripwire only (rlimits + audit hook), which does not stop it reading this user's "
                  f"files. Set {ENV_VAR}=tripwire to accept that, or {ENV_VAR}=namespace to refuse it.",
                  RuntimeWarning, stacklevel=4)


def nproc_enforced(isolation: str | None = None) -> bool:
    """Whether RLIMIT_NPROC can stop a fork bomb (root ignores it; namespaced runs as root switch to
    a fresh uid, so it binds there)."""
    return os.geteuid() != 0 or isolation_mode(isolation) == "namespace"


def run_code(code: str, *, timeout_s: float = 10, memory_mb: int = 512, max_procs: int = 64,
             max_file_mb: int = 16, max_output_kb: int = 64, allow_subprocess: bool = False,
             allow_network: bool = False, isolation: str | None = None) -> SandboxResult:
    """Run `code` as a Python program under the limits above and return how it ended.
    Never raises for anything the code does; `ok` is False for every abnormal end. Raises
    SandboxUnavailable when `isolation` (or $BATON_SANDBOX) is "namespace" and that cannot work
    here, or when a namespaced run fails to set up (a fault of the machine, not of the code)."""
    return _run(code, mode=isolation_mode(isolation), timeout_s=timeout_s, memory_mb=memory_mb,
                max_procs=max_procs, max_file_mb=max_file_mb, max_output_kb=max_output_kb,
                allow_subprocess=allow_subprocess, allow_network=allow_network)


def _needs_user_namespace() -> bool:
    """Not root: the namespaces are made inside a user namespace, as its root (then dropped)."""
    return os.geteuid() != 0


def _sandbox_uid() -> int:
    return _UID_BASE + secrets.randbelow(_UID_SPAN)


def _ro_paths(python: str) -> list[str]:
    """System paths plus the interpreter's prefix and dir, minus those under another one."""
    extra = [os.path.realpath(sys.base_prefix), os.path.dirname(python)]
    paths = [p for p in _SYSTEM_RO if os.path.lexists(p)] + [p for p in extra if os.path.isdir(p)]
    keep: list[str] = []
    for p in sorted(set(paths), key=len):
        if not any(p == k or p.startswith(k.rstrip("/") + "/") for k in keep):
            keep.append(p)
    return keep


def _masks(ro: list[str]) -> list[str]:
    """Secret places that would be visible because they lie under a bound dir: covered by a tmpfs."""
    secrets_ = {os.path.realpath(os.path.expanduser("~")), _REPO, os.path.realpath(sys.prefix)}
    try:
        secrets_.add(os.path.realpath(os.getcwd()))
    except OSError:  # a deleted cwd
        pass
    return sorted(m for m in secrets_ if any(m.startswith(r.rstrip("/") + "/") for r in ro)
                  and not any(r.startswith(m.rstrip("/") + "/") or r == m for r in ro))


def _namespace_command(tmp: str, work: str, env: dict[str, str], python: str, status_w: int) -> list[str]:
    """Prepare `tmp` (the run's dir, `work` inside it) for a namespaced run: the program's files
    owned by its fresh uid, an empty mount point for the new root, and the init with this run's
    settings; return the `unshare` command that starts that init."""
    userns = _needs_user_namespace()
    uid = None if userns else _sandbox_uid()
    if uid is not None:
        for p in (work, *(os.path.join(work, n) for n in os.listdir(work))):
            os.chown(p, uid, uid)
    os.mkdir(os.path.join(tmp, "root"))
    ro = _ro_paths(python)
    cfg = {"status_fd": status_w, "root": os.path.join(tmp, "root"), "work": work, "ro": ro,
           "mask": _masks(ro), "uid": uid, "python": python, "env": env}
    init = os.path.join(tmp, "init.py")
    with open(init, "w", encoding="utf-8") as f:
        f.write(_INIT.replace("{CFG}", repr(cfg)))
    return [_UNSHARE, "--net", "--mount", "--pid", "--ipc", "--uts", "--fork", "--kill-child",
            "--propagation", "private", *(["--user", "--map-root-user"] if userns else []), "--",
            python, "-I", "-S", "-B", init]


def _run(code: str, *, mode: str, timeout_s: float, memory_mb: int, max_procs: int, max_file_mb: int,
         max_output_kb: int, allow_subprocess: bool, allow_network: bool) -> SandboxResult:
    limits = {"RLIMIT_AS": memory_mb << 20, "RLIMIT_CPU": int(math.ceil(timeout_s)) + 1,
              "RLIMIT_NPROC": max_procs, "RLIMIT_FSIZE": max_file_mb << 20, "RLIMIT_NOFILE": 64,
              "RLIMIT_CORE": 0}
    boot = (_BOOTSTRAP.replace("{LIMITS}", repr(limits)).replace("{ALLOW_PROC}", repr(allow_subprocess))
            .replace("{ALLOW_NET}", repr(allow_network)))
    cap = max_output_kb << 10
    # the base interpreter: a venv's python (a copy, or a link) needs its pyvenv.cfg, which the
    # namespace does not show; with -I -S the venv's packages are not used anyway
    python = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    status_r = status_w = None
    with tempfile.TemporaryDirectory(prefix="baton-sandbox-", ignore_cleanup_errors=True) as tmp:
        work = os.path.join(tmp, "work")
        os.mkdir(work, 0o700)
        for name, text in (("main.py", code), ("_bootstrap.py", boot)):
            with open(os.path.join(work, name), "w", encoding="utf-8") as f:
                f.write(text)
        inner = "/sandbox" if mode == "namespace" else work
        env = {"PATH": "/usr/bin:/bin", "HOME": inner, "TMPDIR": inner, "LANG": "C.UTF-8",
               "PYTHONIOENCODING": "utf-8"}
        cmd, cwd, pass_fds = [python, "-I", "-S", "-B", "_bootstrap.py"], work, ()
        t0 = time.monotonic()
        try:
            if mode == "namespace":
                status_r, status_w = os.pipe()
                cmd, cwd, pass_fds = _namespace_command(tmp, work, env, python, status_w), tmp, (status_w,)
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True, close_fds=True,
                                    pass_fds=pass_fds)
        except OSError as e:
            for fd in (status_r, status_w):
                if fd is not None:
                    os.close(fd)
            raise SandboxUnavailable(f"cannot start {cmd[0]}: {e}") from e
        if status_w is not None:
            os.close(status_w)
        out, err, reason = _collect(proc, t0 + timeout_s, cap)
        duration = time.monotonic() - t0
    rc = proc.returncode
    stderr = err.decode("utf-8", "replace")
    if status_r is not None:
        status = _read_status(status_r)
        if status.startswith("setup-error"):
            raise SandboxUnavailable(f"namespace setup failed: {status}")
        if not status and reason is None:  # unshare itself failed (no namespaces for us)
            raise SandboxUnavailable(f"{_UNSHARE} exited {rc}: {stderr.strip()[-300:]}")
        if status:
            kind, num = status.split()
            rc = -int(num) if kind == "signal" else int(num)
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
                         duration_s=duration, blocked=blocked, sandbox=mode)


def _read_status(fd: int) -> str:
    """What the namespace init reported (empty if it was killed first)."""
    chunks = []
    os.set_blocking(fd, False)
    try:
        while True:
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace").strip()


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
