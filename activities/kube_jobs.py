"""Jobs: ``run_job``, which the database and migration activities use to run their db-sync, backup
and restore Jobs (it is not an activity of its own: no workflow schedules a Job directly, so its
input and result models live here, not in model/io.py).

One Job per workflow run, step and generation (``<step>-<run hash>-g<n>``, the full run id, step and
generation in labels), because a Job's result belongs to the run that asked for it:
* a retry of the step in the same run re-attaches to its Job while that runs or once it succeeded
  (a worker killed mid-restore never causes a second restore);
* a new generation is created only after the previous one failed *and* its pods are gone (none
  running, none terminating), and not while a Job of that step from another run is still busy;
* finished Jobs of another run are never reused (a re-run of a cloud runs its steps again);
* cancelling deletes the Job and its pods and waits until the pods are gone.
Logs: the pods' logs on a real cluster; the containers' termination messages when there are none
(kwok has no kubelet; the lab's Job executor writes the output's tail there).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import time
from typing import Any

import structlog
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import CancelledError

from activities.kube_client import api_client, call, reraise
from activities.kube_watch import check_cancelled, follow, heartbeat, in_activity
from model import errors
from model.plan import KubeTarget

log = structlog.get_logger(__name__)

SPEC_HASH_LABEL = "stackhop.io/spec-hash"
STEP_LABEL = "stackhop.io/step"
RUN_LABEL = "stackhop.io/run"
GENERATION_LABEL = "stackhop.io/generation"
RUN_ANNOTATION = "stackhop.io/run-id"
LOG_TAIL_LINES = 50
LOG_TIMEOUT = (3, 5)
STEP_RE = r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$"  # leaves room for "-<run hash>-g<n>" in 63
LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
CLEANUP_SECONDS = 120  # bound on waiting for a cancelled Job's pods to go
POLL_SECONDS = 1.0


# --- run_job -------------------------------------------------------------------------------------
class RunJobInput(BaseModel):
    target: KubeTarget
    step: str = Field(pattern=STEP_RE)  # what the Job does, e.g. "keystone-db-restore-<hash>"
    manifest: dict[str, Any]  # a batch/v1 Job (its name is replaced)
    timeout_seconds: int = 1800
    run_id: str = ""  # the workflow run; empty: activity.info().workflow_run_id


class JobResult(BaseModel):
    name: str
    generation: int = 1
    reattached: bool = False  # an earlier attempt had created the Job: this one only waited
    succeeded: bool
    logs_tail: str = ""
    seconds: float = 0.0


def run_of(inp: RunJobInput) -> str:
    """The workflow run the Job belongs to (an activity's own run unless the caller names one)."""
    if inp.run_id:
        return inp.run_id
    run = activity.info().workflow_run_id if in_activity() else None
    if run:
        return run
    raise errors.permanent(errors.PLAN_INVALID, f"Job step {inp.step!r}: no workflow run id (not in an activity)")


def run_label(run_id: str) -> str:
    """The run id as a label value (a Temporal run id is a UUID: itself; anything else: a hash)."""
    return run_id if LABEL_VALUE.match(run_id) else hashlib.sha256(run_id.encode()).hexdigest()[:32]


def job_name(step: str, run_id: str, generation: int) -> str:
    """``<step>-<run hash>-g<n>``: DNS-safe, at most 63 characters."""
    return f"{step}-{hashlib.sha256(run_id.encode()).hexdigest()[:8]}-g{generation}"


def _job_body(inp: RunJobInput, run_id: str, generation: int) -> dict[str, Any]:
    body = copy.deepcopy(inp.manifest)
    body.setdefault("apiVersion", "batch/v1")
    body.setdefault("kind", "Job")
    meta = body.setdefault("metadata", {})
    meta.pop("generateName", None)
    meta["name"] = job_name(inp.step, run_id, generation)
    meta["namespace"] = inp.target.namespace
    digest = hashlib.sha256(json.dumps(body.get("spec", {}), sort_keys=True).encode()).hexdigest()[:16]
    ids = {STEP_LABEL: inp.step, RUN_LABEL: run_label(run_id), GENERATION_LABEL: str(generation)}
    meta.setdefault("labels", {}).update({SPEC_HASH_LABEL: digest, **ids})
    meta.setdefault("annotations", {})[RUN_ANNOTATION] = run_id
    pod_meta = body.setdefault("spec", {}).setdefault("template", {}).setdefault("metadata", {})
    pod_meta.setdefault("labels", {}).update(ids)
    return body


def _job_state(job: dict[str, Any]) -> tuple[str | None, str]:
    """("Complete"|"Failed"|None, message) from the Job's terminal conditions."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return cond["type"], f"{cond.get('reason', '')}: {cond.get('message', '')}".strip(": ")
    return None, ""


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def _generation(job: dict[str, Any]) -> int:
    return int(_labels(job).get(GENERATION_LABEL, "0"))


def _pods(core: client.CoreV1Api, namespace: str, job: str) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = call(core.list_namespaced_pod, namespace, label_selector=f"job-name={job}")["items"]
    return pods


def _alive(pod: dict[str, Any]) -> bool:
    """Running, about to run, or terminating: its container may still act on the database."""
    phase = (pod.get("status") or {}).get("phase")
    return bool(pod["metadata"].get("deletionTimestamp")) or phase not in ("Succeeded", "Failed")


def _busy(core: client.CoreV1Api, namespace: str, job: dict[str, Any]) -> bool:
    state, _ = _job_state(job)
    return state is None or any(_alive(p) for p in _pods(core, namespace, job["metadata"]["name"]))


def _terminated_message(pod: dict[str, Any]) -> list[str]:
    parts = []
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated")
        if term:
            header = f"[{pod['metadata']['name']}/{cs['name']}] terminated: exit code {term.get('exitCode')}"
            parts.append(f"{header} reason={term.get('reason', '')}")
            parts.extend((term.get("message") or "").rstrip().splitlines())
    return parts


def _pod_log(core: client.CoreV1Api, namespace: str, pod: str, container: str, lines: int) -> str:
    try:
        # with _preload_content=False the client returns the raw urllib3 response, not the
        # str its annotations promise
        resp: Any = core.read_namespaced_pod_log(
            pod,
            namespace,
            container=container,
            tail_lines=lines,
            _preload_content=False,
            _request_timeout=LOG_TIMEOUT,
        )
        try:
            return str(resp.data.decode(errors="replace")) if resp.status == 200 else ""
        finally:
            resp.release_conn()
    except Exception:
        return ""


def logs_tail(core: client.CoreV1Api, namespace: str, job: str, lines: int = LOG_TAIL_LINES) -> str:
    """The newest pods' logs (their last ``lines``); where a container has no log (kwok, a garbage-
    collected node), its termination message: the tail a container wrote to /dev/termination-log,
    or the log tail the kubelet put there on error (terminationMessagePolicy FallbackToLogsOnError).
    The `@@stackhop` markers are read from this text, so a message is never cut."""
    try:
        pods = _pods(core, namespace, job)
    except Exception as exc:
        return f"(pods of job {job!r} not readable: {exc})"
    pods.sort(key=lambda p: p["metadata"].get("creationTimestamp", ""))
    parts: list[str] = []
    for pod in pods[-3:]:
        pname = pod["metadata"]["name"]
        message = _terminated_message(pod)
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            text = _pod_log(core, namespace, pname, cs["name"], lines)
            if text.strip():
                parts.extend(message[:1])
                parts.extend(text.rstrip().splitlines()[-lines:])
            else:
                parts.extend(message or [f"[{pname}/{cs['name']}] (no logs available)"])
    if not parts:
        return f"(job {job!r} has no pods left to read)"
    return "\n".join(parts)


def run_job(inp: RunJobInput) -> JobResult:
    """Run the step's Job for this workflow run (creating a generation only when none can be
    re-attached to), wait for success or failure, return its logs."""
    ns, run_id = inp.target.namespace, run_of(inp)
    t0 = time.monotonic()
    deadline = t0 + inp.timeout_seconds
    with api_client(inp.target) as api:
        batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
        name, what = inp.step, f"Job of step {inp.step!r} in namespace {ns!r}"
        try:
            name, generation, reattached = _attach_or_create(batch, core, inp, run_id, deadline)
            what = f"Job {name!r} in namespace {ns!r}"
            try:
                state, message = _wait(batch, ns, name, reattached, deadline, t0)
            except CancelledError:
                _delete(batch, core, ns, name)
                raise
            seconds = round(time.monotonic() - t0, 2)
            tail = logs_tail(core, ns, name)
        except Exception as exc:
            reraise(exc, what, job=name)
    details = {"job": name, "namespace": ns, "generation": generation, "logs_tail": tail, "timed_out": not state}
    if state == "Complete":
        return JobResult(
            name=name, generation=generation, reattached=reattached, succeeded=True, logs_tail=tail, seconds=seconds
        )
    if state == "Failed":
        raise errors.permanent(errors.JOB_FAILED, f"{what} failed: {message}", **details)
    raise errors.permanent(errors.JOB_FAILED, f"{what} did not finish within {inp.timeout_seconds}s", **details)


def _attach_or_create(
    batch: client.BatchV1Api, core: client.CoreV1Api, inp: RunJobInput, run_id: str, deadline: float
) -> tuple[str, int, bool]:
    """(name, generation, re-attached) of the Job to wait for: this run's newest one unless it
    failed; a new generation once no pod of a failed one is left and no other run's Job is busy."""
    ns, mine = inp.target.namespace, run_label(run_id)
    while True:
        jobs = call(batch.list_namespaced_job, ns, label_selector=f"{STEP_LABEL}={inp.step}")["items"]
        ours = sorted((j for j in jobs if _labels(j).get(RUN_LABEL) == mine), key=_generation)
        waiting_for = ""
        if ours:
            last = ours[-1]
            name = last["metadata"]["name"]
            if _job_state(last)[0] != "Failed":
                _check_spec(last, _job_body(inp, run_id, _generation(last)), ns)
                log.info("job re-attached", job=name, namespace=ns)
                return name, _generation(last), True
            if any(_alive(p) for p in _pods(core, ns, name)):
                waiting_for = f"the pods of failed Job {name!r} to be gone"
        others = [j for j in jobs if _labels(j).get(RUN_LABEL) != mine and _busy(core, ns, j)]
        if others and not waiting_for:
            other = others[0]["metadata"]
            run = (other.get("annotations") or {}).get(RUN_ANNOTATION, "?")
            raise errors.temporary(
                f"Job {other['name']!r} of another workflow run ({run}) still runs step {inp.step!r}:"
                " waiting for it to end before starting this run's",
                job=other["name"],
            )
        if not waiting_for:
            generation = _generation(ours[-1]) + 1 if ours else 1
            body = _job_body(inp, run_id, generation)
            try:
                call(batch.create_namespaced_job, ns, body)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                continue  # another attempt created it just now: attach to it
            log.info("job created", job=body["metadata"]["name"], namespace=ns, generation=generation)
            return body["metadata"]["name"], generation, False
        if time.monotonic() > deadline:
            raise errors.temporary(f"timed out waiting for {waiting_for}")
        heartbeat(step="run_job", waiting_for=waiting_for)
        _pause()


