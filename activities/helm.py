"""Helm release activities (helm.status, helm.upgrade, helm.rollback): the workload adapter for
what a release owns. stackhop changes the release's values, never the objects behind it.

* **Values.** An upgrade takes the user-supplied values of the revision deployed before it (``helm
  get values``: not the chart's defaults), applies ``set_values`` and passes the result as one
  values file (``-f``, mode 0600, deleted afterwards) — never ``--reuse-values`` or
  ``--reset-values``: every other value the operator supplied is kept exactly (nested maps, lists,
  a value equal to the chart's default), and the chart's new defaults apply where the operator set
  nothing.
* **Change id.** Every upgrade's description is ``stackhop <change id> from <revision before>``. A
  retried upgrade finds the revision its earlier attempt made (deployed or superseded) and returns it
  (``already``) instead of making another; the ``from`` part tells it (and an unquiesce's
  ``restore_of``) which revision the change started from.
* **Pending recovery.** A helm killed mid-operation (SIGKILL, a dead worker) leaves the latest
  revision ``pending-upgrade`` (its description is then Helm's "Preparing upgrade", not ours) and
  every later upgrade fails with "another operation is in progress". When that revision is ours — a
  release label ``stackhop-change=<hash of the change id>.r<revision>`` that the upgrade sets (labels
  are stored with the pending revision; an inherited label names another revision), or the revision
  the previous attempt heartbeated — or older than 2x helm.timeout, it is rolled back to the last
  deployed revision (Helm 4 allows ``helm rollback`` of a pending release; the pending revision stays
  in the history as it is) and the change goes on. A fresh pending operation of someone else is
  HelmBusy (temporary: retried).
* **Cancellation.** helm runs in its own process group and gets SIGTERM (never SIGKILL): Helm 4
  then marks the revision ``failed`` ("context canceled") and exits, so nothing is left pending. A
  worker killed outright takes its helm down the same way (SIGTERM through PR_SET_PDEATHSIG; its
  output goes to files so that it cannot die of SIGPIPE first): no orphan helm runs on to race the
  retry. Only a helm killed with SIGKILL itself (OOM, a container or node gone) leaves the release
  pending, which the recovery above handles.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from kubernetes import client
from pydantic import BaseModel
from temporalio import activity

from activities.helm_cli import Helm, apply_set, get_path, is_absent, values_diff
from activities.kube_client import Kinds, api_client, call, reraise
from activities.kube_rollout import describe, wait_all
from activities.kube_scale import _wait_pods_gone, _wait_scaled
from activities.kube_watch import in_activity
from model import errors
from model.io import (
    HELM_ROLLBACK,
    HELM_STATUS,
    HELM_UPGRADE,
    HelmChange,
    HelmRevision,
    HelmRollbackInput,
    HelmStatus,
    HelmStatusInput,
    HelmUpgradeInput,
    HelmWait,
    RolloutStatus,
    ScaleInput,
    WorkloadRef,
)
from model.loading import chart_in_repo, chart_version
from model.plan import HelmRelease, KubeTarget, UpgradePlan

log = structlog.get_logger(__name__)

DESCRIPTION_RE = re.compile(r"^stackhop (?P<change>\S+) from (?P<rev>\d+)$")
ROLLBACK_RE = re.compile(r"^Rollback to (?P<rev>\d+)$")
PENDING = frozenset({"pending-upgrade", "pending-install", "pending-rollback"})
DONE = frozenset({"deployed", "superseded"})
LABEL = "stackhop-change"
STALE_FACTOR = 2  # a pending revision older than this many helm.timeout is abandoned


# --- helpers -------------------------------------------------------------------------------------
def release_namespace(target: KubeTarget, helm: HelmRelease) -> str:
    return helm.namespace or target.namespace


def helm_for(target: KubeTarget, helm: HelmRelease) -> Helm:
    return Helm(target=target, release=helm.release, namespace=release_namespace(target, helm), timeout=helm.timeout)


def revisions(h: Helm) -> list[HelmRevision]:
    return [
        HelmRevision(
            revision=int(r["revision"]),
            status=str(r.get("status", "")),
            chart=str(r.get("chart", "")),
            app_version=str(r.get("app_version", "")),
            description=str(r.get("description", "")),
            updated=str(r.get("updated", "")),
        )
        for r in h.history()
    ]


def last_deployed(hist: list[HelmRevision]) -> HelmRevision | None:
    return next((r for r in reversed(hist) if r.status == "deployed"), None)


def by_revision(hist: list[HelmRevision], rev: int) -> HelmRevision | None:
    return next((r for r in hist if r.revision == rev), None)


def ours(hist: list[HelmRevision], change: str) -> tuple[HelmRevision, int] | None:
    """(the revision made under ``change``, the revision it started from), latest first."""
    for r in reversed(hist):
        m = DESCRIPTION_RE.match(r.description)
        if m and m["change"] == change:
            return r, int(m["rev"])
    return None


def label_value(change: str, revision: int) -> str:
    return f"{hashlib.sha256(change.encode()).hexdigest()[:20]}.r{revision}"


def make_change_id(explicit: str, purpose: str) -> str:
    if explicit:
        return explicit
    if in_activity():
        info = activity.info()
        return f"{info.workflow_id}/{info.workflow_run_id}/{purpose}"
    raise errors.permanent(errors.PLAN_INVALID, "helm.upgrade outside an activity needs an explicit change_id")


def _age(updated: str) -> float:
    """Seconds since a helm timestamp (RFC 3339 with nanoseconds); 0 when unreadable."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", updated.strip())
    if not m:
        return 0.0
    frac = (m[2] or "")[:7]
    tz = "+00:00" if (m[3] or "Z") == "Z" else m[3]
    when = datetime.fromisoformat(f"{m[1]}{frac}{tz}")
    return max(0.0, (datetime.now(UTC) - when).total_seconds())


