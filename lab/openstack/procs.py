"""Start, find and stop the lab's own server processes (by recorded pid, never by name).

Servers run detached in their own session so a pytest run or a CLI call can end while they keep
serving; their pid is recorded in the lab state so `down` (or the next run) stops exactly them.

A pid alone is not an identity: state files survive reboots and pids are reused, so a recorded pid
can name an unrelated process (and its process group) later. Each pid is therefore recorded with its
start time (field 22 of ``/proc/<pid>/stat``, clock ticks after boot) and a word its command line
contains (``record``); a process is the lab's only while both still match (``adopt`` when a state
file is read, ``alive`` and ``stop`` before every signal). A pid whose identity is unknown or differs
is treated as gone and never signalled. State files written before start times were recorded hold a
bare pid: it is trusted only if its command line names the program the lab started there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Popen objects of the servers this process started: kept so they are reaped (not garbage-collected
# while running, which warns) and so `alive` can poll them without racing the pid's reuse.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class Identity:
    """What makes a pid the lab's process: its start time and a word of its command line."""

    start: int  # field 22 of /proc/<pid>/stat
    program: str  # e.g. "mariadbd": the command line contains it (also after a script's exec)


# the identity of every pid this process started or adopted from a state file
_known: dict[int, Identity] = {}


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (starttime, clock ticks after boot); None when there is no such
    process. The command name (field 2) may hold spaces and parentheses: split after the last ")"."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def cmdline(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def _matches(pid: int, ident: Identity) -> bool:
    return start_time(pid) == ident.start and ident.program in (cmdline(pid) or "")


def record(pid: int | None) -> dict[str, Any] | None:
    """What a state file keeps of a pid: the pid, its start time, its program and (for people) its
    command line. None for no pid or a pid whose identity this process does not know."""
    ident = _known.get(pid) if pid else None
    if pid is None or ident is None:
        return None
    return {"pid": pid, "start": ident.start, "program": ident.program, "cmd": cmdline(pid) or ""}


def adopt(saved: Any, legacy_program: str) -> int | None:
    """The pid of a state file's record if it is still that process, else None (gone).

    ``saved`` is a ``record`` or, from state files older than start times, a bare pid: that one is
    trusted only if its command line contains ``legacy_program`` (and from then on by its start time).
    """
    if not saved:
        return None
    if isinstance(saved, dict):
        pid, ident = int(saved["pid"]), Identity(int(saved["start"]), str(saved["program"]))
    else:
        pid = int(saved)
        start = start_time(pid)
        if start is None:
            return None
        ident = Identity(start, legacy_program)
    if not _matches(pid, ident):
        return None
    _known[pid] = ident
    return pid


def start_detached(
    argv: list[str],
    log_path: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    program: str | None = None,
) -> int:
    """Start a server in its own session with stdout/stderr to a log file; return its pid, whose
    identity (start time, ``program``: by default argv[0]'s name) is known from then on. A server
    that execs something else (a launcher script) names a word the final command line keeps."""
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
    # Popen returns once the exec began; the new command line shows a moment later. Publish the
    # pid only then, so whoever checks it against its program (another process) sees it.
    deadline = time.monotonic() + 2
    while not cmdline(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    start = start_time(proc.pid)
    if start is not None:  # None: it ended already (its Popen says so to `alive`)
        _known[proc.pid] = Identity(start, program or Path(argv[0]).name)
    return proc.pid


def alive(pid: int | None) -> bool:
    """Whether ``pid`` is a live process of the lab's: a child of this process, or a pid whose
    recorded identity still matches. Anything else (an unknown or reused pid) counts as gone."""
    if not pid:
        return False
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        _children.pop(pid, None)
        _known.pop(pid, None)
        return False
    ident = _known.get(pid)
    if ident is None or not _matches(pid, ident):
        _known.pop(pid, None)
        return False
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
    """SIGTERM the process group we created for `pid`, then SIGKILL after `timeout`; a pid that is
    not (or no longer) the lab's process is left alone."""
    if not alive(pid):
        return
    assert pid is not None
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return

    # only signal the group when `pid` leads it (we started it with start_new_session); check the
    # identity again right before each signal
    def target(sig: int) -> None:
        if not alive(pid):
            raise ProcessLookupError(pid)
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
