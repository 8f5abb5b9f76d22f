"""Shared plumbing of the database, migration and validation activities: run a shell script either
on the worker (`local` runner) or in a Kubernetes Job (`job` runner), and read its result markers.

One script serves both runners, so the lab (which runs `local` for real) exercises exactly the
commands a production Job runs.  Scripts report results as marker lines, `@@stackhop key=value ...`;
the Job runner only sees the tail of the pod log, so every result fits in a few lines at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from model import errors

log = structlog.get_logger(__name__)

MARKER = "@@stackhop"
NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
HEARTBEAT_SECONDS = 2.0
HEARTBEAT_SHARE = 4  # ... and at most a quarter of the activity's heartbeat timeout
TERMINATION_LOG = "/dev/termination-log"


@dataclass
class Ran:
    """What a script run returned: exit code, combined output and its markers."""

    exit_code: int
    output: str
    markers: dict[str, str]
    seconds: float

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


def heartbeat(**details: Any) -> None:
    """Heartbeat when running as an activity; a no-op when called from the lab or the CLI."""
    with contextlib.suppress(RuntimeError):
        activity.heartbeat(details)


def heartbeat_interval() -> float:
    """Seconds between heartbeats: HEARTBEAT_SECONDS, less under a short heartbeat timeout so a
    busy machine still gets a heartbeat through before the server declares the worker dead."""
    timeout = activity.info().heartbeat_timeout if activity.in_activity() else None
    if timeout:
        return max(0.25, min(HEARTBEAT_SECONDS, timeout.total_seconds() / HEARTBEAT_SHARE))
    return HEARTBEAT_SECONDS


def is_cancelled() -> bool:
    try:
        return activity.is_cancelled()
    except RuntimeError:
        return False


def sql_name(value: str, what: str = "database name", kind: str = errors.PLAN_INVALID) -> str:
    """Names go into SQL and shell text unquoted, so only plain identifiers are accepted.

    The plan model already refuses a bad ``database.name`` at `plan validate`; this is the defensive
    second check, a permanent error (retrying cannot fix a name)."""
    if not NAME_RE.match(value):
        raise errors.permanent(kind, f"{what} {value!r} must match {NAME_RE.pattern}")
    return value


def q(value: str) -> str:
    return shlex.quote(value)


def parse_markers(output: str) -> dict[str, str]:
    """`@@stackhop a=1 b=2` lines -> {"a": "1", "b": "2"}; later lines win."""
    found: dict[str, str] = {}
    for line in output.splitlines():
        line = line.strip()
        if not line.startswith(MARKER + " "):
            continue
        for part in line[len(MARKER) + 1 :].split():
            key, sep, value = part.partition("=")
            if sep:
                found[key] = value
    return found


def parse_checksums(value: str) -> dict[str, str]:
    """ "table:checksum,table:checksum" -> dict (CHECKSUM TABLE gives NULL for unreadable tables)."""
    result: dict[str, str] = {}
    for item in filter(None, value.split(",")):
        table, _, checksum = item.rpartition(":")
        result[table] = checksum
    return result


def run_local(script: str, *, step: str, timeout: float | None = None, env: dict[str, str] | None = None) -> Ran:
    """Run a bash script on the worker, heartbeating while it runs; kill it when cancelled."""
    started = time.monotonic()
    proc = subprocess.Popen(
        ["bash", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        while True:
            try:
                output, _ = proc.communicate(timeout=heartbeat_interval())
                break
            except subprocess.TimeoutExpired:
                elapsed = time.monotonic() - started
                heartbeat(step=step, elapsed=round(elapsed, 1))
                if is_cancelled():
                    raise CancelledError(f"{step} cancelled after {elapsed:.0f}s; its processes were killed") from None
                if timeout is not None and elapsed > timeout:
                    raise TimeoutError(f"{step} did not finish within {timeout:.0f}s") from None
    except BaseException:
        _kill_group(proc)
        raise
    seconds = time.monotonic() - started
    log.debug("script_done", step=step, exit_code=proc.returncode, seconds=round(seconds, 2))
    return Ran(proc.returncode, output, parse_markers(output), seconds)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """Kill the script and everything it started (its own session), then reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()


def job_name(*parts: str) -> str:
    """The Job step of (service, operation, key): readable and DNS-safe, at most 40 characters (the
    Job's name adds the workflow run and the generation: kube_jobs.job_name)."""
    digest = hashlib.sha256("/".join(parts).encode()).hexdigest()[:10]
    readable = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts[:-1]).lower()).strip("-")[:20].strip("-")
    return f"stackhop-{readable}-{digest}" if readable else f"stackhop-{digest}"


# The container runs the script and writes its markers and output tail to the termination log, so
# the result survives the pod's log (a node gone, logs rotated): logs_tail falls back to it.
JOB_WRAPPER = f"""out=$(mktemp 2>/dev/null || echo /tmp/stackhop-job.out)
bash -c "$1" 2>&1 | tee "$out"
rc=${{PIPESTATUS[0]}}
{{ grep '^{MARKER} ' "$out"; tail -c 1500 "$out"; }} 2>/dev/null | head -c 4000 > {TERMINATION_LOG} 2>/dev/null || true
exit "$rc"
"""


def job_manifest(
    *,
    namespace: str,
    image: str,
    script: str,
    labels: dict[str, str],
    volumes: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
    timeout_seconds: int,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A batch/v1 Job that runs `script` once (no retries: Temporal owns retrying), kept a day
    for its logs, killed at the step deadline. Its name is set by kube_jobs.run_job."""
    all_labels = {"app.kubernetes.io/managed-by": "stackhop", **labels}
    container: dict[str, Any] = {
        "name": "run",
        "image": image,
        "command": ["bash", "-c", JOB_WRAPPER, "stackhop-job", script],
        "volumeMounts": mounts,
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in sorted(env.items())]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"namespace": namespace, "labels": all_labels},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": int(timeout_seconds),
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": all_labels},
                "spec": {"restartPolicy": "Never", "containers": [container], "volumes": volumes},
            },
        },
    }


def run_job(target: Any, step: str, manifest: dict[str, Any], timeout_seconds: int, what: str) -> Ran:
    """Run the Job of `step` (for this workflow run) through kube_jobs.run_job and read the markers
    from its log tail. A failed Job raises the k8s activity's JobFailed error; its log tail is in
    the details."""
    from activities.kube_jobs import RunJobInput
    from activities.kube_jobs import run_job as k8s_run_job  # the Kubernetes side owns Job running

    started = time.monotonic()
    inp = RunJobInput(target=target, step=step, manifest=manifest, timeout_seconds=timeout_seconds)
    try:
        result = k8s_run_job(inp)
    except ApplicationError as exc:
        details = exc.details[0] if exc.details and isinstance(exc.details[0], dict) else {}
        if exc.type != errors.JOB_FAILED or details.get("timed_out", True):
            raise
        # the script failed: its exit code and output are the caller's to interpret (lock waits,
        # an unreachable database and a missing file are told apart from the output, as for `local`)
        tail = str(details.get("logs_tail", ""))
        code = re.search(r"terminated: exit code (\d+)", tail)
        return Ran(int(code.group(1)) if code else 1, tail, parse_markers(tail), time.monotonic() - started)
    log.info("job_done", step=what, job=result.name, reattached=result.reattached, seconds=round(result.seconds, 2))
    return Ran(0, result.logs_tail, parse_markers(result.logs_tail), time.monotonic() - started)