def _heartbeat_revision(release: str) -> int:
    """The revision the previous attempt of this activity was making (its heartbeats), or 0."""
    if not in_activity():
        return 0
    details = activity.info().heartbeat_details
    if details and isinstance(details[0], dict) and details[0].get("release") == release:
        return int(details[0].get("making") or 0)
    return 0


def recover(h: Helm, hist: list[HelmRevision], changes: set[str], to: int = 0) -> tuple[list[HelmRevision], list[str]]:
    """Roll back a pending latest revision that is ours or stale (module docstring); HelmBusy for a
    fresh foreign one. Returns the history afterwards and what was done. ``to``: the revision to
    roll back to (a rollback's own target: going through the last deployed revision first would
    flap the workloads back to it); default the last deployed one."""
    if not hist or hist[-1].status not in PENDING:
        return hist, []
    latest = hist[-1]
    labels = (h.metadata(latest.revision).get("labels") or {}) if changes else {}
    # Helm writes a rollback's description ("Rollback to N") as it starts, so a pending rollback to
    # the same revision is this one's killed attempt (or one with the same end: resolved the same way)
    same_rollback = (m := ROLLBACK_RE.match(latest.description)) is not None and int(m["rev"]) == to
    mine = (
        any(labels.get(LABEL) == label_value(c, latest.revision) for c in changes)
        or _heartbeat_revision(h.release) == latest.revision
        or (latest.status == "pending-rollback" and same_rollback)
    )
    age = _age(latest.updated)
    bound = STALE_FACTOR * h.timeout
    if not mine and age < bound:
        raise errors.temporary(
            f"{h.describe()}: revision {latest.revision} is {latest.status} since {age:.0f}s, not by this change: "
            f"another helm operation is running (abandoned after {bound}s, then rolled back)",
            type=errors.HELM_BUSY,
            release=h.release,
            namespace=h.namespace,
            revision=latest.revision,
        )
    deployed = last_deployed(hist)
    if deployed is None and not to:
        raise errors.permanent(
            errors.HELM_FAILED,
            f"{h.describe()}: revision {latest.revision} is {latest.status} and no revision was ever deployed: "
            f"nothing to roll back to (helm uninstall {h.release} -n {h.namespace}, then install it again)",
        )
    back_to = to or (deployed.revision if deployed else 0)
    why = "left by an earlier attempt of this change" if mine else f"abandoned ({age:.0f}s old)"
    h.run(
        "rollback",
        h.release,
        str(back_to),
        "--timeout",
        f"{h.timeout}s",
        beat={"step": "helm", "release": h.release, "recovering": latest.revision},
    )
    note = f"revision {latest.revision} {latest.status} ({why}), rolled back to {back_to}"
    log.warning("helm release recovered", release=h.release, namespace=h.namespace, what=note)
    return revisions(h), [note]


