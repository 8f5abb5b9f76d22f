"""Plan preview from live state: what each workload runs now and what the plan would change.

Used by ``stackhop plan show PLAN --live``.  Read-only; it reuses the read path of k8s.read_images
(without an activity context) so the preview and the real upgrade see workloads the same way.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from activities.kube_client import api_client, reraise
from activities.kube_rollout import read_images_with
from model.io import WorkloadRef
from model.plan import UpgradePlan

PreviewState = Literal["change", "at-target", "missing"]


class PreviewRow(BaseModel):
    service: str
    kind: str
    name: str
    container: str
    current: str | None  # None: workload or container missing
    target: str
    state: PreviewState

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
    pairs = [(svc.name, wl) for svc in plan.services for wl in svc.workloads]
    refs = [WorkloadRef(kind=wl.kind, name=wl.name, container=wl.container) for _, wl in pairs]

    with api_client(target) as api:
        try:
            current = read_images_with(api, target, refs)
        except Exception as exc:
            reraise(exc, f"reading workloads in namespace {target.namespace!r}")
    rows = []
    for (service, wl), cur in zip(pairs, current, strict=True):
        state: PreviewState = "missing" if not cur.found else "at-target" if cur.image == wl.image else "change"
        rows.append(
            PreviewRow(
                service=service,
                kind=wl.kind,
                name=wl.name,
                container=wl.container,
                current=cur.image,
                target=wl.image,
                state=state,
            )
        )
    return rows
