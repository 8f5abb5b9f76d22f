"""Rollout completion exactly as ``kubectl rollout status`` judges it (no I/O here).

A line-by-line port of k8s.io/kubectl/pkg/polymorphichelpers/rollout_status.go (v0.36.3) working on
the unstructured JSON objects, so "done" means what operators already trust: generation observed,
all replicas updated, no old replicas left, all updated replicas available (Deployment);
updatedNumberScheduled/numberAvailable (DaemonSet); ready/updated replicas honouring the partition
(StatefulSet).  A pure function is also trivially testable on captured objects.

One addition to kubectl: a Deployment is done only once no old pod is still terminating
(``status.terminatingReplicas``, Kubernetes 1.35+; absent on older clusters, where it counts as 0).
kubectl calls a rollout done while the old pods' containers may still be shutting down; an old
nova-scheduler that is stopping can still take an RPC request from the queue and never answer it,
so validating the new release before they are gone can fail on the old one.
"""

from __future__ import annotations

from typing import Any


class RolloutError(Exception):
    """kubectl would fail here: a terminal state, not a 'keep waiting'."""

    def __init__(self, message: str, *, deadline_exceeded: bool = False) -> None:
        super().__init__(message)
        self.deadline_exceeded = deadline_exceeded


def _g(obj: dict[str, Any], *path: str, default: Any = 0) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj or obj[key] is None:
            return default
        obj = obj[key]
    return obj


def deployment_status(d: dict[str, Any]) -> tuple[str, bool]:
    name = _g(d, "metadata", "name", default="")
    if _g(d, "metadata", "generation") <= _g(d, "status", "observedGeneration"):
        for cond in _g(d, "status", "conditions", default=[]) or []:
            if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
                raise RolloutError(f"deployment {name!r} exceeded its progress deadline", deadline_exceeded=True)
        replicas = _g(d, "spec", "replicas", default=None)
        updated = _g(d, "status", "updatedReplicas")
        if replicas is not None and updated < replicas:
            return (
                f"Waiting for deployment {name!r} rollout to finish: {updated} out of {replicas}"
                " new replicas have been updated...",
                False,
            )
        total = _g(d, "status", "replicas")
        if total > updated:
            return (
                f"Waiting for deployment {name!r} rollout to finish: {total - updated} old"
                " replicas are pending termination...",
                False,
            )
        available = _g(d, "status", "availableReplicas")
        if available < updated:
            return (
                f"Waiting for deployment {name!r} rollout to finish: {available} of {updated}"
                " updated replicas are available...",
                False,
            )
        terminating = _g(d, "status", "terminatingReplicas")
        if terminating:
            return (
                f"Waiting for deployment {name!r} rollout to finish: {terminating} old replicas are still"
                " terminating...",
                False,
            )
        return f"deployment {name!r} successfully rolled out", True
    return "Waiting for deployment spec update to be observed...", False


def daemonset_status(ds: dict[str, Any]) -> tuple[str, bool]:
    name = _g(ds, "metadata", "name", default="")
    if _g(ds, "spec", "updateStrategy", "type", default="RollingUpdate") != "RollingUpdate":
        raise RolloutError("rollout status is only available for RollingUpdate strategy type")
    if _g(ds, "metadata", "generation") <= _g(ds, "status", "observedGeneration"):
        desired = _g(ds, "status", "desiredNumberScheduled")
        updated = _g(ds, "status", "updatedNumberScheduled")
        if updated < desired:
            return (
                f"Waiting for daemon set {name!r} rollout to finish: {updated} out of {desired}"
                " new pods have been updated...",
                False,
            )
        available = _g(ds, "status", "numberAvailable")
        if available < desired:
            return (
                f"Waiting for daemon set {name!r} rollout to finish: {available} of {desired}"
                " updated pods are available...",
                False,
            )
        return f"daemon set {name!r} successfully rolled out", True
    return "Waiting for daemon set spec update to be observed...", False


def statefulset_status(sts: dict[str, Any]) -> tuple[str, bool]:
    strategy = _g(sts, "spec", "updateStrategy", default={}) or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        raise RolloutError("rollout status is only available for RollingUpdate strategy type")
    observed = _g(sts, "status", "observedGeneration")
    if observed == 0 or _g(sts, "metadata", "generation") > observed:
        return "Waiting for statefulset spec update to be observed...", False
    replicas = _g(sts, "spec", "replicas", default=None)
    ready = _g(sts, "status", "readyReplicas")
    if replicas is not None and ready < replicas:
        return f"Waiting for {replicas - ready} pods to be ready...", False
    updated = _g(sts, "status", "updatedReplicas")
    rolling = strategy.get("rollingUpdate")
    if rolling is not None:
        partition = rolling.get("partition")
        if replicas is not None and partition is not None and updated < replicas - partition:
            return (
                f"Waiting for partitioned roll out to finish: {updated} out of"
                f" {replicas - partition} new pods have been updated...",
                False,
            )
        return f"partitioned roll out complete: {updated} new pods have been updated...", True
    update_rev = _g(sts, "status", "updateRevision", default="")
    current_rev = _g(sts, "status", "currentRevision", default="")
    if update_rev != current_rev:
        return (
            f"waiting for statefulset rolling update to complete {updated} pods at revision {update_rev}...",
            False,
        )
    current = _g(sts, "status", "currentReplicas")
    return f"statefulset rolling update complete {current} pods at revision {current_rev}...", True


VIEWERS = {
    "Deployment": deployment_status,
    "DaemonSet": daemonset_status,
    "StatefulSet": statefulset_status,
}


def rollout_status(kind: str, obj: dict[str, Any]) -> tuple[str, bool]:
    """(message, done); raises RolloutError where kubectl would exit non-zero."""
    return VIEWERS[kind](obj)
