"""How a worker process is started: its command line, its environment and its memory limit."""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pointcast.functions.runtime.node_ric import entry_point
from pointcast.functions.runtime.spec import FunctionSpec

BOOTSTRAP_JS = Path(__file__).with_name("bootstrap.js")
RIC_PY = Path(__file__).with_name("ric.py")
# awslambdaric, started by ric.py (loaded by path under a private name, so that neither the handler's sys.path nor
# its module names see pointcast): see ric.py for the marshaller and the transport it plugs into awslambdaric.
RIC_MAIN = (
    "import sys, importlib.util as u; s = u.spec_from_file_location('_pointcast_ric', sys.argv.pop(1)); "
    "m = u.module_from_spec(s); s.loader.exec_module(m); m.main(sys.argv)"
)
TRANSPORTS = ("pipe", "runtime-api")  # for Python workers; Node.js workers always use the Runtime API

# Taken from the server's own environment; nothing else of it reaches a handler.
PASSTHROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "LD_LIBRARY_PATH")
# Keys Lambda reserves: a function's Environment cannot replace these when the pool's base environment has them.
RESERVED_FROM_BASE = frozenset(
    {
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SECRET_KEY",
        "AWS_SESSION_TOKEN",
    }
)
NODE_HEAP_SHARE = 0.9  # of MemorySize, for V8's old generation (--max-old-space-size)


class LaunchError(Exception):
    """The worker cannot be started at all; ``error_type`` names it the way Lambda would."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def node_available(node: str | None = shutil.which("node")) -> bool:
    """True when ``node`` is an executable that runs (Node.js functions need it)."""
    if not node:
        return False
    try:
        done = subprocess.run([node, "--version"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.startswith(b"v")


def command(spec: FunctionSpec, python: str, node: str | None, node_ric: Path | None = None) -> list[str]:
    """The worker's argv: AWS's ``awslambdaric`` for Python; for Node.js, AWS's ``aws-lambda-ric`` (the package
    directory ``node_ric``) or, without it, pointcast's ``bootstrap.js``."""
    if spec.runtime.startswith("python3"):
        return [python, "-c", RIC_MAIN, str(RIC_PY), spec.handler]
    if spec.is_node:
        if not node:
            raise LaunchError(
                "Runtime.InvalidEntrypoint", f"Runtime {spec.runtime} needs Node.js, and 'node' is not on this host"
            )
        heap = max(16, int(spec.memory_mb * NODE_HEAP_SHARE))
        if node_ric is not None:
            return [node, f"--max-old-space-size={heap}", str(entry_point(node_ric)), spec.handler]
        return [node, f"--max-old-space-size={heap}", str(BOOTSTRAP_JS)]
    raise LaunchError("Runtime.InvalidRuntime", f"Runtime {spec.runtime} is not supported by pointcast")


def log_stream_name() -> str:
    """Like Lambda's: ``YYYY/MM/DD/[$LATEST]<32 hex>``, one per worker."""
    return f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{secrets.token_hex(16)}"


def environment(
    spec: FunctionSpec, base_env: Mapping[str, str], api_address: str | None, stream: str, pycache: Path
) -> dict[str, str]:
    """base_env, then the function's Environment over it, then what Lambda reserves (which always wins).

    Python writes its bytecode cache under ``pycache`` (in the pool's work dir), never into the code directory.
    """
    env = {key: os.environ[key] for key in PASSTHROUGH if key in os.environ}
    env.update(base_env)
    env["TZ"] = ":UTC"  # Lambda's default; not reserved, so the function's Environment may set its own
    env.update(search_paths(spec, env))
    env.update(spec.environment)
    env.update({key: base_env[key] for key in RESERVED_FROM_BASE if key in base_env})
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": stream,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            "LAMBDA_TASK_ROOT": str(spec.code_dir),
            "_HANDLER": spec.handler,
            "PYTHONUNBUFFERED": "1",
            "PYTHONPYCACHEPREFIX": str(pycache),
        }
    )
    # LoggingConfig, as Lambda tells its runtimes: application logs as JSON objects, and the level only with JSON
    env["AWS_LAMBDA_LOG_FORMAT"] = spec.log_format
    if spec.log_format == "JSON":
        env["AWS_LAMBDA_LOG_LEVEL"] = spec.log_level or "INFO"
    if api_address is not None:  # None: the worker talks over pipes (ric.py), and there is no Runtime API to name
        env["AWS_LAMBDA_RUNTIME_API"] = api_address
    return env