def _chart_version_of(meta: dict[str, Any]) -> str:
    return str(meta.get("version") or "")


def _resolve_chart(inp: HelmUpgradeInput, deployed_version: str) -> tuple[list[str], str]:
    """(the chart arguments of helm upgrade, the chart version it installs)."""
    helm = inp.helm
    want = inp.chart_version or deployed_version
    if helm.local_repo:
        # A local repository holds every version: the deployed one too (a quiesce before the roll)
        path = chart_in_repo(str(helm.repo), helm.chart, want)
        if chart_version(path) != want:
            raise errors.permanent(
                errors.HELM_FAILED,
                f"the local chart repository {helm.repo} has no {helm.chart} {want} ({path.name} or .tgz)"
                f" — add it there (helm package writes {helm.chart}-{want}.tgz)",
                chart=helm.chart,
                repo=str(helm.repo),
            )
        return [str(path)], want
    if helm.is_path:
        found = chart_version(Path(helm.chart))
        if found != want:
            asked = "helm.version" if inp.chart_version else "the deployed chart version"
            raise errors.permanent(
                errors.HELM_FAILED,
                f"helm.chart {helm.chart} holds chart version {found or '(no chart there)'}, not {want} "
                f"({asked}): helm ignores --version for a path, so point helm.chart at the chart of version {want}, "
                "or keep every version in a local repository (helm.repo: a directory, helm.chart: the name)",
                chart=helm.chart,
            )
        return [helm.chart], want
    args = [helm.chart, "--version", want]
    if helm.repo:
        args += ["--repo", helm.repo]
    return args, want


def _chart_name(hist: list[HelmRevision], rev: int) -> str:
    r = by_revision(hist, rev)
    return r.chart if r else ""


# --- waits ---------------------------------------------------------------------------------------
def wait_for(how: HelmWait, target: KubeTarget, refs: list[WorkloadRef], timeout: int) -> list[RolloutStatus]:
    """After a change: until the workloads rolled out, or until their pods are gone, or nothing."""
    if how == "none" or not refs:
        return []
    if how == "rollout":
        return wait_all(target, refs, timeout).workloads
    sinp = ScaleInput(target=target, workloads=refs, timeout_seconds=timeout)
    deadline = time.monotonic() + timeout
    out = []
    t0 = time.monotonic()
    with api_client(target) as api:
        kinds = Kinds(api)
        core = client.CoreV1Api(api)
        for ref in refs:
            _wait_scaled(kinds, sinp, ref, 0, deadline)
            try:
                obj = call(kinds.read(ref.kind), ref.name, target.namespace)
            except Exception as exc:
                reraise(exc, describe(ref.kind, ref.name, target.namespace))
            _wait_pods_gone(core, sinp, ref, obj, deadline)
            out.append(
                RolloutStatus(
                    kind=ref.kind,
                    name=ref.name,
                    ready=True,
                    message="no pod left",
                    seconds=round(time.monotonic() - t0, 2),
                )
            )
    return out


def _release_target(target: KubeTarget, helm: HelmRelease) -> KubeTarget:
    """The workloads live where the release put them: its namespace."""
    return target.model_copy(update={"namespace": release_namespace(target, helm)})


# --- helm.status ---------------------------------------------------------------------------------
def read_status(target: KubeTarget, helm: HelmRelease) -> HelmStatus:
    h = helm_for(target, helm)
    try:
        hist = revisions(h)
    except Exception as exc:
        if getattr(exc, "type", None) == errors.WORKLOAD_NOT_FOUND:
            return HelmStatus(release=h.release, namespace=h.namespace, found=False)
        raise
    if not hist:
        return HelmStatus(release=h.release, namespace=h.namespace, found=False)
    latest = hist[-1]
    deployed = last_deployed(hist)
    return HelmStatus(
        release=h.release,
        namespace=h.namespace,
        chart=latest.chart,
        revision=latest.revision,
        status=latest.status,
        deployed_revision=deployed.revision if deployed else 0,
        values=h.values(latest.revision),
        history=hist,
    )


@activity.defn(name=HELM_STATUS, no_thread_cancel_exception=True)
def status(inp: HelmStatusInput) -> HelmStatus:
    """The release's history, current status and user-supplied values; found=False when absent."""
    return read_status(inp.target, inp.helm)


