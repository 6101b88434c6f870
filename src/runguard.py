"""Guards around a run: one process per run folder, SIGTERM like Ctrl-C, environment faults as one line.

- `RunLock`: an exclusive lock file (`run.lock`) in the run folder, created with O_EXCL and holding the
  holder's host, pid and process start time. A second process on the same folder is refused with a
  message naming the holder. A lock left by a process that died (same host, pid gone or reused by
  another process) is stale: it is taken over with a warning. A lock from another host cannot be
  checked from here; the message says how to remove it once that process is known to be gone.
- `sigterm_as_interrupt()`: SIGTERM (what SLURM, systemd and `kill` send) raises `Terminated`, a
  KeyboardInterrupt, so it takes the same path as Ctrl-C (exit 143 instead of 130).
- `environment_fault(exc)`: a full disk, a read-only or missing folder, a damaged state.sqlite become one
  sentence that says what to do (exit 2) instead of a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path

LOCK_NAME = "run.lock"


class RunLocked(Exception):
    """Another live process holds the run folder (exit 2)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C."""


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), None if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """`with RunLock(run_dir): ...` — exclusive use of a run folder by this process."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self.held = False

    def _me(self) -> dict:
        return {"host": socket.gethostname(), "pid": os.getpid(), "start_time": _start_time(os.getpid()),
                "since": time.strftime("%Y-%m-%d %H:%M:%S")}

    def holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # unreadable or half-written: treated as stale below

    def _stale(self, holder: dict) -> bool:
        if not holder or not isinstance(holder.get("pid"), int):
            return True  # a lock file cut short by a crash while it was written
        if holder.get("host") != socket.gethostname():
            return False  # cannot check another machine's processes
        pid = holder["pid"]
        if pid == os.getpid():
            return True  # left by this very process (an earlier in-process run that was cut short)
        if not _alive(pid):
            return True
        recorded, now = holder.get("start_time"), _start_time(pid)
        return recorded is not None and now is not None and recorded != now  # the pid was reused

    def acquire(self) -> None:
        me = json.dumps(self._me()).encode()
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self.holder()
                if holder is None:
                    continue  # released meanwhile: try again
                if self._stale(holder):
                    import logging

                    logging.getLogger("ieb").warning("removing a stale lock %s (holder %s is gone)", self.path,
                                                     _describe(holder))
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()
                    continue
                where = "on this machine" if holder.get("host") == socket.gethostname() else \
                    f"on another machine; if that process is gone, delete {self.path}"
                raise RunLocked(f"run folder {self.path.parent} is in use by {_describe(holder)} {where}; wait "
                                "for it to finish (one process per run folder)") from None
            try:
                os.write(fd, me)
                os.fsync(fd)
            finally:
                os.close(fd)
            self.held = True
            return
        raise RunLocked(f"could not take the lock {self.path} (it keeps changing hands)")

    def release(self) -> None:
        if self.held:
            holder = self.holder()
            if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
            self.held = False

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _describe(holder: dict) -> str:
    return f"process {holder.get('pid')} on host {holder.get('host')!r} (since {holder.get('since')})"


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises `Terminated` (a KeyboardInterrupt). Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
NOT_A_FOLDER = (errno.ENOTDIR, errno.EEXIST, errno.EISDIR)


def environment_fault(exc: BaseException, run_dir: Path | None = None, resumable: bool = True) -> str | None:
    """One line for a fault of the machine rather than of the code, or None if `exc` is not one."""
    where = f" (run folder {run_dir})" if run_dir else ""
    resume = f"; then continue with: python main.py --resume {run_dir}" if run_dir and resumable else \
        "; then run it again"
    if isinstance(exc, sqlite3.DatabaseError):
        text = str(exc).lower()
        if "full" in text:
            return f"disk full while writing the run's records{where}: free some space{resume}"
        if "readonly" in text or "read-only" in text:
            return f"the run's records cannot be written: the folder is read-only{where}; fix its permissions " \
                   "or use another --output-dir"
        if "locked" in text or "busy" in text:
            return f"the run's state.sqlite is locked by another process{where}; wait for it to finish"
        return f"the run's state.sqlite is damaged or not a database ({exc}){where}; restore it from a copy or " \
               "start a new run (the images already written are intact)"
    if isinstance(exc, OSError) and exc.errno is not None:
        name = f" {exc.filename}" if exc.filename else ""
        if exc.errno in DISK_FULL:
            return f"disk full while writing{name}{where}: free some space{resume}"
        if exc.errno in NOT_WRITABLE:
            return f"cannot write{name}: permission denied or read-only file system{where}; fix the permissions " \
                   "or choose another --output-dir"
        if exc.errno in NOT_A_FOLDER:
            return f"cannot create the folder{name}: a file is in the way{where}; remove it or choose another " \
                   "--output-dir"
        if exc.errno == errno.EIO:
            return f"input/output error on{name}{where}: the disk or network file system failed; check it{resume}"
    return None


def check_model_source(model) -> None:
    """Before a run folder exists: a `model_name` that cannot be loaded is an error now, not after the folder
    was made. `tiny:<arch>` must be a known tiny architecture; a name that is a local path (starts with /, .
    or ~) must exist. Only for classes that load a checkpoint from `model_name` (they call
    `resolved_model_path`); served judges (`base_url`) name a model on their server."""
    import inspect

    from src.models.base import ModelError

    name = getattr(model, "model_name", None)
    if not isinstance(name, str) or hasattr(model, "base_url"):
        return
    loads_checkpoint = False
    for cls in type(model).__mro__:
        if cls.__module__ == "src.models.base" or cls is object:
            continue
        try:
            if "resolved_model_path(" in inspect.getsource(cls):
                loads_checkpoint = True
                break
        except (OSError, TypeError):
            continue
    if not loads_checkpoint:
        return
    from src.models.tiny import is_tiny, tiny_arch

    if is_tiny(name):
        tiny_arch(name)  # raises ModelError naming the known ones
    elif name.startswith(("/", "./", "../", "~")) and not Path(name).expanduser().exists():
        raise ModelError(f"{type(model).__name__}: model_name {name!r} is a local path that does not exist "
                         "(a hub id looks like 'org/name')")
