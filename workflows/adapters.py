"""The workload adapter: the one way a workflow changes a service's workloads.

Why one interface: who owns the workloads decides how they may be changed. Plain objects are patched
(k8s.set_images, k8s.scale); what a Helm release owns is changed through the release's values
(helm.upgrade) and undone by ``helm rollback`` to the revision recorded before the change — patching
the objects would make ``helm history`` lie and be undone by the next ``helm upgrade``. The steps of
a service (workflows/service_steps.py, rollback.py) and the canary's reset ask the adapter what to
run; they never name a Kubernetes object's activity themselves. The data plane and fleets build on
the same interface.

Each method returns a :class:`Call` (which activity, with which input) that the caller runs as a
forward step or as a compensation, so the adapters stay plain data and the failure policy stays in
one place. Deterministic code only.

The operations: ``observe`` (what runs now, and who owns it), ``prepare`` (what the undo will need,
read before anything changes), ``apply`` (the roll), ``wait`` (until it rolled out), ``revert`` (the
undo of the roll), ``quiesce`` / ``unquiesce`` (replicas to 0 and back, registered before the
scale-down so a quiesce that failed half-way is still undone), ``restart`` (every pod replaced on the
images it runs, as `kubectl rollout restart` does: nova's unpin), waited for until rolled out.

A service's data plane DaemonSets (``data_plane.workloads``) are rolled and reverted with the others
but never in a rollout wait (after the roll, the restart's, the rollback's): an OnDelete DaemonSet
never rolls by itself; the dataplane step (workflows/dataplane_step.py) replaces its pods node by node.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from model import io
    from model.ownership import Adapter, refusal
    from model.plan import HelmRelease, KubeTarget, Policy, Service


@dataclass(frozen=True)
class Call:
    """One activity to run: the step records it under the caller's step name."""

    activity: str
    arg: BaseModel
    result_type: type[BaseModel]
    summary: str
    step_timeout: int | None = None


@dataclass
class Applied:
    """What ``prepare`` read before the change, and the changes made since (for undo and report)."""

    images: list[io.WorkloadImage] = field(default_factory=list)  # the images before the roll
    release: io.HelmStatus | None = None  # the release before the roll (helm)
    changes: list[io.HelmChange] = field(default_factory=list)


class WorkloadAdapter(Protocol):
    kind: Adapter

    def observe(self) -> Call: ...
    def prepare(self) -> list[Call]: ...
    def apply(self) -> Call: ...
    def wait(self, target_images: bool = True) -> Call: ...
    def revert(self, before: Applied) -> Call | None: ...
    def quiesce(self, change_id: str) -> Call: ...
    def unquiesce(self, change_id: str) -> Call: ...
    def restart(self, change_id: str) -> list[Call]: ...
    def refusal(self, image: io.WorkloadImage) -> str | None: ...
    def back_to(self, result: io.ServiceResult) -> Call | None: ...


class _Common:
    kind: Adapter

    def __init__(self, svc: Service, target: KubeTarget, policy: Policy):
        self.svc, self.target, self.policy = svc, target, policy

    def refs(self) -> list[io.WorkloadRef]:
        return [io.WorkloadRef(kind=w.kind, name=w.name, container=w.container) for w in self.svc.workloads]

    def quiesce_refs(self) -> list[io.WorkloadRef]:
        return [io.WorkloadRef(kind=w.kind, name=w.name, container=w.container) for w in self.svc.quiesce_set]

    def targets(self) -> list[io.WorkloadImage]:
        return [
            io.WorkloadImage(kind=w.kind, name=w.name, container=w.container, image=w.image) for w in self.svc.workloads
        ]

    @property
    def data_plane(self) -> list[str]:
        """The service's data plane DaemonSets by name: rolled with the others, never waited for (an
        OnDelete DaemonSet does not roll by itself; the dataplane step replaces its pods node by node).
        Which they are: ``Service.data_plane_workloads``."""
        return [w.name for w in self.svc.data_plane_workloads]

    def waited(self) -> list[io.WorkloadRef]:
        """The workloads a rollout wait watches: all but the data plane's."""
        return [r for r in self.refs() if r.name not in self.data_plane]

    def waited_targets(self) -> list[io.WorkloadImage]:
        return [t for t in self.targets() if t.name not in self.data_plane]

    @property
    def tag(self) -> str:
        return self.svc.workloads[0].tag

    def observe(self) -> Call:
        return Call(
            io.K8S_READ_IMAGES,
            io.ReadImagesInput(target=self.target, workloads=self.refs()),
            io.ReadImagesResult,
            f"read current images of {self.svc.name}",
        )

    def refusal(self, image: io.WorkloadImage) -> str | None:
        if image.owner is None:
            return None
        what = f"{image.kind} {image.name}"
        helm = self.svc.helm
        if helm is None:
            return refusal("objects", image.owner, what)
        return refusal("helm", image.owner, what, helm.release, helm.namespace or self.target.namespace)


