"""Running the helm binary for the Helm activities, and the pure functions on release values.

Why the binary and not a Python wrapper (PyPI ``pyhelm3`` is one): pyhelm3 is itself a thin asyncio
wrapper around the same binary, written for Helm 3's flags and output, and asyncio subprocesses do
not fit the sync ``def`` activities (thread pool, ``no_thread_cancel_exception``) that every other
Kubernetes activity is. What the adapter needs of the process is precise — its own process group,
SIGTERM (never SIGKILL) on cancellation, heartbeats while it runs, the stderr tail in errors, never
the values in a log line — and is a few lines over ``subprocess``; the JSON outputs we read
(``history``, ``get values``, ``get metadata``) are stable across Helm 3 and 4.

Which binary: env ``STACKHOP_HELM`` (a path), else ``helm`` on PATH. Every command gets the target's
``--kube-context``/``--kubeconfig`` and ``-n`` the release namespace.
"""

from __future__ import annotations

import copy
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from temporalio import activity
from temporalio.exceptions import CancelledError

from activities.kube_client import IN_CLUSTER
from activities.kube_watch import heartbeat, in_activity
from model import errors
from model.plan import KubeTarget

log = structlog.get_logger(__name__)

HELM_ENV = "STACKHOP_HELM"
POLL = 1.0  # seconds between two looks at a running helm (heartbeat, cancellation)
TERM_GRACE = 30.0  # seconds a SIGTERMed helm gets to record its failure and exit
TAIL = 1500  # characters of helm's stderr kept in an error message

NOT_FOUND = ("release: not found", "has no deployed releases")
BUSY = "another operation (install/upgrade/rollback) is in progress"
UNREACHABLE = (
    "kubernetes cluster unreachable",
    "connection refused",
    "i/o timeout",
    "no such host",
    "tls handshake timeout",
    "the server is currently unable to handle the request",
    "connection reset by peer",
    "http2: client connection lost",
    "unexpected eof",
)


def helm_path() -> str:
    """The helm binary: $STACKHOP_HELM, else ``helm`` on PATH; an error that says how to fix."""
    env = os.environ.get(HELM_ENV)
    if env:
        if os.access(env, os.X_OK):
            return env
        raise errors.permanent(
            errors.HELM_FAILED,
            f"{HELM_ENV}={env} is not an executable file: point it at the helm binary (Helm 4) "
            "or unset it to use helm from PATH",
        )
    found = shutil.which("helm")
    if found:
        return found
    raise errors.permanent(
        errors.HELM_FAILED,
        f"no helm binary: set {HELM_ENV} to its path in the worker's environment or put helm on the worker's "
        "PATH (the lab's build: python -m lab.k8s.build, then lab.k8s.versions.helm_bin())",
    )


PR_SET_PDEATHSIG = 1


def _term_with_parent() -> Callable[[], None] | None:
    """Linux: helm gets SIGTERM when the thread that started it dies (a killed worker), so it records
    its revision failed instead of running on as an orphan that a retry's recovery would race. Its own
    process group keeps it out of signals meant for the worker."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def child() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return child


@dataclass(frozen=True)
class Helm:
    """helm against one release: the target cluster and the release's namespace."""

    target: KubeTarget
    release: str
    namespace: str
    timeout: int = 300  # seconds a command may run (helm --timeout for the ones that wait)

    def argv(self, *args: str) -> list[str]:
        out = [helm_path(), *args, "-n", self.namespace]
        if self.target.context != IN_CLUSTER or self.target.kubeconfig:
            out += ["--kube-context", self.target.context]
        if self.target.kubeconfig:
            out += ["--kubeconfig", self.target.kubeconfig]
        return out

    def describe(self) -> str:
        return f"Helm release {self.release!r} in namespace {self.namespace!r}"

    def run(self, *args: str, beat: dict[str, Any] | None = None, limit: float | None = None) -> str:
        """Run helm, return its stdout; errors mapped onto the error tree (see ``failure``).

        The process runs in its own process group; while it runs the activity heartbeats ``beat``
        with the elapsed time, and on cancellation helm gets SIGTERM (never SIGKILL: Helm 4 then
        marks the revision failed instead of leaving it pending) and up to TERM_GRACE to exit.
        """
        argv = self.argv(*args)
        shown = " ".join(argv[1:])  # the command for messages: no values in it, only a file's name
        limit = limit if limit is not None else self.timeout * 2 + 60
        started = time.monotonic()
        heartbeat(**(beat or {}), running=f"helm {args[0]}", elapsed=0.0)  # before: a retry reads it back
        # Output to files, not pipes: a helm whose worker died must not die of SIGPIPE when it reports
        # its SIGTERM ("Release ... has been cancelled.") before it records the revision failed.
        with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out_f,
                stderr=err_f,
                start_new_session=True,
                preexec_fn=_term_with_parent(),  # one prctl syscall in the child, resolved before the fork
            )
            while True:
                try:
                    proc.wait(timeout=POLL)
                    break
                except subprocess.TimeoutExpired:
                    pass
                elapsed = time.monotonic() - started
                if in_activity() and activity.is_cancelled():
                    self._terminate(proc, shown, "cancelled")
                    raise CancelledError(f"cancelled while running helm {args[0]}: helm got SIGTERM")
                if elapsed > limit:
                    self._terminate(proc, shown, "timed out")
                    raise errors.temporary(
                        f"helm {args[0]} of {self.describe()} did not finish within {limit:.0f}s (sent SIGTERM): "
                        f"helm {shown}"
                    )
                heartbeat(**(beat or {}), running=f"helm {args[0]}", pid=proc.pid, elapsed=round(elapsed, 1))
            out_f.seek(0)
            err_f.seek(0)
            out = out_f.read().decode(errors="replace")
            err = err_f.read().decode(errors="replace")
        if proc.returncode < 0:  # killed by a signal (not ours): a retry recovers what it left pending
            raise errors.temporary(
                f"helm {args[0]} of {self.describe()} was killed by signal {-proc.returncode}: helm {shown}"
            )
        if proc.returncode != 0:
            raise failure(self, args[0], shown, err)
        return out

    def _terminate(self, proc: subprocess.Popen[bytes], shown: str, why: str) -> None:
        log.warning("stopping helm", why=why, command=shown, pid=proc.pid)
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=TERM_GRACE)
        except subprocess.TimeoutExpired:
            log.error("helm did not exit after SIGTERM; left running", command=shown, pid=proc.pid)

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json") or "null")

    # --- the reads -------------------------------------------------------------------------------
    def history(self) -> list[dict[str, Any]]:
        """helm history -o json, oldest first."""
        rows = self.json("history", self.release, "--max", "256") or []
        return sorted(rows, key=lambda r: int(r["revision"]))

    def values(self, revision: int) -> dict[str, Any]:
        """User-supplied values of a revision (helm get values: not the chart's defaults)."""
        vals = self.json("get", "values", self.release, "--revision", str(revision))
        return vals if isinstance(vals, dict) else {}

    def metadata(self, revision: int) -> dict[str, Any]:
        """helm get metadata: chart, version, labels, status of a revision."""
        meta = self.json("get", "metadata", self.release, "--revision", str(revision))
        return meta if isinstance(meta, dict) else {}


