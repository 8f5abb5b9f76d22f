"""The activity k8s.scale: quiesce a service's workloads (scale to 0) and bring them back.

Why it is careful:

* **All or nothing.** Every workload of a request is read and checked (it exists, its kind can be
  scaled, the named container is in its pod template) before the first one is patched. A bad request
  changes nothing, so a compensation is never left with half a service at 0 and the rest running.
* **Owned workloads are never scaled**: one that Helm, GitOps or an operator owns would be scaled
  back by its owner (model/ownership.py); the whole request is refused (WorkloadOwned).
* **DaemonSets are never scaled** (they have no replicas): a request naming one is refused; the plan
  loader already refuses a plan that would put one in a service's quiesce set.
* **A record on the workload.** The quiesce writes the replicas it replaced under
  ``stackhop.io/replicas-before-scale`` with a change id, in the same guarded patch. A retried quiesce
  reports those replicas (not the 0 its first attempt left), and ``ScaleInput.restore`` scales each
  workload back to them, so the workflow can register the unquiesce *before* the quiesce runs: a
  workload that was never quiesced under that change id is left as it is.
* **Scaled to 0 means no pod left**, terminating ones included (listed by the workload's selector):
  a restore that follows relies on nothing of the service still talking to the database.
"""

from __future__ import annotations

import functools
import json
import time
from typing import Any

import structlog
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from temporalio import activity

from activities.kube_client import MERGE, Kinds, api_client, call, is_transient, reraise, retry_conflicts, status_reason
from activities.kube_rollout import change_id, describe
from activities.kube_watch import check_cancelled, follow, heartbeat, sleep
from model import errors
from model.io import K8S_SCALE, ScaleInput, ScaleResult, WorkloadRef
from model.ownership import owner_of, refusal

log = structlog.get_logger(__name__)

REPLICAS_ANNOTATION = "stackhop.io/replicas-before-scale"
SCALABLE = ("Deployment", "StatefulSet")
POD_POLL = 1.0  # seconds between pod listings while waiting for the last pods to go


# --- check everything first ----------------------------------------------------------------------
def _container_names(obj: dict[str, Any]) -> set[str]:
    spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    return {c["name"] for field in ("initContainers", "containers") for c in spec.get(field) or []}


def _read_all(kinds: Kinds, inp: ScaleInput) -> dict[str, dict[str, Any]]:
    """Read and check every workload of the request; refuse the whole request on any problem."""
    ns = inp.target.namespace
    problems: list[str] = []
    found: dict[str, dict[str, Any]] = {}
    missing = False
    for ref in inp.workloads:
        what = describe(ref.kind, ref.name, ns)
        if ref.kind not in SCALABLE:
            problems.append(f"{what}: a {ref.kind} is never scaled (set quiesce: false on it in the plan)")
            continue
        try:
            obj = call(kinds.read(ref.kind), ref.name, ns)
        except ApiException as exc:
            if exc.status != 404:
                reraise(exc, what, kind=ref.kind, name=ref.name)
            problems.append(f"{what} not found")
            missing = True
            continue
        except Exception as exc:
            reraise(exc, what, kind=ref.kind, name=ref.name)
        if ref.container not in _container_names(obj):
            problems.append(f"{what} has no container {ref.container!r}")
            continue
        found[ref.name] = obj
    if problems:
        kind = errors.WORKLOAD_NOT_FOUND if missing else errors.PLAN_INVALID
        raise errors.permanent(kind, "nothing was scaled: " + "; ".join(problems), problems=problems)
    for ref in inp.workloads:
        owner = owner_of(found[ref.name].get("metadata"))
        message = refusal("objects", owner, describe(ref.kind, ref.name, ns))
        if message:
            raise errors.permanent(
                errors.WORKLOAD_OWNED,
                "nothing was scaled: " + message,
                kind=ref.kind,
                name=ref.name,
                namespace=ns,
                owner=owner.model_dump(),
            )
    return found


def _record(obj: dict[str, Any]) -> dict[str, Any]:
    ann = (obj["metadata"].get("annotations") or {}).get(REPLICAS_ANNOTATION)
    try:
        rec = json.loads(ann) if ann else {}
    except ValueError:
        return {}
    return rec if isinstance(rec, dict) else {}


def _target(inp: ScaleInput, ref: WorkloadRef, obj: dict[str, Any], cid: str) -> int | None:
    """The replicas this request asks of the workload; None: leave it as it is."""
    if inp.restore:
        rec = _record(obj)
        return int(rec["replicas"]) if cid and rec.get("change") == cid and "replicas" in rec else None
    if inp.replicas is None:
        return 0
    return inp.replicas.get(ref.name)


# --- the activity --------------------------------------------------------------------------------
@activity.defn(name=K8S_SCALE, no_thread_cancel_exception=True)
def scale(inp: ScaleInput) -> ScaleResult:
    """Scale workloads (default: to 0, to quiesce an API) and report the replicas to restore."""
    ns = inp.target.namespace
    cid = change_id(inp.change_id)
    previous: dict[str, int] = {}
    waits: dict[str, int] = {}
    with api_client(inp.target) as api:
        kinds = Kinds(api)
        objs = _read_all(kinds, inp)
        heartbeat(step="scale", checked=len(objs))  # a busy apiserver: no heartbeat gap until the wait
        for ref in inp.workloads:
            check_cancelled()
            try:
                previous[ref.name], waits[ref.name] = retry_conflicts(
                    functools.partial(_scale_one, kinds, inp, ref, cid)
                )
            except Exception as exc:
                reraise(exc, describe(ref.kind, ref.name, ns), kind=ref.kind, name=ref.name)
            heartbeat(step="scale", workload=f"{ref.kind}/{ref.name}", replicas=waits[ref.name])
        if inp.wait:
            deadline = time.monotonic() + inp.timeout_seconds
            for ref in inp.workloads:
                _wait_scaled(kinds, inp, ref, waits[ref.name], deadline)
                if waits[ref.name] == 0:
                    _wait_pods_gone(client.CoreV1Api(api), inp, ref, objs[ref.name], deadline)
    return ScaleResult(previous=previous)


