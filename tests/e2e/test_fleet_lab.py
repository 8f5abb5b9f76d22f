"""A 3-wave fleet on the labs: `stackhop fleet start examples/fleet/fleet.yaml --wait`, one worker
for all five lab clouds (lab/fleet.py), every cloud upgraded by its real Upgrade workflow.

Each cloud is its own namespace, Helm release, schema and served Keystone, so each upgrade runs the
real 2026.1 migrations on that cloud's schema only. The canary lab-a, then lab-b and lab-c at once,
succeed; lab-d (its 2026.1 pods never become Ready) is rolled back alone, its wave stops at its
threshold (max_failed 0), and lab-e, after it in that wave, is never touched.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest
import requests
from temporalio.client import Client
from temporalio.service import RPCError

import worker as stackhop_worker
from cliapp.fleets import outcome_of
from lab.fleet import FleetLab
from lab.k8s.cluster import KubeLab
from lab.openstack.manager import OpenStackLab
from model.fleet import load_fleet
from tests.cli.conftest import Cli
from tests.conftest import ROOT
from tests.e2e.writes import user_exists
from tests.openstack.helpers import issue_token

FLEET = ROOT / "examples" / "fleet" / "fleet.yaml"
OLD, NEW = "registry.lab/keystone:28.1.0", "registry.lab/keystone:29.1.0"
UPGRADED, INJECTED, UNTOUCHED = ("lab-a", "lab-b", "lab-c"), "lab-d", "lab-e"


@pytest.fixture(scope="module")
def fleet(k8s_lab: KubeLab, openstack_lab: OpenStackLab) -> Iterator[FleetLab]:
    lab = FleetLab(k8s_lab, openstack_lab)
    try:
        yield lab
    finally:
        lab.close()
        lab.delete_namespaces()


def create_user(lab: OpenStackLab) -> str:
    assert lab.keystone
    name = f"before-the-fleet-{uuid.uuid4().hex[:6]}"
    created = requests.post(
        f"{lab.keystone.url}/users",
        json={"user": {"name": name, "domain_id": "default"}},
        headers={"X-Auth-Token": issue_token(lab)},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    return name


async def test_a_three_wave_fleet_stops_at_its_threshold(
    client: Client, fleet: FleetLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = time.monotonic()
    await asyncio.to_thread(fleet.prepare, {INJECTED: "rollout"})
    prepared = time.monotonic() - started
    labs = fleet.labs
    baseline = await asyncio.to_thread(fleet.schema_version, UNTOUCHED)
    users = {c: await asyncio.to_thread(create_user, labs[c].openstack) for c in ("lab-b", INJECTED)}
    for key, value in fleet.worker_env().items():
        monkeypatch.setenv(key, value)
    tq = f"fleet-{uuid.uuid4().hex[:6]}"
    cli = Cli(client.service_client.config.target_host)
    async with stackhop_worker.build_worker(client, task_queue=tq):
        res = await cli("fleet", "start", str(FLEET), "--wait", tq=tq)
    ran = time.monotonic() - started - prepared
    print(f"fleet lab: {len(labs)} clouds prepared in {prepared:.1f}s, the fleet ran {ran:.1f}s")
    assert res.exit_code == 1, res.output

    plan = load_fleet(FLEET)
    outcome, report, message = await outcome_of(client.get_workflow_handle(plan.workflow_id))
    assert outcome == "failed" and report is not None, message
    assert "wave late stopped" in message, message
    by_cloud = {c.cloud: c for c in report.clouds}
    assert {c: (r.wave, r.outcome) for c, r in by_cloud.items()} == {
        "lab-a": ("canary", "succeeded"),
        "lab-b": ("early", "succeeded"),
        "lab-c": ("early", "succeeded"),
        "lab-d": ("late", "rolled-back"),
        "lab-e": ("late", "skipped"),
    }
    assert report.image_set == {"keystone": [NEW]}

    # upgraded: 2026.1 deployed and serving, on a schema the 2026.1 migrations changed (each its own)
    for cloud in UPGRADED:
        lab = labs[cloud]
        assert lab.deployed_image() == NEW and lab.served_release() == "29.1.0", cloud
        assert lab.token_works(), cloud
        assert [h["chart"] for h in lab.helm().history("keystone")] == ["keystone-2025.2.0", "keystone-2026.1.0"]
        assert await asyncio.to_thread(fleet.schema_version, cloud) != baseline, cloud
    # rolled back: 2025.2 again (images only: the expand stays), with the data it had
    lab = labs[INJECTED]
    assert lab.deployed_image() == OLD and lab.served_release() == "28.1.0" and lab.token_works()
    assert [h["status"] for h in lab.helm().history("keystone")] == ["superseded", "superseded", "deployed"]
    assert await asyncio.to_thread(user_exists, lab.openstack, users[INJECTED])
    assert await asyncio.to_thread(user_exists, labs["lab-b"].openstack, users["lab-b"])
    assert not await asyncio.to_thread(user_exists, labs["lab-b"].openstack, users[INJECTED])  # its own DB
    # never started: no workflow, one Helm revision, the baseline schema, 2025.2 serving
    with pytest.raises(RPCError):
        await client.get_workflow_handle("upgrade/lab-e").describe()
    lab = labs[UNTOUCHED]
    assert lab.deployed_image() == OLD and lab.served_release() == "28.1.0"
    assert [h["revision"] for h in lab.helm().history("keystone")] == [1]
    assert await asyncio.to_thread(fleet.schema_version, UNTOUCHED) == baseline