# --- helm.upgrade --------------------------------------------------------------------------------
def _restore_values(h: Helm, hist: list[HelmRevision], helm: HelmRelease, restore_of: str) -> dict[str, Any] | None:
    """set_values that bring back the replica values from before the quiesce ``restore_of``; None
    when that quiesce never made a revision."""
    found = ours(hist, restore_of)
    if found is None:
        return None
    before = h.values(found[1])
    out: dict[str, Any] = {}
    for path in helm.replica_values.values():
        value = get_path(before, path)
        out[path] = None if is_absent(value) else value
    return out


@activity.defn(name=HELM_UPGRADE, no_thread_cancel_exception=True)
def upgrade(inp: HelmUpgradeInput) -> HelmChange:
    """One helm upgrade of the release with ``set_values`` applied (module docstring), then wait."""
    t0 = time.monotonic()
    h = helm_for(inp.target, inp.helm)
    cid = make_change_id(inp.change_id, inp.purpose)
    target = _release_target(inp.target, inp.helm)

    def done(change: HelmChange) -> HelmChange:
        change.workloads = wait_for(inp.wait, target, inp.workloads, inp.timeout_seconds)
        change.seconds = round(time.monotonic() - t0, 2)
        return change

    hist = revisions(h)
    prior = ours(hist, cid)
    if prior and prior[0].status in DONE:
        rev, before = prior
        log.info("helm upgrade already made", release=h.release, revision=rev.revision, change=cid)
        return done(
            HelmChange(
                release=h.release,
                purpose=inp.purpose,
                revision_before=before,
                revision=rev.revision,
                chart_before=_chart_name(hist, before),
                chart_after=rev.chart,
                values_diff=values_diff(h.values(before), h.values(rev.revision)),
                already=True,
            )
        )
    hist, recovered = recover(h, hist, {cid, inp.restore_of} - {""})
    deployed = last_deployed(hist)
    if deployed is None:
        raise errors.permanent(
            errors.WORKLOAD_NOT_FOUND,
            f"{h.describe()} has no deployed revision: check helm.release and helm.namespace in the plan "
            f"(helm history {h.release} -n {h.namespace})",
        )
    set_values = inp.set_values
    if inp.purpose == "unquiesce" and inp.restore_of:
        restored = _restore_values(h, hist, inp.helm, inp.restore_of)
        if restored is None:  # the quiesce never ran: nothing to bring back
            return done(
                HelmChange(
                    release=h.release,
                    purpose=inp.purpose,
                    revision_before=deployed.revision,
                    revision=deployed.revision,
                    chart_before=deployed.chart,
                    chart_after=deployed.chart,
                    recovered=recovered,
                )
            )
        set_values = restored
    values_before = h.values(deployed.revision)
    meta = h.metadata(deployed.revision)
    chart_args, version = _resolve_chart(inp, _chart_version_of(meta))
    after = apply_set(values_before, set_values)
    diff = values_diff(values_before, after)
    if not diff and version == _chart_version_of(meta):
        return done(
            HelmChange(
                release=h.release,
                purpose=inp.purpose,
                revision_before=deployed.revision,
                revision=deployed.revision,
                chart_before=deployed.chart,
                chart_after=deployed.chart,
                recovered=recovered,
            )
        )
    making = hist[-1].revision + 1
    fd, path = tempfile.mkstemp(prefix="stackhop-values-", suffix=".json")  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(after, f)
        h.run(
            "upgrade",
            h.release,
            *chart_args,
            "-f",
            path,
            "--description",
            f"stackhop {cid} from {deployed.revision}",
            "--labels",
            f"{LABEL}={label_value(cid, making)}",
            "--timeout",
            f"{h.timeout}s",
            beat={"step": "helm", "release": h.release, "making": making, "purpose": inp.purpose},
        )
    finally:
        os.unlink(path)
    hist = revisions(h)
    made = ours(hist, cid)
    if made is None:
        raise errors.permanent(
            errors.HELM_FAILED, f"helm upgrade of {h.describe()} succeeded but no revision carries change {cid}"
        )
    log.info("helm upgrade", release=h.release, revision=made[0].revision, change=cid, diff=diff)
    return done(
        HelmChange(
            release=h.release,
            purpose=inp.purpose,
            revision_before=deployed.revision,
            revision=made[0].revision,
            chart_before=deployed.chart,
            chart_after=made[0].chart,
            values_diff=diff,
            recovered=recovered,
        )
    )