def _check_spec(existing: dict[str, Any], body: dict[str, Any], ns: str) -> None:
    have, want = _labels(existing).get(SPEC_HASH_LABEL), body["metadata"]["labels"][SPEC_HASH_LABEL]
    if have != want:
        name = existing["metadata"]["name"]
        raise errors.permanent(
            errors.PLAN_INVALID,
            f"Job {name!r} in namespace {ns!r} already runs this step with a different spec"
            f" (hash {have} != {want}); delete it or let it finish",
            job=name,
            namespace=ns,
        )


def _pause() -> None:
    if in_activity():
        activity.wait_for_cancelled_sync(POLL_SECONDS)
        check_cancelled()
    else:
        time.sleep(POLL_SECONDS)


def _wait(
    batch: client.BatchV1Api, ns: str, name: str, reattached: bool, deadline: float, t0: float
) -> tuple[str | None, str]:
    state, message, active = None, "", 0
    for ev in follow(batch.list_namespaced_job, ns, name, deadline=deadline):
        if ev.kind == "object":
            if ev.obj is None:
                raise errors.temporary(f"Job {name!r} disappeared while waiting", job=name)
            state, message = _job_state(ev.obj)
            active = (ev.obj.get("status") or {}).get("active") or 0
            if state:
                break
        heartbeat(
            step="run_job",
            job=name,
            reattached=reattached,
            active=active,
            message=message or ev.error,
            elapsed=round(time.monotonic() - t0, 1),
        )
    check_cancelled()
    return state, message


def _delete(batch: client.BatchV1Api, core: client.CoreV1Api, ns: str, name: str) -> None:
    """Delete a cancelled Job and its pods, and wait (bounded) until no pod of it is left."""
    log.info("job cancelled: deleting it and its pods", job=name, namespace=ns)
    try:
        call(batch.delete_namespaced_job, name, ns, propagation_policy="Foreground")
    except ApiException as exc:
        if exc.status != 404:
            raise
    call(core.delete_collection_namespaced_pod, ns, label_selector=f"job-name={name}")
    until = time.monotonic() + CLEANUP_SECONDS
    while (pods := _pods(core, ns, name)) and time.monotonic() < until:
        heartbeat(step="run_job", job=name, cancelled=True, pods_left=len(pods))
        time.sleep(POLL_SECONDS / 2)
    if pods:
        raise errors.temporary(f"cancelled Job {name!r}: {len(pods)} pods still there after {CLEANUP_SECONDS}s")
