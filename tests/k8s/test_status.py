"""kubectl's rollout verdict on hand-written objects: the branches the lab rarely shows."""

from __future__ import annotations

from typing import Any

import pytest

from activities.kube_status import RolloutError, rollout_status


def dep(
    gen: int = 2,
    observed: int = 2,
    replicas: int = 3,
    updated: int = 3,
    total: int = 3,
    available: int = 3,
    reason: str = "NewReplicaSetAvailable",
    terminating: int | None = None,
) -> dict[str, Any]:
    extra = {} if terminating is None else {"terminatingReplicas": terminating}
    return {
        "metadata": {"name": "d", "generation": gen},
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": observed,
            "updatedReplicas": updated,
            "replicas": total,
            "availableReplicas": available,
            "conditions": [{"type": "Progressing", "reason": reason}],
            **extra,
        },
    }


@pytest.mark.parametrize(
    ("obj", "done", "text"),
    [
        (dep(), True, "successfully rolled out"),
        (dep(gen=3), False, "spec update to be observed"),
        (dep(updated=1), False, "1 out of 3 new replicas"),
        (dep(total=4), False, "1 old replicas are pending termination"),
        (dep(available=2), False, "2 of 3 updated replicas are available"),
        (dep(terminating=1), False, "1 old replicas are still terminating"),  # beyond kubectl: old pods gone
        (dep(terminating=0), True, "successfully rolled out"),
    ],
)
def test_deployment(obj: dict[str, Any], done: bool, text: str) -> None:
    msg, ok = rollout_status("Deployment", obj)
    assert ok is done and text in msg


def test_deployment_deadline() -> None:
    with pytest.raises(RolloutError) as ei:
        rollout_status("Deployment", dep(updated=1, reason="ProgressDeadlineExceeded"))
    assert ei.value.deadline_exceeded and "'d' exceeded its progress deadline" in str(ei.value)


def sts(
    partition: int | None = None,
    updated: int = 3,
    ready: int = 3,
    observed: int = 1,
    cur: str = "r1",
    upd: str = "r1",
    rolling: bool = True,
) -> dict[str, Any]:
    strategy: dict[str, Any] = {"type": "RollingUpdate"}
    if rolling:
        strategy["rollingUpdate"] = {} if partition is None else {"partition": partition}
    return {
        "metadata": {"name": "s", "generation": 1},
        "spec": {"replicas": 3, "updateStrategy": strategy},
        "status": {
            "observedGeneration": observed,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "currentRevision": cur,
            "updateRevision": upd,
            "currentReplicas": 3,
        },
    }


def test_statefulset_branches() -> None:
    assert rollout_status("StatefulSet", sts(observed=0))[1] is False
    assert "Waiting for 1 pods to be ready" in rollout_status("StatefulSet", sts(ready=2))[0]
    assert rollout_status("StatefulSet", sts(partition=2, updated=1)) == (
        "partitioned roll out complete: 1 new pods have been updated...",
        True,
    )
    assert rollout_status("StatefulSet", sts(partition=0, updated=2))[1] is False
    assert rollout_status("StatefulSet", sts(rolling=False, upd="r2"))[1] is False
    assert rollout_status("StatefulSet", sts(rolling=False))[1] is True


def test_ondelete_strategies_are_refused() -> None:
    ds = {"metadata": {"name": "x", "generation": 1}, "spec": {"updateStrategy": {"type": "OnDelete"}}, "status": {}}
    with pytest.raises(RolloutError, match="only available for RollingUpdate"):
        rollout_status("DaemonSet", ds)
    with pytest.raises(RolloutError):
        rollout_status("StatefulSet", {**ds, "spec": {"updateStrategy": {"type": "OnDelete"}}})