def search_paths(spec: FunctionSpec, env: Mapping[str, str]) -> dict[str, str]:
    """Where a worker looks for native libraries and Node.js modules, as in Lambda: the package's root and its
    ``lib/`` (Lambda's ``LD_LIBRARY_PATH`` has ``/var/task:/var/task/lib``), after what the server's own
    ``LD_LIBRARY_PATH`` names, and Node.js modules in the package's root as a last resort (``NODE_PATH`` ends with
    ``/var/task``). Not reserved: a function's Environment may set its own.

    Lambda lists ``/lib64:/usr/lib64`` first too; here the system's directories stay out of it, because a Python
    built with ``--enable-shared`` (pyenv's) finds its own ``libpython`` through RUNPATH, which
    ``LD_LIBRARY_PATH`` overrides: with ``/usr/lib/x86_64-linux-gnu`` named, Debian's libpython3.11 was loaded
    instead and ``import ssl`` failed."""
    root = str(spec.code_dir)
    libraries = [*filter(None, env.get("LD_LIBRARY_PATH", "").split(":")), root, f"{root}/lib"]
    paths = {"LD_LIBRARY_PATH": ":".join(dict.fromkeys(libraries))}
    if spec.is_node:
        paths["NODE_PATH"] = root
    return paths


NODE_RIC_NATIVE_MB = 32  # what AWS's aws-lambda-ric's native client (its threads, curl) adds to RLIMIT_DATA's count


def memory_limit_mb(spec: FunctionSpec, node_ric: Path | None) -> int:
    """The RLIMIT_DATA a worker gets: MemorySize, plus, under aws-lambda-ric, its native client's own share (idle,
    VmData is ~83 MB against bootstrap.js's ~48 with the same resident memory), so that a handler has about the
    same room under either client; Lambda counts resident memory, where thread stacks cost nothing until used."""
    return spec.memory_mb + (NODE_RIC_NATIVE_MB if spec.is_node and node_ric is not None else 0)


def with_memory_limit(argv: list[str], memory_mb: int) -> list[str]:
    """``argv`` run under RLIMIT_DATA = MemorySize, set by ``/bin/sh`` just before it execs the runtime.

    (A shell rather than ``preexec_fn``: Python code between fork and exec is unsafe in a threaded server, and
    without it subprocess can use vfork. The worker keeps the shell's pid.) If the limit cannot be raised that
    high, the server's own lower hard limit stays in force.

    Why RLIMIT_DATA, measured (Python 3.11, Node 20, x86_64): it counts the heap and private writable mappings,
    not reserved-but-untouched address space, so at 128 MB ``import boto3`` plus a client (VmData ~48 MB) works
    and a 1 GB (or 200 x 1 MB) allocation fails with MemoryError; Node starts (~41 MB RSS) and a large Buffer
    fails. RLIMIT_AS counts thread stacks and malloc arenas too: at 256 MB Python already failed 200 MB of
    chunks (VmSize 133 MB at rest), and Node under RLIMIT_AS=128 MB hangs at start-up.
    """
    kib = max(memory_mb, 1) * 1024
    return ["/bin/sh", "-c", 'ulimit -d "$0" 2>/dev/null; exec "$@"', str(kib), *_dies_with_its_parent(argv)]


SETPRIV = shutil.which("setpriv")  # util-linux (Linux); absent elsewhere


