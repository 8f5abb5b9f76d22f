"""Fault injection on the labs: the worker SIGKILLed at the start and at the completion of every
step of the demo plan and of its rollbacks, the Temporal dev server, kube-apiserver and MariaDB
restarted mid-upgrade. Every case must reach its expected outcome with no side effect done twice,
counted from the labs' own logs (tests/faults/logs.py).

CASES is the one table of runs and outcomes (the README's "Fault injection" table mirrors it).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from tests.faults.harness import SUMMARIES, Case, Disruption, Faults
from tests.faults.points import KillPoint

pytestmark = [pytest.mark.k8s, pytest.mark.openstack]

IMAGE = "keystone-api=registry.lab/keystone:{}"
DEPLOYMENT = "deployments/openstack/keystone-api"


def both(*steps: str) -> tuple[KillPoint, ...]:
    """A kill right after each step starts and one right before it completes (its retry)."""
    return tuple(KillPoint(step, when) for step in steps for when in ("start", "complete"))


@dataclass(frozen=True)
class Expected:
    outcome: str
    images: tuple[str, ...]  # the worker's image transitions on keystone-api, in order
    drops: int  # DROP DATABASE keystone (one per restore)
    final_release: str
    retried: tuple[str, ...] = ()  # steps a disruption must have hit: an attempt 2 with no kill there
    cause: str = ""  # in the report's message: the failure that started the rollback (not a fault's)
    helm: tuple[str, ...] = ()  # the release's completed revisions (CaseResult.completed_revisions)


# Every run passes through the pre-flight, snapshot, verify and check: their kills go to the
# rollback runs, so the success run carries the kills of the steps only it reaches.
FIRST = ("snapshot", "verify", "check")
UPGRADE = ("expand", "read-images", "roll", "rollout", "validate", "contract", "postcheck")
# The restore path of a part-way schema change (policy.restore: automatic in the fault plan).
RESTORE = ("quiesce", "inspect", "restore", "unquiesce")

CASES: list[tuple[Case, Expected]] = [
    (
        Case("upgrade", kills=both(*UPGRADE)),
        Expected("succeeded", ("29.1.0",), 0, "29.1.0"),
    ),
    # A failed rollout after a complete expand goes back with previous images only: no restore.
    # kube-apiserver is killed as the rollout wait begins (held until it is down): the wait rides
    # out the outage and then sees the crashing pods.
    (
        Case(
            "images-rollback",
            inject="rollout",
            kills=both(*FIRST, "undo-images"),
            disruptions=(Disruption("rollout", "start", "apiserver", hold=True),),
            rollout_timeout="10s",
        ),
        Expected("rolled-back", ("29.1.0", "28.1.0"), 0, "28.1.0", cause="did not finish within 10s"),
    ),
    # The expand fails part-way: quiesce, inspect, restore (once), unquiesce. MariaDB is stopped as
    # verify begins (held until it is down: the first attempt fails, the retry verifies), the
    # Temporal dev server restarts with its database file while the check runs.
    (
        Case(
            "restore-rollback",
            inject="migration",
            kills=both(*RESTORE),
            disruptions=(
                Disruption("verify", "start", "mariadb", hold=True),
                Disruption("check", "start", "temporal"),
            ),
        ),
        Expected("rolled-back", (), 1, "28.1.0", retried=("verify",), cause="expand: "),
    ),
    # Keystone as the demo's Helm release: the worker dies while `helm upgrade` runs and while
    # `helm rollback` runs (helm gets SIGTERM with it). Each change completes once: one upgrade
    # revision and one "Rollback to 1" in `helm history`, whatever the killed attempts left.
    (
        Case(
            "helm-rollback",
            inject="rollout",
            deploy="helm",
            kills=(KillPoint("helm-upgrade", "during"), KillPoint("helm-rollback", "during")),
            rollout_timeout="10s",
        ),
        Expected(
            "rolled-back",
            ("29.1.0", "28.1.0"),
            0,
            "28.1.0",
            cause="did not finish within 10s",
            helm=("Install complete", "upgrade", "Rollback to 1"),
        ),
    ),
]


@pytest.mark.parametrize(("case", "expected"), CASES, ids=[c.name for c, _ in CASES])
async def test_fault_case(faults: Faults, case: Case, expected: Expected) -> None:
    try:
        result = await faults.run(case)
    finally:
        await asyncio.to_thread(faults.lab.close)  # its lab controller must not outlive the case
    summary = result.summary(case)
    SUMMARIES.append(summary)
    assert result.outcome == expected.outcome, summary
    message = result.report.message if result.report else ""
    assert expected.cause in message, f"{case.name}: rolled back for another reason: {message}"
    assert result.duplicated == 0, summary
    images = [
        value.split("=", 1)[1].rsplit(":", 1)[1] for obj, key, value in result.kube.transitions if key == "images"
    ]
    assert tuple(images) == expected.images, summary
    assert all(obj == DEPLOYMENT for obj, _, _ in result.kube.transitions), summary
    assert result.db.drops["keystone"] == expected.drops, summary
    for step in expected.retried:
        assert result.attempts(step) >= 2, f"{case.name}: the disruption did not hit {step}; {summary}"
    assert tuple(result.completed_revisions) == expected.helm, summary
    assert faults.lab.deployed_image() == f"registry.lab/keystone:{expected.final_release}"
    assert faults.lab.served_release() == expected.final_release and faults.lab.token_works()
