"""Plan preview from live state: what each workload runs now and what the plan would change.

Used by ``stackhop plan show PLAN --live``.  Read-only; it reuses the read path of k8s.read_images
(without an activity context) so the preview and the real upgrade see workloads the same way.
Each row also names the workload's owner and, when the plan's adapter for the service may not change
it (model/ownership.py), why: the same refusal the activities and the pre-flight give.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

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