def _dies_with_its_parent(argv: list[str]) -> list[str]:
    """``argv`` started by util-linux's ``setpriv --pdeathsig KILL``, where there is one: a worker is killed when the
    server dies (a SIGKILL, a crash), rather than running on, a handler past its Timeout, beside the worker a
    restarted server starts for the same batch. (The signal comes when the thread that started the worker ends:
    the event loop's, which lives as long as the pool.) What a handler itself started is found by
    ``leftover_processes`` when the server starts again."""
    return [SETPRIV, "--pdeathsig", "KILL", "--", *argv] if SETPRIV else argv


WORKER_ENV = "POINTCAST_WORKER"  # a worker's path in the pool's work dir (its log file without ".log")


def worker_path(work_dir: Path, worker_id: str) -> str:
    """What names a worker's processes: its log file is this plus ".log", and ``WORKER_ENV`` in their environment
    (inherited by whatever the handler starts) is this."""
    return f"{work_dir}{os.sep}worker-{worker_id}"


def processes_of(prefix: str) -> list[int]:
    """Processes a worker whose path (``worker_path``) begins with ``prefix`` started, found in ``/proc`` (Linux;
    elsewhere none): by ``WORKER_ENV`` in the environment they were started with (what a process does to its
    environment later does not show there), or by their output going to such a worker's log file.

    What a handler starts in a session of its own is not in the worker's process group, so killing the group
    misses it; this finds it too, unless it both dropped the variable from its environment and its output."""
    marker = f"{WORKER_ENV}={prefix}".encode()
    found: list[int] = []
    try:
        entries = list(os.scandir("/proc"))
    except OSError:
        return found
    for entry in entries:
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        if _carries(entry.name, marker) or _writes_to(entry.name, prefix):
            found.append(int(entry.name))
    return found


def _carries(pid: str, marker: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            environ = f.read()
    except OSError:
        return False
    return any(entry.startswith(marker) for entry in environ.split(b"\0"))


def _writes_to(pid: str, prefix: str) -> bool:
    for fd in (1, 2):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(prefix):
                return True
        except OSError:
            continue
    return False


def leftover_processes(work_dir: Path) -> list[int]:
    """What the workers of a server that was killed left running in ``work_dir`` (``processes_of``): not those a
    running server owns (a version from before ``pool.lock``, whose workers the lock cannot tell about)."""
    return [pid for pid in processes_of(worker_path(work_dir, "")) if not _under_a_server(pid)]


def _under_a_server(pid: int) -> bool:
    """Whether a pointcast server is among the process's ancestors: its worker, or what the worker started, while it
    runs. What a dead server's workers left was handed to init (or a subreaper), which is not one."""
    for _ in range(64):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
            pid = int(stat[stat.rindex(b")") + 2 :].split()[1])  # the parent: after the name, which may hold spaces
            if pid <= 1:
                return False
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, ValueError):
            return False
        if any(arg.endswith((b"pointcast", b"pointcast/__main__.py")) for arg in argv) and b"serve" in argv:
            return True
    return False


_FALLOC_FL_KEEP_SIZE, _FALLOC_FL_PUNCH_HOLE = 1, 2
_libc: Any = None


def punch_hole(fd: int, offset: int, length: int) -> bool:
    """Free the disk blocks of ``length`` bytes at ``offset`` of the file, which keeps its size and reads back
    zeros there (Linux's ``fallocate(FALLOC_FL_PUNCH_HOLE)``: ext4, xfs, btrfs, tmpfs). False where it cannot."""
    global _libc
    if length <= 0:
        return True
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
            _libc.fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
        mode = _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE
        return bool(_libc.fallocate(fd, mode, offset, length) == 0)
    except (AttributeError, OSError):  # no such call (not Linux)
        return False


def remove_tree(path: str) -> None:
    """Remove a worker's TMPDIR, whatever modes its handler left on what it made there."""

    def writable_and_again(function: Any, name: str, _exc: Any) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(name), 0o700)
            if os.path.isdir(name) and not os.path.islink(name):
                os.chmod(name, 0o700)
                shutil.rmtree(name, ignore_errors=True)
            else:
                function(name)

    shutil.rmtree(path, onerror=writable_and_again)
