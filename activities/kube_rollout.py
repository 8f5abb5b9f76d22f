"""Activities that change and watch workload images: k8s.read_images, k8s.set_images,
k8s.wait_rollout, k8s.undo_images; and k8s.restart (a pod-template annotation, as `kubectl rollout
restart`).

Why an annotation on the workload: ``set_images`` must report the images it replaced so undo can
restore them exactly, and a retried attempt (the first one patched, then the worker died before
reporting) would otherwise read the *new* image as "previous".  The patch therefore records the
replaced images under ``stackhop.io/previous-images`` together with a change id (default: the
calling workflow's id and run id), in the same write, guarded by the object's resourceVersion.

Why owned workloads are refused: an object that Helm, Argo CD, Flux or an operator owns is put back
by its owner, and a direct patch makes the owner's record lie (model/ownership.py). ``set_images`` and
``undo_images`` read every workload of the call first and refuse (WorkloadOwned) before patching any.
"""

from __future__ import annotations

import functools
import json
import time
from collections import defaultdict
from typing import Any

import structlog
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from temporalio import activity

from activities.kube_client import SMP, Kinds, api_client, call, reraise, retry_conflicts
from activities.kube_status import RolloutError, rollout_status
from activities.kube_watch import check_cancelled, follow, heartbeat, in_activity
from model import errors
from model.io import (
    K8S_READ_IMAGES,
    K8S_RESTART,
    K8S_SET_IMAGES,
    K8S_UNDO_IMAGES,
    K8S_WAIT_ROLLOUT,
    ReadImagesInput,
    ReadImagesResult,
    RestartInput,
    RestartResult,
    RolloutResult,
    RolloutStatus,
    SetImagesInput,
    SetImagesResult,
    UndoImagesInput,
    WaitRolloutInput,
    WorkloadImage,
    WorkloadRef,
)
from model.ownership import owner_of, refusal
from model.plan import KubeTarget

log = structlog.get_logger(__name__)

PREVIOUS_ANNOTATION = "stackhop.io/previous-images"


def describe(kind: str, name: str, namespace: str) -> str:
    return f"{kind} {name!r} in namespace {namespace!r}"


