"""Start, find and stop the lab's own server processes (by recorded pid, never by name).

Servers run detached in their own session so a pytest run or a CLI call can end while they keep
serving; their pid is recorded in the lab state so `down` (or the next run) stops exactly them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

# Popen objects of the servers this process started: kept so they are reaped (not garbage-collected
# while running, which warns) and so `alive` can poll them without racing the pid's reuse.
_children: dict[int, subprocess.Popen[bytes]] = {}


def start_detached(argv: list[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
    """Start a server in its own session with stdout/stderr to a log file; return its pid."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    return proc.pid


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        _children.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Ended but not reaped: a server started by another process that is still running (the CLI's
    `up` starts Keystone, the cloud controller stops it) stays a zombie until that process reaps it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def reap() -> None:
    """Collect the servers this process started that have ended meanwhile (stopped by another
    process, such as the cloud controller): no zombie is left behind."""
    for pid in list(_children):
        alive(pid)


def stop(pid: int | None, timeout: float = 15.0) -> None:
    """SIGTERM the process group we created for `pid`, then SIGKILL after `timeout`."""
    if not alive(pid):
        return
    assert pid is not None
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return

    # only signal the group when `pid` leads it (we started it with start_new_session)
    def target(sig: int) -> None:
        if pgid == pid:
            os.killpg(pgid, sig)
        else:
            os.kill(pid, sig)

    try:
        target(signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.05)
    try:
        target(signal.SIGKILL)
    except ProcessLookupError:
        return
    while alive(pid):
        time.sleep(0.05)


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, pid: int | None = None, log: Path | None = None
) -> float:
    """Poll `predicate` until true; fail early if the server `pid` died. Returns seconds waited."""
    started = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - started
        if pid is not None and not alive(pid):
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what}: process {pid} exited\n{tail}")
        if time.monotonic() - started > timeout:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise TimeoutError(f"{what}: not ready after {timeout:.0f}s\n{tail}")
        time.sleep(0.1)