class ObjectsAdapter(_Common):
    """Workloads nothing else owns: their images and replicas are patched directly."""

    kind: Adapter = "objects"

    def prepare(self) -> list[Call]:
        return [self.observe()]

    def apply(self) -> Call:
        return Call(
            io.K8S_SET_IMAGES,
            io.SetImagesInput(target=self.target, images=self.targets()),
            io.SetImagesResult,
            f"set {self.svc.name} images to {self.tag}",
        )

    def wait(self, target_images: bool = True) -> Call:
        t = self.policy.rollout_timeout
        return Call(
            io.K8S_WAIT_ROLLOUT,
            io.WaitRolloutInput(target=self.target, workloads=self.waited(), timeout_seconds=t),
            io.RolloutResult,
            f"wait for {self.svc.name} rollout",
            step_timeout=t,
        )

    def revert(self, before: Applied) -> Call | None:
        if not before.images:
            return None
        t = self.policy.rollout_timeout
        return Call(
            io.K8S_UNDO_IMAGES,
            io.UndoImagesInput(target=self.target, previous=before.images, timeout_seconds=t, no_wait=self.data_plane),
            io.RolloutResult,
            f"restore previous images of {self.svc.name}",
            step_timeout=t,
        )

    def back_to(self, result: io.ServiceResult) -> Call | None:
        """The images this service ran before the upgrade ``result`` reports (the canary's reset)."""
        if not result.previous_images:
            return None
        return Call(
            io.K8S_SET_IMAGES,
            io.SetImagesInput(target=self.target, images=result.previous_images),
            io.SetImagesResult,
            f"{self.svc.name} back to baseline images",
        )

    def quiesce(self, change_id: str) -> Call:
        return Call(
            io.K8S_SCALE,
            io.ScaleInput(target=self.target, workloads=self.quiesce_refs(), change_id=change_id),
            io.ScaleResult,
            f"scale {self.svc.name} to 0",
        )

    def unquiesce(self, change_id: str) -> Call:
        return Call(
            io.K8S_SCALE,
            io.ScaleInput(target=self.target, workloads=self.quiesce_refs(), change_id=change_id, restore=True),
            io.ScaleResult,
            f"scale {self.svc.name} back to its replicas",
        )

    def restart(self, change_id: str) -> list[Call]:
        """A pod-template annotation set to ``change_id`` (a retry finds it set), then the wait."""
        restart = Call(
            io.K8S_RESTART,
            io.RestartInput(target=self.target, workloads=self.refs(), change_id=change_id),
            io.RestartResult,
            f"restart {self.svc.name} (rollout restart)",
        )
        return [restart, self.wait(target_images=False)]


