"""Jobs: ``run_job``, which the database and migration activities use to run their db-sync, backup
and restore Jobs (it is not an activity of its own: no workflow schedules a Job directly, so its
input and result models live here, not in model/io.py).

Idempotency: a Job is created under the caller's deterministic name with a hash of its spec in a
label.  A retry or a resumed workflow that finds the Job already there simply waits for it (same
hash) instead of creating a second one; a *different* Job under that name is a plan error.
(So templates should not set ``ttlSecondsAfterFinished`` shorter than a workflow may take to
resume: a Job garbage-collected before the resume would be created again.)
With kwok there is no kubelet and hence no container log; the logs tail then falls back to the
pods' termination state (reason, exit code, message), which is what an operator needs first anyway.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from typing import Any

import structlog
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel

from activities.kube_client import api_client, call, reraise
from activities.kube_watch import check_cancelled, follow, heartbeat
from model import errors
from model.plan import KubeTarget

log = structlog.get_logger(__name__)

SPEC_HASH_LABEL = "stackhop.io/spec-hash"
LOG_TAIL_LINES = 50
LOG_TIMEOUT = (3, 5)


# --- run_job -------------------------------------------------------------------------------------
class RunJobInput(BaseModel):
    target: KubeTarget
    name: str  # deterministic: a retry or a resumed workflow finds the same Job
    manifest: dict[str, Any]  # a batch/v1 Job
    timeout_seconds: int = 1800


class JobResult(BaseModel):
    name: str
    succeeded: bool
    logs_tail: str = ""
    seconds: float = 0.0


def _job_body(inp: RunJobInput) -> dict[str, Any]:
    body = copy.deepcopy(inp.manifest)
    body.setdefault("apiVersion", "batch/v1")
    body.setdefault("kind", "Job")
    meta = body.setdefault("metadata", {})
    meta.pop("generateName", None)
    meta["name"] = inp.name
    meta["namespace"] = inp.target.namespace
    digest = hashlib.sha256(json.dumps(body.get("spec", {}), sort_keys=True).encode()).hexdigest()[:16]
    meta.setdefault("labels", {})[SPEC_HASH_LABEL] = digest
    return body


def _job_state(job: dict[str, Any]) -> tuple[str | None, str]:
    """("Complete"|"Failed"|None, message) from the Job's terminal conditions."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return cond["type"], f"{cond.get('reason', '')}: {cond.get('message', '')}".strip(": ")
    return None, ""


def logs_tail(core: client.CoreV1Api, namespace: str, job: str, lines: int = LOG_TAIL_LINES) -> str:
    """Tail of the Job's pod logs, newest pod last; termination states when logs are absent."""
    try:
        pods = call(core.list_namespaced_pod, namespace, label_selector=f"job-name={job}")["items"]
    except Exception as exc:
        return f"(pods of job {job!r} not readable: {exc})"
    pods.sort(key=lambda p: p["metadata"].get("creationTimestamp", ""))
    parts: list[str] = []
    for pod in pods[-3:]:
        pname = pod["metadata"]["name"]
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated")
            if term:
                parts.append(
                    f"[{pname}/{cs['name']}] terminated: exit code {term.get('exitCode')}"
                    f" reason={term.get('reason', '')} {term.get('message', '')}".rstrip()
                )
            try:
                # with _preload_content=False the client returns the raw urllib3 response, not the
                # str its annotations promise
                resp: Any = core.read_namespaced_pod_log(
                    pname,
                    namespace,
                    container=cs["name"],
                    tail_lines=lines,
                    _preload_content=False,
                    _request_timeout=LOG_TIMEOUT,
                )
                try:
                    text = resp.data.decode(errors="replace") if resp.status == 200 else ""
                finally:
                    resp.release_conn()
            except Exception:
                text = ""
            parts.append(text.rstrip() if text.strip() else f"[{pname}/{cs['name']}] (no logs available)")
    if not parts:
        return f"(job {job!r} has no pods left to read)"
    return "\n".join("\n".join(parts).splitlines()[-lines:])


def run_job(inp: RunJobInput) -> JobResult:
    """Create the Job once (deterministic name), wait for success or failure, return its logs."""
    ns = inp.target.namespace
    what = f"Job {inp.name!r} in namespace {ns!r}"
    body = _job_body(inp)
    want_hash = body["metadata"]["labels"][SPEC_HASH_LABEL]
    t0 = time.monotonic()
    with api_client(inp.target) as api:
        batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
        try:
            try:
                call(batch.create_namespaced_job, ns, body)
                log.info("job created", job=inp.name, namespace=ns)
                created = True
            except ApiException as exc:
                if exc.status != 409:
                    raise
                existing = call(batch.read_namespaced_job, inp.name, ns)
                have = ((existing.get("metadata") or {}).get("labels") or {}).get(SPEC_HASH_LABEL)
                if have != want_hash:
                    raise errors.permanent(
                        errors.PLAN_INVALID,
                        f"{what} already exists with a different spec (hash {have} != {want_hash});"
                        " delete it or use another name",
                        job=inp.name,
                        namespace=ns,
                    ) from exc
                created = False
                log.info("job already exists, waiting for it", job=inp.name, namespace=ns)
            deadline = t0 + inp.timeout_seconds
            state, message, active = None, "", 0
            for ev in follow(batch.list_namespaced_job, ns, inp.name, deadline=deadline):
                if ev.kind == "object":
                    if ev.obj is None:
                        raise errors.temporary(f"{what} disappeared while waiting", job=inp.name)
                    state, message = _job_state(ev.obj)
                    active = (ev.obj.get("status") or {}).get("active") or 0
                    if state:
                        break
                heartbeat(
                    step="run_job",
                    job=inp.name,
                    created=created,
                    active=active,
                    message=message or ev.error,
                    elapsed=round(time.monotonic() - t0, 1),
                )
            check_cancelled()
            seconds = round(time.monotonic() - t0, 2)
            tail = logs_tail(core, ns, inp.name)
        except Exception as exc:
            reraise(exc, what, job=inp.name)
    if state == "Complete":
        return JobResult(name=inp.name, succeeded=True, logs_tail=tail, seconds=seconds)
    if state == "Failed":
        raise errors.permanent(
            errors.JOB_FAILED, f"{what} failed: {message}", job=inp.name, namespace=ns, logs_tail=tail
        )
    raise errors.permanent(
        errors.JOB_FAILED,
        f"{what} did not finish within {inp.timeout_seconds}s",
        job=inp.name,
        namespace=ns,
        logs_tail=tail,
    )
