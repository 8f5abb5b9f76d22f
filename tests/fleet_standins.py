"""A stand-in ``Upgrade`` workflow (registered under the real name) and fleets built for the tests.

Each cloud's outcome is decided by its plan's labels: ``outcome`` (succeeded, rolled-back, failed;
default succeeded) and ``hold`` (wait for the test's ``finish`` signal, or an abort). The stand-in
takes the signals the Fleet forwards (``parent_pause``/``parent_resume``/``parent_abort``) and shows
what it got in its ``seen`` query. ``Tracker`` counts the stand-ins running at once (not on replay),
the one thing a test cannot read from Temporal afterwards.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import yaml
from temporalio import workflow
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from model import errors, io
from model import io_fleet as fio
from model.fleet import FleetPlan
from model.loading import parse_plan
from model.plan import UpgradePlan
from workflows.fleet import FleetWorkflow


class Tracker:
    """Start order and the most stand-ins running at once, per fleet test."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.started: list[str] = []

    def enter(self, cloud: str) -> None:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.started.append(cloud)

    def leave(self) -> None:
        with self.lock:
            self.running -= 1


TRACKERS: dict[str, Tracker] = {}  # the plan's "tracker" label -> its tracker


@workflow.defn(name="Upgrade", sandboxed=False)
class StandInUpgrade:
    def __init__(self) -> None:
        self.finished = False
        self.abort_reason = ""
        self.signals: list[str] = []

    @workflow.run
    async def run(self, inp: io.UpgradeInput) -> io.UpgradeReport:
        plan = inp.plan
        labels = plan.metadata.labels
        tracker = TRACKERS.get(labels.get("tracker", ""))
        if tracker and not workflow.unsafe.is_replaying():
            tracker.enter(plan.metadata.name)
        if labels.get("hold"):
            await workflow.wait_condition(lambda: self.finished or bool(self.abort_reason))
        outcome: io.Outcome = "aborted" if self.abort_reason else labels.get("outcome", "succeeded")  # type: ignore[assignment]
        report = io.UpgradeReport(
            plan=plan.metadata.name,
            cloud=plan.cloud.name,
            release_from=plan.release.from_,
            release_to=plan.release.to,
            outcome=outcome,
            message=f"{plan.cloud.name} {outcome} on {workflow.info().task_queue}"
            + (f": {self.abort_reason}" if self.abort_reason else ""),
        )
        if tracker and not workflow.unsafe.is_replaying():
            tracker.leave()
        await workflow.wait_condition(workflow.all_handlers_finished)
        if outcome != "succeeded":
            raise ApplicationError(report.message, report, type=errors.OUTCOME_ERROR[outcome], non_retryable=True)
        return report

    @workflow.signal
    def parent_pause(self, reason: str) -> None:
        self.signals.append(f"pause {reason}".strip())

    @workflow.signal
    def parent_resume(self) -> None:
        self.signals.append("resume")

    @workflow.signal
    def parent_abort(self, reason: str) -> None:
        self.signals.append(f"abort {reason}")
        self.abort_reason = reason

    @workflow.signal
    def finish(self) -> None:
        self.finished = True

    @workflow.query
    def seen(self) -> list[str]:
        return self.signals


def cloud_plan(name: str, tracker: str = "", image: str = "registry/keystone:29.1.0", **labels: str) -> UpgradePlan:
    """A one-service plan of cloud ``<name>-<random>`` whose stand-in upgrade does what ``labels`` say."""
    doc = {
        "apiVersion": "stackhop/v1alpha1",
        "kind": "UpgradePlan",
        "metadata": {"name": name, "labels": {"tracker": tracker, **labels}},
        "cloud": {
            "name": f"{name}-{uuid.uuid4().hex[:8]}",
            "kubernetes": {"context": "lab"},
            "openstack": {"cloud": "lab"},
        },
        "release": {"from": "2025.2", "to": "2026.1"},
        "services": [
            {
                "name": "keystone",
                "database": {"name": "keystone"},
                "migration": {"mode": "expand-contract"},
                "workloads": [
                    {"kind": "Deployment", "name": "keystone-api", "container": "keystone-api", "image": image}
                ],
            }
        ],
    }
    return parse_plan(yaml.safe_dump(doc), f"{name}.yaml")


def make_fleet(
    plans: dict[str, UpgradePlan],
    waves: list[dict[str, Any]],
    canary: list[str] | None = None,
    task_queues: dict[str, str] | None = None,
    **top: Any,
) -> FleetPlan:
    queues = task_queues or {}
    doc: dict[str, Any] = {
        "apiVersion": "stackhop/v1alpha1",
        "kind": "FleetPlan",
        "metadata": {"name": f"f{uuid.uuid4().hex[:8]}"},
        "clouds": [
            {"name": n, "plan": f"{n}.yaml", **({"task_queue": queues[n]} if n in queues else {})} for n in plans
        ],
        "canary": canary or [],
        "waves": waves,
        **top,
    }
    fleet = FleetPlan.model_validate(doc)
    clouds = [c.model_copy(update={"upgrade_plan": plans[c.name]}) for c in fleet.clouds]
    return fleet.model_copy(update={"clouds": clouds})


@asynccontextmanager
async def fleet_worker(client: Client, task_queue: str | None = None) -> AsyncIterator[str]:
    tq = task_queue or f"fleet-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=tq, workflows=[FleetWorkflow, StandInUpgrade]):
        yield tq


async def start_fleet(client: Client, fleet: FleetPlan, tq: str) -> Any:
    return await client.start_workflow(
        FleetWorkflow.run,
        fio.FleetInput(fleet=fleet, fleet_file="fleet.yaml", requested_by="test"),
        id=fleet.workflow_id,
        task_queue=tq,
    )
