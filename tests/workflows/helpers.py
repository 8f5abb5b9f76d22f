"""Plans and runners for the workflow tests."""

from __future__ import annotations

import uuid
from contextlib import asynccontextmanager
from typing import Any

import yaml
from temporalio.client import Client, WorkflowHandle

import worker as stackhop_worker
from model import io
from model.loading import parse_plan
from model.plan import UpgradePlan
from tests.standins import Script
from workflows.upgrade import UpgradeWorkflow


def service(name: str, **extra: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "name": name,
        "database": {"name": name},
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
async def running(client: Client, script: Script, task_queue: str | None = None):
    tq = task_queue or f"tq-{uuid.uuid4().hex[:8]}"
    try:
        async with stackhop_worker.build_worker(client, script.activities(), task_queue=tq):
            yield tq
    finally:  # never leave a stand-in blocked: the worker would wait for it on shutdown
        for ev in script.block.values():
            ev.set()


async def start(client: Client, plan: UpgradePlan, tq: str, **kw: Any) -> WorkflowHandle:
    return await client.start_workflow(
        UpgradeWorkflow.run,
        io.UpgradeInput(plan=plan, **kw),
        id=plan.workflow_id,
        task_queue=tq,
    )