class HelmAdapter(_Common):
    """Workloads a Helm release owns: every change is a revision of the release."""

    kind: Adapter = "helm"

    @property
    def helm(self) -> HelmRelease:
        assert self.svc.helm is not None, "the helm adapter of a service without a release"
        return self.svc.helm

    def status(self) -> Call:
        return Call(
            io.HELM_STATUS,
            io.HelmStatusInput(target=self.target, helm=self.helm),
            io.HelmStatus,
            f"read Helm release {self.helm.release}",
        )

    def prepare(self) -> list[Call]:
        return [self.observe(), self.status()]

    def _timeout(self, wait: int = 0) -> int:
        return self.helm.timeout + wait

    def apply(self) -> Call:
        return Call(
            io.HELM_UPGRADE,
            io.HelmUpgradeInput(
                target=self.target,
                helm=self.helm,
                purpose="roll",
                chart_version=self.helm.version,
                set_values=dict(self.helm.image_values),
                timeout_seconds=self.helm.timeout,
            ),
            io.HelmChange,
            f"helm upgrade {self.helm.release} to chart {self.helm.version}, images {self.tag}",
            step_timeout=self._timeout(),
        )

    def wait(self, target_images: bool = True) -> Call:
        """Until the workloads rolled out; with ``target_images``, showing the plan's images (the
        release's values reached the objects: a wrong value path is caught here, not by a user)."""
        t = self.policy.rollout_timeout
        expect = self.waited_targets() if target_images else []
        return Call(
            io.K8S_WAIT_ROLLOUT,
            io.WaitRolloutInput(target=self.target, workloads=self.waited(), timeout_seconds=t, expect=expect),
            io.RolloutResult,
            f"wait for {self.svc.name} rollout (release {self.helm.release})",
            step_timeout=t,
        )

    def _rollback(self, to: int, after: int, summary: str, wait: io.HelmWait = "rollout") -> Call:
        t = self.policy.rollout_timeout
        return Call(
            io.HELM_ROLLBACK,
            io.HelmRollbackInput(
                target=self.target,
                helm=self.helm,
                to_revision=to,
                after_revision=after,
                wait=wait,
                workloads=self.waited() if wait != "none" else [],
                timeout_seconds=t,
            ),
            io.HelmChange,
            f"helm rollback {self.helm.release} to revision {to}{summary}",
            step_timeout=self._timeout(t),
        )

    def _replicas(self, purpose: io.HelmPurpose, summary: str, **kw: Any) -> Call:
        """A revision that changes only the quiesce set's replicas (the chart version deployed now)."""
        t = self.policy.rollout_timeout
        return Call(
            io.HELM_UPGRADE,
            io.HelmUpgradeInput(
                target=self.target,
                helm=self.helm,
                purpose=purpose,
                workloads=self.quiesce_refs(),
                timeout_seconds=t,
                **kw,
            ),
            io.HelmChange,
            f"helm upgrade {self.helm.release}: {self.svc.name} replicas {summary}",
            step_timeout=self._timeout(t),
        )

    def revert(self, before: Applied) -> Call | None:
        if before.release is None or not before.release.deployed_revision:
            return None
        return self._rollback(before.release.deployed_revision, before.release.revision, "")

    def back_to(self, result: io.ServiceResult) -> Call | None:
        """The revision deployed before the upgrade ``result`` reports, unless its rollback is back there."""
        rolls = [i for i, c in enumerate(result.helm) if c.purpose == "roll"]
        if not rolls or any(c.purpose == "rollback" for c in result.helm[rolls[0] :]):
            return None
        roll = result.helm[rolls[0]]
        return self._rollback(roll.revision_before, result.helm[-1].revision, " (baseline)", wait="none")

    def quiesce(self, change_id: str) -> Call:
        paths = self.helm.replica_values
        zero = {paths[w.name]: 0 for w in self.svc.quiesce_set}
        return self._replicas("quiesce", "to 0", set_values=zero, change_id=change_id, wait="gone")

    def unquiesce(self, change_id: str) -> Call:
        return self._replicas("unquiesce", "back", restore_of=change_id, change_id=f"{change_id}/back", wait="rollout")

    def restart(self, change_id: str) -> list[Call]:
        """A revision that sets ``restart_value`` (a value the chart writes into the pod templates'
        annotations) to ``change_id``: the release's objects change only through the release, so a
        restart is a values change too, and its revision is in ``helm history``."""
        path = self.helm.restart_value
        assert path, "model.loading refuses a plan whose recipe restarts under Helm without helm.restart_value"
        t = self.policy.rollout_timeout
        return [
            Call(
                io.HELM_UPGRADE,
                io.HelmUpgradeInput(
                    target=self.target,
                    helm=self.helm,
                    purpose="restart",
                    set_values={path: change_id},
                    change_id=change_id,
                    wait="rollout",
                    workloads=self.waited(),
                    timeout_seconds=t,
                ),
                io.HelmChange,
                f"helm upgrade {self.helm.release}: restart {self.svc.name} ({path})",
                step_timeout=self._timeout(t),
            )
        ]


def adapter_for(svc: Service, target: KubeTarget, policy: Policy) -> WorkloadAdapter:
    """The adapter the plan asks for: a service with ``helm:`` goes through its release."""
    return HelmAdapter(svc, target, policy) if svc.helm is not None else ObjectsAdapter(svc, target, policy)