def _containers(obj: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """container name -> (list field, image) over containers and initContainers."""
    spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    out: dict[str, tuple[str, str]] = {}
    for field in ("initContainers", "containers"):
        for c in spec.get(field) or []:
            out[c["name"]] = (field, c.get("image", ""))
    return out


def change_id(explicit: str = "") -> str:
    if explicit:
        return explicit
    if in_activity():
        info = activity.info()
        return f"{info.workflow_id}/{info.workflow_run_id}"
    return ""


# --- read ----------------------------------------------------------------------------------------
def read_workload(kinds: Kinds, ref: WorkloadRef, namespace: str) -> dict[str, Any] | None:
    try:
        return call(kinds.read(ref.kind), ref.name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def read_images_with(api: client.ApiClient, target: KubeTarget, refs: list[WorkloadRef]) -> list[WorkloadImage]:
    """Current image of each (workload, container); found=False when either is missing."""
    kinds = Kinds(api)
    out = []
    for ref in refs:
        obj = read_workload(kinds, ref, target.namespace)
        image = _containers(obj).get(ref.container, (None, None))[1] if obj else None
        owner = owner_of(obj.get("metadata")) if obj else None
        out.append(WorkloadImage(**ref.model_dump(), image=image, found=image is not None, owner=owner))
    return out


def refuse_owned(kinds: Kinds, target: KubeTarget, workloads: list[tuple[str, str]]) -> None:
    """Raise WorkloadOwned if Helm, GitOps or an operator owns one of ``workloads`` (kind, name):
    called before the first patch, so a refused call changes nothing. Missing ones are left to the
    patch, which reports them as before."""
    for kind, name in workloads:
        what = describe(kind, name, target.namespace)
        try:
            obj = call(kinds.read(kind), name, target.namespace)
        except ApiException as exc:
            if exc.status == 404:
                continue
            reraise(exc, what, kind=kind, name=name)
        except Exception as exc:
            reraise(exc, what, kind=kind, name=name)
        owner = owner_of(obj.get("metadata"))
        message = refusal("objects", owner, what)
        if message:
            raise errors.permanent(
                errors.WORKLOAD_OWNED,
                message,
                kind=kind,
                name=name,
                namespace=target.namespace,
                owner=owner.model_dump(),
            )


@activity.defn(name=K8S_READ_IMAGES)
def read_images(inp: ReadImagesInput) -> ReadImagesResult:
    """Current images, for plan preview and for undo."""
    with api_client(inp.target) as api:
        try:
            return ReadImagesResult(images=read_images_with(api, inp.target, inp.workloads))
        except Exception as exc:
            reraise(exc, f"reading workloads in namespace {inp.target.namespace!r}")


# --- set -----------------------------------------------------------------------------------------
def _group(images: list[WorkloadImage]) -> dict[tuple[str, str], dict[str, str | None]]:
    grouped: dict[tuple[str, str], dict[str, str | None]] = defaultdict(dict)
    for img in images:
        grouped[(img.kind, img.name)][img.container] = img.image
    return grouped


def patch_images(*args: Any, **kwargs: Any) -> dict[str, str]:
    return retry_conflicts(lambda: _patch_images(*args, **kwargs))


def _patch_images(
    kinds: Kinds,
    target: KubeTarget,
    kind: str,
    name: str,
    wanted: dict[str, str | None],
    *,
    change: str,
    record: bool,
) -> dict[str, str]:
    """Set container images of one workload (one strategic-merge patch, sidecars untouched).

    Returns container -> image it had before this change (see the module docstring for retries).
    """
    what = describe(kind, name, target.namespace)
    obj = call(kinds.read(kind), name, target.namespace)
    current = _containers(obj)
    missing = [c for c in wanted if c not in current]
    if missing:
        raise errors.permanent(
            errors.WORKLOAD_NOT_FOUND,
            f"{what} has no container {', '.join(map(repr, missing))} (containers: {', '.join(sorted(current))})",
            kind=kind,
            name=name,
            namespace=target.namespace,
        )
    ann = (obj.get("metadata") or {}).get("annotations") or {}
    try:
        recorded = json.loads(ann.get(PREVIOUS_ANNOTATION) or "{}")
    except ValueError:
        recorded = {}
    previous: dict[str, str] = {}
    changes: dict[str, list[dict[str, str]]] = defaultdict(list)
    for cname, image in wanted.items():
        field, cur = current[cname]
        if image is None or cur == image:
            same_change = change and recorded.get("change") == change
            previous[cname] = (recorded.get("images") or {}).get(cname, cur) if same_change else cur
            continue
        previous[cname] = cur
        changes[field].append({"name": cname, "image": image})
    if not changes:
        return previous
    body: dict[str, Any] = {
        "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
        "spec": {"template": {"spec": dict(changes)}},
    }
    if record:
        body["metadata"]["annotations"] = {
            PREVIOUS_ANNOTATION: json.dumps({"change": change, "images": previous}, sort_keys=True)
        }
    else:
        body["metadata"]["annotations"] = {PREVIOUS_ANNOTATION: None}
    call(kinds.patch(kind), name, target.namespace, body, _content_type=SMP)
    log.info("images set", workload=what, images={k: v for k, v in wanted.items()}, previous=previous)
    return previous


@activity.defn(name=K8S_SET_IMAGES, no_thread_cancel_exception=True)
def set_images(inp: SetImagesInput) -> SetImagesResult:
    """Point containers at their target images; returns the images to restore on undo."""
    cid = change_id(getattr(inp, "change_id", ""))
    out: list[WorkloadImage] = []
    with api_client(inp.target) as api:
        kinds = Kinds(api)
        grouped = _group(inp.images)
        refuse_owned(kinds, inp.target, list(grouped))
        for (kind, name), wanted in grouped.items():
            check_cancelled()
            try:
                prev = patch_images(kinds, inp.target, kind, name, wanted, change=cid, record=True)
            except Exception as exc:
                reraise(exc, describe(kind, name, inp.target.namespace), kind=kind, name=name)
            heartbeat(step="set_images", workload=f"{kind}/{name}", done=len(out) + 1)
            out += [WorkloadImage(kind=kind, name=name, container=c, image=img) for c, img in prev.items()]
    return SetImagesResult(previous=out)


# --- wait ----------------------------------------------------------------------------------------
def _deadline_hint(obj: dict[str, Any]) -> str:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("message"):
            return f" ({cond['message']})"
    return ""


def wait_one(
    kinds: Kinds,
    target: KubeTarget,
    ref: WorkloadRef,
    *,
    deadline: float,
    timeout: int,
    index: int = 1,
    total: int = 1,
    started: float = 0.0,
    expect: dict[str, str] | None = None,
) -> RolloutStatus:
    """Watch one workload until kubectl would call its rollout done; raise on failure.

    ``expect`` (container -> image): once rolled out, the containers must run these images."""
    what = describe(ref.kind, ref.name, target.namespace)
    t0 = time.monotonic()

    def beat(message: str) -> None:
        """Heartbeat what the watch last saw (the UI shows it; a retry reads ``started_at`` back)."""
        heartbeat(
            step="wait_rollout",
            workload=f"{ref.kind}/{ref.name}",
            message=message,
            index=index,
            total=total,
            elapsed=round(time.monotonic() - t0, 1),
            started_at=started,
        )

    message = "waiting for the first observation"
    for ev in follow(kinds.list(ref.kind), target.namespace, ref.name, deadline=deadline):
        if ev.kind == "object":
            if ev.obj is None:
                raise errors.permanent(
                    errors.WORKLOAD_NOT_FOUND,
                    f"{what} not found",
                    kind=ref.kind,
                    name=ref.name,
                    namespace=target.namespace,
                )
            refuse_on_delete(ref, ev.obj, target.namespace)
            try:
                message, done = rollout_status(ref.kind, ev.obj)
            except RolloutError as exc:
                raise errors.permanent(
                    errors.ROLLOUT_FAILED if exc.deadline_exceeded else errors.PLAN_INVALID,
                    f"rollout of {what} failed: {exc}{_deadline_hint(ev.obj)}",
                    kind=ref.kind,
                    name=ref.name,
                    namespace=target.namespace,
                ) from None
            if done:
                beat(message)
                _check_images(ref, ev.obj, expect or {})
                return RolloutStatus(
                    kind=ref.kind,
                    name=ref.name,
                    ready=True,
                    message=message,
                    seconds=round(time.monotonic() - t0, 2),
                )
        elif ev.kind == "unreachable":
            message = f"Kubernetes API unreachable, retrying: {ev.error}"
        beat(message)
    raise errors.permanent(
        errors.ROLLOUT_FAILED,
        f"rollout of {what} did not finish within {timeout}s: {message}",
        kind=ref.kind,
        name=ref.name,
        namespace=target.namespace,
        timeout_seconds=timeout,
    )


def refuse_on_delete(ref: WorkloadRef, obj: dict[str, Any], namespace: str) -> None:
    """An OnDelete DaemonSet never replaces a pod by itself: waiting for its rollout would wait for
    nothing until the timeout. Its nodes are replaced one by one by the service's data plane step."""
    strategy = ((obj.get("spec") or {}).get("updateStrategy") or {}).get("type")
    if ref.kind == "DaemonSet" and strategy == "OnDelete":
        raise errors.permanent(
            errors.PLAN_INVALID,
            f"DaemonSet {ref.name!r} in namespace {namespace!r} has updateStrategy OnDelete: its pods are replaced "
            "only when deleted, so its rollout never finishes by itself; fix: give the service a `data_plane` block "
            "naming it (its nodes are then replaced one by one, drained first) instead of waiting for its rollout",
            kind=ref.kind,
            name=ref.name,
            namespace=namespace,
        )


def _check_images(ref: WorkloadRef, obj: dict[str, Any], expect: dict[str, str]) -> None:
    """A rolled-out workload whose container does not run the expected image: what its owner
    rendered is not what the plan asked (no image value of the release feeds that container)."""
    current = _containers(obj)
    for container, image in sorted(expect.items()):
        runs = current.get(container, ("", None))[1]
        if runs != image:
            raise errors.permanent(
                errors.PLAN_INVALID,
                f"workload changed but {ref.kind} {ref.name} container {container} runs {runs or '(no such container)'}"
                f", not {image}: nothing of the change feeds that container (for a Helm release: no "
                f"helm.image_values entry sets that container's image)",
                kind=ref.kind,
                name=ref.name,
                container=container,
            )


def _started_at() -> float:
    """Wall-clock start of this wait, kept across retries through heartbeat details."""
    if in_activity():
        details = activity.info().heartbeat_details
        if details and isinstance(details[0], dict) and "started_at" in details[0]:
            return float(details[0]["started_at"])
    return time.time()


def wait_all(
    target: KubeTarget, refs: list[WorkloadRef], timeout: int, expect: list[WorkloadImage] | None = None
) -> RolloutResult:
    """Wait for every workload in turn; ``expect``: the images they must show once rolled out."""
    wanted: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for img in expect or []:
        if img.image:
            wanted[(img.kind, img.name)][img.container] = img.image
    started = _started_at()
    deadline = time.monotonic() + max(0.0, started + timeout - time.time())
    results = []
    with api_client(target) as api:
        kinds = Kinds(api)
        for i, ref in enumerate(refs, 1):
            try:
                results.append(
                    wait_one(
                        kinds,
                        target,
                        ref,
                        deadline=deadline,
                        timeout=timeout,
                        index=i,
                        total=len(refs),
                        started=started,
                        expect=wanted.get((ref.kind, ref.name)),
                    )
                )
            except Exception as exc:
                reraise(exc, describe(ref.kind, ref.name, target.namespace))
            heartbeat(step="wait_rollout", started_at=started, ready=i, total=len(refs))
    return RolloutResult(workloads=results)


@activity.defn(name=K8S_WAIT_ROLLOUT, no_thread_cancel_exception=True)
def wait_rollout(inp: WaitRolloutInput) -> RolloutResult:
    """Wait until every workload has rolled out (as ``kubectl rollout status``)."""
    return wait_all(inp.target, inp.workloads, inp.timeout_seconds, inp.expect)


# --- undo ----------------------------------------------------------------------------------------
@activity.defn(name=K8S_UNDO_IMAGES, no_thread_cancel_exception=True)
def undo_images(inp: UndoImagesInput) -> RolloutResult:
    """Restore the recorded images (skipping workloads that were not found) and wait again."""
    restore = [p for p in inp.previous if p.found and p.image]
    refs: list[WorkloadRef] = []
    with api_client(inp.target) as api:
        kinds = Kinds(api)
        grouped = _group(restore)
        refuse_owned(kinds, inp.target, list(grouped))
        for (kind, name), wanted in grouped.items():
            check_cancelled()
            try:
                patch_images(kinds, inp.target, kind, name, wanted, change="", record=False)
            except Exception as exc:
                reraise(exc, describe(kind, name, inp.target.namespace))
            if name not in inp.no_wait:  # a data plane DaemonSet: restored, its nodes replaced one by one
                refs.append(WorkloadRef(kind=kind, name=name, container=next(iter(wanted))))
    return wait_all(inp.target, refs, inp.timeout_seconds)


# --- restart -------------------------------------------------------------------------------------
RESTART_ANNOTATION = "stackhop.io/restarted-by"


def _restart_one(kinds: Kinds, target: KubeTarget, ref: WorkloadRef, change: str) -> bool:
    """Set the pod template's restart annotation to ``change``; False when it already is (a retry)."""
    obj = call(kinds.read(ref.kind), ref.name, target.namespace)
    template = ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}
    if (template.get("annotations") or {}).get(RESTART_ANNOTATION) == change:
        return False
    body = {
        "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
        "spec": {"template": {"metadata": {"annotations": {RESTART_ANNOTATION: change}}}},
    }
    call(kinds.patch(ref.kind), ref.name, target.namespace, body, _content_type=SMP)
    return True


@activity.defn(name=K8S_RESTART, no_thread_cancel_exception=True)
def restart(inp: RestartInput) -> RestartResult:
    """Replace every pod of the workloads, as `kubectl rollout restart` does (a pod-template
    annotation); the caller waits with k8s.wait_rollout. Owned workloads are refused first."""
    cid = change_id(inp.change_id)
    out = RestartResult()
    with api_client(inp.target) as api:
        kinds = Kinds(api)
        refuse_owned(kinds, inp.target, [(w.kind, w.name) for w in inp.workloads])
        for ref in inp.workloads:
            check_cancelled()
            what = describe(ref.kind, ref.name, inp.target.namespace)
            try:
                patched = retry_conflicts(functools.partial(_restart_one, kinds, inp.target, ref, cid))
            except Exception as exc:
                reraise(exc, what, kind=ref.kind, name=ref.name)
            (out.restarted if patched else out.already).append(f"{ref.kind}/{ref.name}")
            heartbeat(step="restart", workload=f"{ref.kind}/{ref.name}")
    log.info("restarted", restarted=out.restarted, already=out.already, change=cid)
    return out