def _scale_one(kinds: Kinds, inp: ScaleInput, ref: WorkloadRef, cid: str) -> tuple[int, int]:
    """Patch spec.replicas (and the before-quiesce record). Returns (replicas to restore, replicas
    to wait for)."""
    ns = inp.target.namespace
    obj = call(kinds.read(ref.kind), ref.name, ns)  # again: the guarded patch needs a fresh version
    want = _target(inp, ref, obj, cid)
    restoring = inp.restore or inp.replicas is not None
    cur = (obj.get("spec") or {}).get("replicas", 1)
    rec = _record(obj)
    same = cid and rec.get("change") == cid and "replicas" in rec
    previous = int(rec["replicas"]) if same and not restoring and cur == want else cur
    if want is None or (want == cur and not (restoring and rec)):
        return previous, cur
    patch = {
        "metadata": {
            "resourceVersion": obj["metadata"]["resourceVersion"],
            "annotations": {
                REPLICAS_ANNOTATION: None if restoring else json.dumps({"change": cid, "replicas": cur}),
            },
        },
        "spec": {"replicas": want},
    }
    call(kinds.patch(ref.kind), ref.name, ns, patch, _content_type=MERGE)
    log.info("scaled", workload=describe(ref.kind, ref.name, ns), replicas=want, previous=cur)
    return previous, want


# --- waiting -------------------------------------------------------------------------------------
def _scaled(kind: str, obj: dict[str, Any], replicas: int) -> tuple[bool, str]:
    st = obj.get("status") or {}
    gen_ok = (obj["metadata"].get("generation") or 0) <= (st.get("observedGeneration") or 0)
    have = st.get("replicas") or 0
    ready = st.get("availableReplicas" if kind == "Deployment" else "readyReplicas") or 0
    done = gen_ok and have == replicas and ready >= replicas
    return done, f"{have} replicas, {ready} ready, want {replicas}"


def _wait_scaled(kinds: Kinds, inp: ScaleInput, ref: WorkloadRef, want: int, deadline: float) -> None:
    what = describe(ref.kind, ref.name, inp.target.namespace)
    message = ""
    try:
        for ev in follow(kinds.list(ref.kind), inp.target.namespace, ref.name, deadline=deadline):
            if ev.kind == "object":
                if ev.obj is None:
                    raise errors.permanent(errors.WORKLOAD_NOT_FOUND, f"{what} not found")
                done, message = _scaled(ref.kind, ev.obj, want)
                if done:
                    return
            heartbeat(step="scale", workload=f"{ref.kind}/{ref.name}", message=message or ev.error)
        raise errors.permanent(
            errors.ROLLOUT_FAILED, f"{what} did not reach {want} replicas within {inp.timeout_seconds}s: {message}"
        )
    except Exception as exc:
        reraise(exc, what)


def selector_string(selector: dict[str, Any]) -> str:
    """A LabelSelector (matchLabels and matchExpressions) as a label_selector query string."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], ",".join(expr.get("values") or [])
        parts.append(
            {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key}.get(op, f"!{key}")
        )
    return ",".join(parts)


def _wait_pods_gone(
    core: client.CoreV1Api, inp: ScaleInput, ref: WorkloadRef, obj: dict[str, Any], deadline: float
) -> None:
    """Wait until no pod of the workload is left, terminating ones included, heartbeating."""
    ns = inp.target.namespace
    what = describe(ref.kind, ref.name, ns)
    selector = selector_string((obj.get("spec") or {}).get("selector") or {})
    if not selector:  # apps/v1 requires a selector; an empty one would match every pod
        raise errors.permanent(errors.PLAN_INVALID, f"{what} has no pod selector")
    message = ""
    while time.monotonic() < deadline:
        check_cancelled()
        try:
            pods = call(core.list_namespaced_pod, ns, label_selector=selector)["items"]
        except Exception as exc:
            if not is_transient(exc):  # 403...: retrying cannot help
                reraise(exc, what)
            message = status_reason(exc) if isinstance(exc, ApiException) else f"{type(exc).__name__}: {exc}"
            heartbeat(step="scale", workload=f"{ref.kind}/{ref.name}", message=message)
        else:
            if not pods:
                return
            terminating = sum(1 for p in pods if p["metadata"].get("deletionTimestamp"))
            message = f"{len(pods)} pods left ({terminating} terminating): " + ", ".join(
                p["metadata"]["name"] for p in pods[:5]
            )
            heartbeat(step="scale", workload=f"{ref.kind}/{ref.name}", pods=len(pods), terminating=terminating)
        sleep(min(POD_POLL, max(0.0, deadline - time.monotonic())))
    raise errors.permanent(
        errors.ROLLOUT_FAILED, f"{what}: pods still there after {inp.timeout_seconds}s: {message}", selector=selector
    )
