"""Plan preview from live state: what each workload runs now and what the plan would change.

Used by ``stackhop plan show PLAN --live``.  Read-only; it reuses the read path of k8s.read_images
(without an activity context) so the preview and the real upgrade see workloads the same way.
Each row also names the workload's owner and, when the plan's adapter for the service may not change
it (model/ownership.py), why: the same refusal the activities and the pre-flight give.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from activities.helm import helm_for, read_status
from activities.helm_cli import apply_set, values_diff
from activities.helm_release import chart_name
from activities.kube_client import api_client, reraise
from activities.kube_rollout import read_images_with
from model.io import WorkloadImage, WorkloadRef
from model.ownership import Owner, refusal
from model.plan import Service, UpgradePlan

PreviewState = Literal["change", "at-target", "missing"]


class PreviewRow(BaseModel):
    service: str
    kind: str
    name: str
    container: str
    current: str | None  # None: workload or container missing
    target: str
    state: PreviewState
    owner: Owner | None = None  # None: workload missing
    refusal: str | None = None  # why the plan's adapter may not change it (None: it may)

    @property
    def missing(self) -> bool:
        return self.state == "missing"

    @property
    def at_target(self) -> bool:
        return self.state == "at-target"


def live_preview(plan: UpgradePlan) -> list[PreviewRow]:
    """One row per service and workload: current image -> target image, flagged.

    Raises the mapped ApplicationError (PlanInvalid for a bad context, Unavailable when the API
    cannot be reached) so the CLI can print its message.
    """
    target = plan.cloud.kubernetes
    pairs = [(svc, wl) for svc in plan.services for wl in svc.workloads]
    refs = [WorkloadRef(kind=wl.kind, name=wl.name, container=wl.container) for _, wl in pairs]

    with api_client(target) as api:
        try:
            current = read_images_with(api, target, refs)
        except Exception as exc:
            reraise(exc, f"reading workloads in namespace {target.namespace!r}")
    rows = []
    for (svc, wl), cur in zip(pairs, current, strict=True):
        state: PreviewState = "missing" if not cur.found else "at-target" if cur.image == wl.image else "change"
        rows.append(
            PreviewRow(
                service=svc.name,
                kind=wl.kind,
                name=wl.name,
                container=wl.container,
                current=cur.image,
                target=wl.image,
                state=state,
                owner=cur.owner,
                refusal=refusal_of(plan, svc, cur),
            )
        )
    return rows


def refusal_of(plan: UpgradePlan, svc: Service, cur: WorkloadImage) -> str | None:
    """Why the service's adapter may not change the workload (None: it may, or it is missing): a
    service with ``helm:`` goes through the Helm adapter, the others through the objects adapter."""
    if cur.owner is None:
        return None
    what = f"{cur.kind}/{cur.name}"
    if svc.helm is None:
        return refusal("objects", cur.owner, what)
    namespace = svc.helm.namespace or plan.cloud.kubernetes.namespace
    return refusal("helm", cur.owner, what, svc.helm.release, namespace)


# --- Helm releases ----------------------------------------------------------------------------------
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
                chart_now=chart_name(st.history, deployed),
                version_now=str(meta.get("version") or ""),
                version_plan=svc.helm.version,
                values_diff=values_diff(before, apply_set(before, dict(svc.helm.image_values))),
            )
        )
    return out
