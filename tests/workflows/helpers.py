"""Plans, runners and waiting helpers shared by the workflow tests (and the history recorder)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

import worker as stackhop_worker
from cliapp.progress import read_status
from model import io
from model.loading import parse_plan
from model.plan import UpgradePlan
from tests.standins import QUICK_HEARTBEATS, Script
from tests.waiting import eventually
from workflows.upgrade import UpgradeWorkflow

NOVA_DATABASES = ["nova_api", "nova_cell0", "nova"]


def service(name: str, **extra: Any) -> dict[str, Any]:
    """A service of a plan; nova with its three databases, as its recipe needs."""
    dbs: dict[str, Any] = (
        {"databases": [{"name": n} for n in NOVA_DATABASES]} if name == "nova" else {"database": {"name": name}}
    )
    s: dict[str, Any] = {
        "name": name,
        **dbs,
        "migration": {"mode": "expand-contract"},
        "workloads": [
            {
                "kind": "Deployment",
                "name": f"{name}-api",
                "container": f"{name}-api",
                "image": f"registry/{name}:29.1.0",
            }
        ],
        "checks": [{"kind": "endpoint", "service_type": "x"}, {"kind": "tempest", "regex": "smoke"}],
    }
    s.update(extra)
    return s


def make_plan(services: list[dict[str, Any]] | None = None, **policy: Any) -> UpgradePlan:
    cloud = f"t{uuid.uuid4().hex[:10]}"
    doc = {
        "apiVersion": "stackhop/v1alpha1",
        "kind": "UpgradePlan",
        "metadata": {"name": "test"},
        "cloud": {"name": cloud, "kubernetes": {"context": "lab"}, "openstack": {"cloud": "lab"}},
        "release": {"from": "2025.2", "to": "2026.1"},
        "policy": {"heartbeat_timeout": "5s", "max_attempts": 2, **policy},
        "services": services or [service("keystone")],
    }
    return parse_plan(yaml.safe_dump(doc), "test.yaml")


@asynccontextmanager
async def running(client: Client, script: Script, task_queue: str | None = None) -> AsyncIterator[str]:
    tq = task_queue or f"tq-{uuid.uuid4().hex[:8]}"
    try:
        async with stackhop_worker.build_worker(client, script.activities(), task_queue=tq, **QUICK_HEARTBEATS):
            yield tq
    finally:  # never leave a stand-in blocked: the worker would wait for it on shutdown
        for ev in script.block.values():
            ev.set()


async def start(client: Client, plan: UpgradePlan, tq: str, **kw: Any) -> WorkflowHandle[Any, io.UpgradeReport]:
    return await client.start_workflow(
        UpgradeWorkflow.run,
        io.UpgradeInput(plan=plan, **kw),
        id=plan.workflow_id,
        task_queue=tq,
    )


# What keystone (expand-contract) with an endpoint check and tempest calls, in order: its recipe
# (model/recipes/keystone.py) checks the target release's status first and has no migrate (a no-op).
SERVICE_STEPS = [
    "checks.run:upgrade-status:pre",
    "db.snapshot",
    "db.verify_snapshot",
    "migration.db_sync:check",
    "migration.db_sync:expand",
    "k8s.read_images",
    "k8s.set_images",
    "k8s.wait_rollout",
    "checks.run:endpoint:post",
    "tempest.run",
    "migration.db_sync:contract",
    "checks.run:endpoint:post",
]


async def outcome_of(handle: WorkflowHandle[Any, Any]) -> tuple[str, io.UpgradeReport]:
    """("succeeded", report), or (the outcome error type of model.errors, report)."""
    try:
        report = await handle.result()
        return "succeeded", report
    except WorkflowFailureError as e:
        cause = e.cause
        assert isinstance(cause, ApplicationError)
        (report,) = cause.details  # decoded by the pydantic converter as a dict
        return cause.type or "", io.UpgradeReport.model_validate(report)


async def wait_for(
    client: Client,
    handle: WorkflowHandle[Any, Any],
    predicate: Callable[[io.UpgradeStatus], bool],
    within: float = 20.0,
) -> io.UpgradeStatus:
    """The upgrade's status, read as the CLI reads it (each running service by its own query),
    once ``predicate`` holds."""

    async def seen() -> io.UpgradeStatus | None:
        st = await read_status(client, handle)
        return st if predicate(st) else None

    return await eventually(seen, within=within, what="upgrade status")


def service_handle(client: Client, plan: UpgradePlan, name: str) -> WorkflowHandle[Any, io.ServiceResult]:
    """A service's own workflow, where its gate, decisions and progress live."""
    return client.get_workflow_handle(io.service_workflow_id(plan.workflow_id, name), result_type=io.ServiceResult)


def waiting_for_decision(st: io.UpgradeStatus) -> bool:
    return any(s.waiting_for == io.DECISION for s in st.services)


async def update(handle: WorkflowHandle[Any, Any], name: str, req: BaseModel) -> io.ControlAck:
    ack: io.ControlAck = await handle.execute_update(name, req, result_type=io.ControlAck)
    return ack


async def rejected(handle: WorkflowHandle[Any, Any], name: str, req: BaseModel) -> str:
    """The validator's reason for refusing an update (nothing is written to the history)."""
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await update(handle, name, req)
    return str(info.value.cause)


def blocked(script: Script, key: str) -> threading.Event:
    """Make the stand-in for ``key`` heartbeat until the returned event is set."""
    script.block[key] = ev = threading.Event()
    return ev