# --- helm.rollback -------------------------------------------------------------------------------
@activity.defn(name=HELM_ROLLBACK, no_thread_cancel_exception=True)
def rollback(inp: HelmRollbackInput) -> HelmChange:
    """helm rollback to ``to_revision`` (once: a retry finds its rollback revision), then wait."""
    t0 = time.monotonic()
    h = helm_for(inp.target, inp.helm)
    target = _release_target(inp.target, inp.helm)

    def done(change: HelmChange) -> HelmChange:
        change.workloads = wait_for(inp.wait, target, inp.workloads, inp.timeout_seconds)
        change.seconds = round(time.monotonic() - t0, 2)
        return change

    hist = revisions(h)
    if by_revision(hist, inp.to_revision) is None:
        raise errors.permanent(
            errors.HELM_FAILED,
            f"{h.describe()} has no revision {inp.to_revision} to roll back to (helm history {h.release} "
            f"-n {h.namespace}; --history-max may have dropped it)",
        )

    def previous_rollback() -> HelmRevision | None:
        for r in reversed(hist):
            m = ROLLBACK_RE.match(r.description)
            if r.revision > inp.after_revision and m and int(m["rev"]) == inp.to_revision and r.status in DONE:
                return r
        return None

    prior = previous_rollback()
    if prior is not None:
        before = inp.after_revision or inp.to_revision
        return done(
            HelmChange(
                release=h.release,
                purpose="rollback",
                revision_before=before,
                revision=prior.revision,
                chart_before=_chart_name(hist, before),
                chart_after=prior.chart,
                values_diff=values_diff(h.values(before), h.values(prior.revision)),
                already=True,
            )
        )
    deployed = last_deployed(hist)
    before_rev = deployed.revision if deployed else hist[-1].revision
    # A pending revision (this rollback's killed attempt, or a stale one) is resolved by the very
    # rollback asked for: nothing else to run then.
    hist, recovered = recover(h, hist, set(), to=inp.to_revision)
    if not recovered:
        h.run(
            "rollback",
            h.release,
            str(inp.to_revision),
            "--timeout",
            f"{h.timeout}s",
            beat={"step": "helm", "release": h.release, "making": hist[-1].revision + 1, "purpose": "rollback"},
        )
        hist = revisions(h)
    made = previous_rollback()
    if made is None:
        raise errors.permanent(
            errors.HELM_FAILED,
            f"helm rollback of {h.describe()} succeeded but no revision says Rollback to {inp.to_revision}",
        )
    return done(
        HelmChange(
            release=h.release,
            purpose="rollback",
            revision_before=before_rev,
            revision=made.revision,
            chart_before=_chart_name(hist, before_rev),
            chart_after=made.chart,
            values_diff=values_diff(h.values(before_rev), h.values(made.revision)),
            recovered=recovered,
        )
    )


# --- plan show --live ----------------------------------------------------------------------------
class HelmPreview(BaseModel):
    """What a roll would change in one service's release (read-only)."""

    service: str
    release: str
    namespace: str
    found: bool
    revision: int = 0  # the latest revision and its status
    status: str = ""
    deployed_revision: int = 0
    chart_now: str = ""  # name-version of the deployed revision
    version_now: str = ""
    version_plan: str = ""
    values_diff: list[str] = []


def helm_preview(plan: UpgradePlan) -> list[HelmPreview]:
    """For each service with ``helm:``: the release's revision and status, chart version now -> the
    plan's, and the values a roll would change. No activity context needed; changes nothing."""
    out = []
    target = plan.cloud.kubernetes
    for svc in plan.services:
        if svc.helm is None:
            continue
        h = helm_for(target, svc.helm)
        st = read_status(target, svc.helm)
        if not st.found:
            out.append(HelmPreview(service=svc.name, release=h.release, namespace=h.namespace, found=False))
            continue
        deployed = st.deployed_revision or st.revision
        meta = h.metadata(deployed)
        before = h.values(deployed)
        out.append(
            HelmPreview(
                service=svc.name,
                release=h.release,
                namespace=h.namespace,
                found=True,
                revision=st.revision,
                status=st.status,
                deployed_revision=st.deployed_revision,
                chart_now=_chart_name(st.history, deployed),
                version_now=_chart_version_of(meta),
                version_plan=svc.helm.version,
                values_diff=values_diff(before, apply_set(before, dict(svc.helm.image_values))),
            )
        )
    return out
