"""A 3-wave fleet on the labs: `stackhop fleet start examples/fleet/fleet.yaml --wait`, one worker
for all five lab clouds (lab/fleet.py), every cloud upgraded by its real Upgrade workflow.

Each cloud is its own namespace, Helm release, schema and served Keystone, so each upgrade runs the
real 2026.1 migrations on that cloud's schema only. The canary lab-a, then lab-b and lab-c at once,
succeed; lab-d (schema drift injected into its own schema: its expand fails half-way) is restored
from its snapshot alone, its wave stops at its threshold (max_failed 0), and lab-e, after it in
that wave, is never touched. Drift rather than pods that never become Ready (``inject="rollout"``,
which lab/fleet.py injects as well) because it fails in seconds, not after the 45 s progress
deadline: the fleet test must stay within its budget of `make test` (issue 15).
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
from cliapp.render import outcome_of as upgrade_outcome
from lab.fleet import CLOUDS, FleetLab
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


async def print_timeline(client: Client, prepared: float, ran: float) -> None:
    """Where the fleet's time went (for the README's figures; nothing is asserted on it)."""
    print(f"\nfleet lab: {len(CLOUDS)} clouds prepared in {prepared:.1f}s, the fleet ran {ran:.1f}s")
    fleet = await client.get_workflow_handle("fleet/lab").describe()
    for cloud in CLOUDS[:-1]:
        d = await client.get_workflow_handle(f"upgrade/{cloud}").describe()
        assert d.close_time is not None
        begin = (d.start_time - fleet.start_time).total_seconds()
        took = (d.close_time - d.start_time).total_seconds()
        print(f"  {cloud}: +{begin:.1f}s for {took:.1f}s ({d.status.name if d.status else '?'})")


async def test_a_three_wave_fleet_stops_at_its_threshold(
    client: Client, fleet: FleetLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = time.monotonic()
    await asyncio.to_thread(fleet.prepare, {INJECTED: "migration"})
    prepared = time.monotonic() - started
    labs = fleet.labs
    baseline = await asyncio.to_thread(fleet.schema_version, UNTOUCHED)
    untouched = labs[UNTOUCHED].openstack.keystone
    assert untouched is not None
    untouched_pid = untouched.pid
    follower = labs[UNTOUCHED].follower
    assert follower is not None
    untouched_switches = list(follower.switches)
    users = {c: await asyncio.to_thread(create_user, labs[c].openstack) for c in ("lab-b", INJECTED)}
    for key, value in fleet.worker_env().items():
        monkeypatch.setenv(key, value)
    tq = f"fleet-{uuid.uuid4().hex[:6]}"
    cli = Cli(client.service_client.config.target_host)
    async with stackhop_worker.build_worker(client, task_queue=tq):
        res = await cli("fleet", "start", str(FLEET), "--wait", tq=tq)
    assert res.exit_code == 1, res.output
    await print_timeline(client, prepared, time.monotonic() - started - prepared)

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
    # rolled back: its expand failed half-way on the drift injected into its schema alone, so its
    # snapshot was restored: 2025.2 again, on the baseline schema, with the data it had
    _, d_report, d_message = await upgrade_outcome(client.get_workflow_handle("upgrade/lab-d"))
    assert d_report is not None, d_message
    (svc,) = d_report.services
    failed = [(s.step, s.detail) for s in svc.steps if s.status == "failed"]
    assert [step for step, _ in failed] == ["expand"] and "Duplicate key name" in failed[0][1], failed
    assert svc.rollback and svc.rollback.kind == "restore" and svc.restore and svc.snapshot
    assert svc.restore.table_checksums == svc.snapshot.table_checksums
    lab = labs[INJECTED]
    assert lab.deployed_image() == OLD and lab.served_release() == "28.1.0" and lab.token_works()
    assert [h["chart"] for h in lab.helm().history("keystone")] == ["keystone-2025.2.0"] * 3  # quiesced, back
    assert await asyncio.to_thread(fleet.schema_version, INJECTED) == baseline
    assert await asyncio.to_thread(user_exists, lab.openstack, users[INJECTED])
    assert await asyncio.to_thread(user_exists, labs["lab-b"].openstack, users["lab-b"])
    assert not await asyncio.to_thread(user_exists, labs["lab-b"].openstack, users[INJECTED])  # its own DB
    # never started: no workflow, one Helm revision, the baseline schema, the same Keystone process
    with pytest.raises(RPCError):
        await client.get_workflow_handle("upgrade/lab-e").describe()
    lab = labs[UNTOUCHED]
    assert lab.deployed_image() == OLD and lab.served_release() == "28.1.0"
    assert [h["revision"] for h in lab.helm().history("keystone")] == [1]
    assert lab.openstack.keystone and lab.openstack.keystone.pid == untouched_pid and lab.follower
    assert lab.follower.switches == untouched_switches  # its lab controller never served another release
    assert await asyncio.to_thread(fleet.schema_version, UNTOUCHED) == baseline