def failure(h: Helm, verb: str, shown: str, stderr: str) -> Exception:
    """A failed helm command as an error of the tree: not found, busy, unreachable, or HelmFailed."""
    tail = stderr.strip()[-TAIL:]
    low = tail.lower()
    if any(s in low for s in NOT_FOUND):
        return errors.permanent(
            errors.WORKLOAD_NOT_FOUND,
            f"{h.describe()} not found (or never deployed): check helm.release and helm.namespace in the plan "
            f"(helm list -n {h.namespace}); helm said: {tail}",
            release=h.release,
            namespace=h.namespace,
        )
    if BUSY in low:
        return errors.temporary(
            f"{h.describe()}: another helm operation is in progress: {tail}",
            type=errors.HELM_BUSY,
            release=h.release,
            namespace=h.namespace,
        )
    if any(s in low for s in UNREACHABLE):
        return errors.temporary(f"helm {verb} of {h.describe()}: Kubernetes API unreachable: {tail}")
    return errors.permanent(
        errors.HELM_FAILED,
        f"helm {verb} of {h.describe()} failed: {tail} (command: helm {shown})",
        release=h.release,
        namespace=h.namespace,
    )


# --- values (pure) -------------------------------------------------------------------------------
_ABSENT = object()


def get_path(values: dict[str, Any], path: str) -> Any:
    """The value at a dotted path, or ``ABSENT``."""
    node: Any = values
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _ABSENT
        node = node[part]
    return node


def is_absent(value: Any) -> bool:
    return value is _ABSENT


def apply_set(values: dict[str, Any], set_values: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``values`` with each dotted path set (creating nested maps; a non-map in the way
    is replaced by a map); None deletes the path and prunes the maps it leaves empty."""
    out = copy.deepcopy(values)
    for path, value in set_values.items():
        parts = path.split(".")
        if value is None:
            _delete(out, parts)
            continue
        node = out
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = copy.deepcopy(value)
    return out


def _delete(node: dict[str, Any], parts: list[str]) -> None:
    head, rest = parts[0], parts[1:]
    if head not in node:
        return
    if not rest:
        del node[head]
        return
    child = node[head]
    if isinstance(child, dict):
        _delete(child, rest)
        if not child:
            del node[head]


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted path -> leaf (lists and empty maps are leaves)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def _show(value: Any) -> str:
    return "(absent)" if value is _ABSENT else value if isinstance(value, str) else json.dumps(value)


def values_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The changed paths only, one a line: "images.tags.api: A -> B" ("(absent)" for none)."""
    a, b = flatten(old), flatten(new)
    lines = []
    for path in sorted(set(a) | set(b)):
        x, y = a.get(path, _ABSENT), b.get(path, _ABSENT)
        if x is _ABSENT or y is _ABSENT or x != y or type(x) is not type(y):
            lines.append(f"{path}: {_show(x)} -> {_show(y)}")
    return lines
