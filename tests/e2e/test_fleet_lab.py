"""The lab fleet (lab/fleet.py, examples/fleet/): Keystone clouds side by side on the session's
labs, each upgraded through the real Upgrade workflow by one worker for all of them.

Each cloud is its own namespace, Helm release, schema and served Keystone, so an upgrade runs the
real 2026.1 migrations on that cloud's schema only; the cloud with an injected failure (its 2026.1
pods never become Ready) is rolled back alone while the others upgrade.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest
from temporalio.client import Client

import worker as stackhop_worker
from cliapp.render import outcome_of
from lab.fleet import FleetLab
from lab.k8s.cluster import KubeLab
from lab.openstack.manager import OpenStackLab
from model import io
from model.loading import load_plan
from tests.conftest import ROOT
from workflows.upgrade import UpgradeWorkflow

PLANS = ROOT / "examples" / "fleet"
UPGRADE_TIMEOUT = 300
OLD, NEW = "registry.lab/keystone:28.1.0", "registry.lab/keystone:29.1.0"


@pytest.fixture(scope="module")
def fleet(k8s_lab: KubeLab, openstack_lab: OpenStackLab) -> Iterator[FleetLab]:
    lab = FleetLab(k8s_lab, openstack_lab)
    try:
        yield lab
    finally:
        lab.close()
        lab.delete_namespaces()


async def upgrade(client: Client, cloud: str, task_queue: str) -> tuple[str, io.UpgradeReport | None, str]:
    plan_file = PLANS / f"{cloud}.yaml"
    plan = load_plan(plan_file)
    handle = await client.start_workflow(
        UpgradeWorkflow.run,
        io.UpgradeInput(plan=plan, plan_file=str(plan_file)),
        id=plan.workflow_id,
        task_queue=task_queue,
    )
    return await asyncio.wait_for(outcome_of(handle), UPGRADE_TIMEOUT)


async def test_lab_clouds_upgrade_alone_each_on_its_own_keystone(
    client: Client, fleet: FleetLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two clouds upgraded at once by one worker: lab-a to 2026.1, lab-d (its 2026.1 pods never
    become Ready) rolled back to 2025.2 with its data; lab-b, never upgraded, untouched."""
    clouds = ("lab-a", "lab-b", "lab-d")
    fleet.clouds = clouds
    started = time.monotonic()
    await asyncio.to_thread(fleet.prepare, {"lab-d": "rollout"})
    prepared = time.monotonic() - started
    baseline = await asyncio.to_thread(fleet.schema_version, "lab-b")
    for key, value in fleet.worker_env().items():
        monkeypatch.setenv(key, value)
    tq = f"fleet-{uuid.uuid4().hex[:6]}"
    async with stackhop_worker.build_worker(client, task_queue=tq):
        (a, _, a_msg), (d, d_report, d_msg) = await asyncio.gather(
            upgrade(client, "lab-a", tq), upgrade(client, "lab-d", tq)
        )
    print(f"prepared {len(clouds)} clouds in {prepared:.1f}s, upgrades in {time.monotonic() - started - prepared:.1f}s")
    assert a == "succeeded", a_msg
    assert d == "rolled-back", d_msg
    assert d_report is not None and [s.step for s in d_report.services[0].steps if s.status == "failed"] == ["rollout"]
    labs = fleet.labs
    assert labs["lab-a"].deployed_image() == NEW and labs["lab-a"].served_release() == "29.1.0"
    assert labs["lab-d"].deployed_image() == OLD and labs["lab-d"].served_release() == "28.1.0"
    assert labs["lab-b"].deployed_image() == OLD and labs["lab-b"].served_release() == "28.1.0"
    assert all(labs[c].token_works() for c in clouds)
    # the migrations ran on lab-a's schema (expand and contract) and lab-d's (expand only), not lab-b's
    versions = {c: await asyncio.to_thread(fleet.schema_version, c) for c in clouds}
    assert versions["lab-b"] == baseline and versions["lab-a"] != baseline and versions["lab-d"] != baseline
