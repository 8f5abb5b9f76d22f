"""Helm release activities (helm.status, helm.upgrade, helm.rollback): the workload adapter for
what a release owns. stackhop changes the release's values, never the objects behind it. How a
retry finds its own revision and how a pending release is recovered: activities/helm_release.py.

* **Values.** An upgrade takes the user-supplied values of the revision deployed before it (``helm
  get values``: not the chart's defaults), applies ``set_values`` and passes the result as one
  values file (``-f``, mode 0600, deleted afterwards) — never ``--reuse-values`` or
  ``--reset-values``: every other value the operator supplied is kept exactly (nested maps, lists,
  a value equal to the chart's default), and the chart's new defaults apply where the operator set
  nothing.
* **Cancellation.** helm runs in its own process group and gets SIGTERM (never SIGKILL): Helm 4
  then marks an upgrade's revision ``failed`` ("context canceled") and exits, so nothing is left
  pending. A worker killed outright takes its helm down the same way (SIGTERM through
  PR_SET_PDEATHSIG; its output goes to files so that it cannot die of SIGPIPE first): no orphan helm
  runs on to race the retry. A helm killed with SIGKILL itself (OOM, a container or node gone), or a
  ``helm rollback`` (it does not handle SIGTERM), leaves the release pending: activities/helm_release.py
  recovers it.
"""

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from kubernetes import client
from temporalio import activity

from activities.helm_cli import Helm, apply_set, get_path, is_absent, values_diff
from activities.helm_release import (
    DONE,
    LABEL,
    ROLLBACK_RE,
    by_revision,
    chart_name,
    label_value,
    last_deployed,
    make_change_id,
    ours,
    ours_by_label,
    recover,
    revisions,
)
from activities.kube_client import Kinds, api_client, call, reraise
from activities.kube_rollout import describe, wait_all
from activities.kube_scale import _wait_pods_gone, _wait_scaled
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
from model.plan import HelmRelease, KubeTarget

log = structlog.get_logger(__name__)


# --- helpers -------------------------------------------------------------------------------------
def release_namespace(target: KubeTarget, helm: HelmRelease) -> str:
    return helm.namespace or target.namespace


def helm_for(target: KubeTarget, helm: HelmRelease) -> Helm:
    return Helm(target=target, release=helm.release, namespace=release_namespace(target, helm), timeout=helm.timeout)


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


def _begin(inp: HelmUpgradeInput | HelmRollbackInput) -> tuple[Helm, Callable[[HelmChange], HelmChange]]:
    """The release's helm, and ``done``: what every way out of a change does (the wait it asks for,
    the time it took)."""
    t0 = time.monotonic()
    target = _release_target(inp.target, inp.helm)

    def done(change: HelmChange) -> HelmChange:
        change.workloads = wait_for(inp.wait, target, inp.workloads, inp.timeout_seconds)
        change.seconds = round(time.monotonic() - t0, 2)
        return change

    return helm_for(inp.target, inp.helm), done


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
        history=hist,
    )


@activity.defn(name=HELM_STATUS, no_thread_cancel_exception=True)
def status(inp: HelmStatusInput) -> HelmStatus:
    """The release's history and current status; found=False when absent. Not its values: a
    workflow does not need them, and openstack-helm values hold passwords that would sit in the
    workflow's history."""
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
    h, done = _begin(inp)
    cid = make_change_id(inp.change_id, inp.purpose)

    hist = revisions(h)
    prior = ours(hist, cid)
    if not (prior and prior[0].status in DONE):
        prior = ours_by_label(h, hist, cid)
    if prior and prior[0].status in DONE:
        rev, before = prior
        log.info("helm upgrade already made", release=h.release, revision=rev.revision, change=cid)
        return done(
            HelmChange(
                release=h.release,
                purpose=inp.purpose,
                revision_before=before,
                revision=rev.revision,
                chart_before=chart_name(hist, before),
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
    # when there is nothing to change: no revision, the one that runs is the answer
    unchanged = HelmChange(
        release=h.release,
        purpose=inp.purpose,
        revision_before=deployed.revision,
        revision=deployed.revision,
        chart_before=deployed.chart,
        chart_after=deployed.chart,
        recovered=recovered,
    )
    set_values = inp.set_values
    if inp.purpose == "unquiesce" and inp.restore_of:
        restored = _restore_values(h, hist, inp.helm, inp.restore_of)
        if restored is None:  # the quiesce never ran: nothing to bring back
            return done(unchanged)
        set_values = restored
    values_before = h.values(deployed.revision)
    meta = h.metadata(deployed.revision)
    chart_args, version = _resolve_chart(inp, _chart_version_of(meta))
    after = apply_set(values_before, set_values)
    diff = values_diff(values_before, after)
    if not diff and version == _chart_version_of(meta):
        return done(unchanged)
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
    h, done = _begin(inp)

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

    def change(before: int, made: HelmRevision, **kw: Any) -> HelmChange:
        return done(
            HelmChange(
                release=h.release,
                purpose="rollback",
                revision_before=before,
                revision=made.revision,
                chart_before=chart_name(hist, before),
                chart_after=made.chart,
                values_diff=values_diff(h.values(before), h.values(made.revision)),
                **kw,
            )
        )

    prior = previous_rollback()
    if prior is not None:
        return change(inp.after_revision or inp.to_revision, prior, already=True)
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
    return change(before_rev, made, recovered=recovered)
