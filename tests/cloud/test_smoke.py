"""What the cloud holds across an upgrade (lab/openstack/smoke.py) and the tempest selections of the
whole-cloud plan (lab/openstack/tempest_ws.py), on the direct-mode cloud lab at 2025.2.

The seed's after-checks pass on an untouched cloud and each one fails when what it guards is
broken: a server deleted, stopped or recorded on another host, the image's data changed in the
file store, the network deleted. The tempest checks run through ``tempest.run`` (the activity the
workflow runs) with the worker environment the cloud gives; the compute selection is asserted test
by test, so a regex that selects nothing (or less) fails.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from activities import tempest
from lab.openstack import procs, smoke, tempest_ws
from lab.openstack.cloud import ADMIN_CLOUD, CloudLab
from model.io import CheckInput, TempestResult
from model.plan import TempestCheck
from tests.cloud.recipe_steps import use_worker_env
from tests.openstack.helpers import run

SERVICES = ("keystone", "glance", "neutron", "nova")

#: what COMPUTE_REGEX must run (tempest 47.0.0): flavors, keypairs, servers created/listed/shown/deleted
COMPUTE_PASSED = sorted(
    [
        *(
            f"tempest.api.compute.flavors.test_flavors.FlavorsV2TestJSON.{name}"
            for name in (
                "test_get_flavor",
                "test_list_flavors",
                "test_list_flavors_detailed_filter_by_min_disk",
                "test_list_flavors_detailed_filter_by_min_ram",
                "test_list_flavors_detailed_limit_results",
                "test_list_flavors_detailed_using_marker",
                "test_list_flavors_filter_by_min_disk",
                "test_list_flavors_filter_by_min_ram",
                "test_list_flavors_limit_results",
                "test_list_flavors_using_marker",
                "test_list_flavors_with_detail",
            )
        ),
        *(
            f"tempest.api.compute.keypairs.test_keypairs_v22.KeyPairsV22TestJSON.{name}"
            for name in (
                "test_get_keypair_detail",
                "test_keypair_create_delete",
                "test_keypair_create_with_pub_key",
                "test_keypairs_create_list_delete",
                "test_keypairsv22_create_list_show",
                "test_keypairsv22_create_list_show_with_type",
            )
        ),
        *(
            f"tempest.api.compute.servers.test_create_server.ServersTestJSON.{name}"
            for name in ("test_list_servers", "test_list_servers_with_detail", "test_verify_server_details")
        ),
        *(
            f"tempest.api.compute.servers.test_delete_server.DeleteServersTestJSON.{name}"
            for name in ("test_delete_active_server", "test_delete_server_while_in_building_state")
        ),
    ]
)
#: skipped by the lab's tempest.conf ([validation] run_validation = false: no guest to ssh into)
COMPUTE_SKIPPED = sorted(
    f"tempest.api.compute.servers.test_create_server.ServersTestJSON.{name}"
    for name in ("test_host_name_is_same_as_server_name", "test_verify_created_server_vcpus")
)


def serving(cloud: CloudLab, *services: str) -> CloudLab:
    """The services serving at the bootstrapped release with every pod ready; only a service that
    is not (an earlier test stopped it, or left another release) is reset, the others are kept."""
    stale = []
    for service in services:
        pods = cloud.pods_of(service)
        fine = (
            bool(pods)
            and all(p.release == cloud.release and procs.alive(p.pid) for p in pods.values())
            and all(cloud.pod_ready(name) for name in pods)
        )
        if not fine:
            stale.append(service)
    if stale:
        cloud.reset(stale)
    return cloud


def ran(result: TempestResult, statuses: set[str]) -> list[str]:
    """Test ids of the JUnit file with the given outcome ("passed", "failure", "skipped"), the
    ``[id-…]`` attribute suffix dropped."""
    cases = ET.parse(result.junit_path).getroot().iter("testcase")
    out = []
    for case in cases:
        outcome = next((child.tag for child in case), "passed")
        if outcome in statuses:
            out.append(case.get("id", "").split("[")[0])
    return sorted(out)


# --- seed and after-checks --------------------------------------------------------------------------
def test_seed_then_after_checks_pass_and_each_check_fails_on_what_it_guards(cloud: CloudLab, tmp_path: Path) -> None:
    cloud = serving(cloud, *SERVICES)
    conn = cloud.connect()
    seeded = smoke.seed(conn)
    try:
        assert [s.host for s in seeded.servers] == cloud.hosts  # one per nova-compute host
        assert len(seeded.image_checksum) == 32 and seeded.image_hash_algo == "sha512"
        seeded = smoke.Seeded.load(seeded.save(tmp_path / "seeded.json"))  # what a demo keeps between steps
        assert smoke.after(conn, seeded) == []
        for server in seeded.servers:  # no ports: networks "none"
            assert list(conn.network.ports(device_id=server.id)) == []
            assert conn.compute.get_server(server.id).addresses == {}
        assert list(conn.network.ports(network_id=seeded.network_id)) == []

        first = seeded.servers[0]
        conn.compute.stop_server(first.id)
        conn.compute.wait_for_server(conn.compute.get_server(first.id), status="SHUTOFF", interval=1, wait=60)
        assert smoke.after(conn, seeded) == [f"server {first.name} ({first.id}) is SHUTOFF, not ACTIVE"]
        conn.compute.start_server(first.id)
        conn.compute.wait_for_server(conn.compute.get_server(first.id), status="ACTIVE", interval=1, wait=60)
        assert smoke.after(conn, seeded) == []

        moved = smoke.Seeded.from_dict({**seeded.to_dict(), "servers": [{**vars(first), "host": "lab-node-9"}]})
        assert smoke.after(conn, moved) == [
            f"server {first.name} ({first.id}) runs on {first.host}, seeded on lab-node-9"
        ]

        stored = cloud.base / "glance" / "stores" / "images" / seeded.image_id  # glance's file store
        original = stored.read_bytes()
        stored.write_bytes(bytes(b ^ 0xFF for b in original[:16]) + original[16:])  # same size, other data
        problems = smoke.after(conn, seeded)
        assert len(problems) == 2 and all(p.startswith(f"image {seeded.image_name}") for p in problems), problems
        assert "md5" in problems[0] and "sha512" in problems[1], problems
        stored.write_bytes(original)
        assert smoke.after(conn, seeded) == []

        conn.network.delete_network(seeded.network_id)
        doomed = conn.compute.get_server(first.id)  # read before the delete: the fake driver's is quick
        conn.compute.delete_server(doomed)
        conn.compute.wait_for_delete(doomed, interval=1, wait=60)
        assert smoke.after(conn, seeded) == [
            f"server {first.name} ({first.id}) is gone",
            f"network {seeded.network_name} ({seeded.network_id}) is gone",
        ]
    finally:
        smoke.remove(conn, seeded)
        conn.close()


# --- tempest ----------------------------------------------------------------------------------------
@pytest.fixture
def tempest_env(cloud: CloudLab, monkeypatch: pytest.MonkeyPatch) -> CloudLab:
    """Every service serving at 2025.2, the cloud's tempest workspace written (its image and flavors
    ensured: a reset of glance or nova since the last test may have dropped them), the worker's
    environment set."""
    serving(cloud, *SERVICES)
    cloud.write_tempest_workspace()
    use_worker_env(cloud, monkeypatch)
    return cloud


def tempest_run(service: str) -> tuple[TempestResult, float]:
    check = TempestCheck(kind="tempest", regex=tempest_ws.CLOUD_REGEXES[service], concurrency=2)
    started = time.monotonic()
    result = run(tempest.run_tempest, CheckInput(service=service, cloud=ADMIN_CLOUD, check=check))
    return result, time.monotonic() - started


@pytest.mark.parametrize("service", ["keystone", "glance", "neutron"])
def test_tempest_smoke_passes_on_the_cloud_at_2025_2(tempest_env: CloudLab, service: str) -> None:
    result, seconds = tempest_run(service)
    assert result.status == "pass", (result.message, result.details)
    assert result.failed == 0 and result.passed > 0
    area = {"keystone": "identity", "glance": "image", "neutron": "network"}[service]
    assert all(f"tempest.api.{area}." in t for t in ran(result, {"passed", "skipped"}))  # skips: "setUpClass (…)"
    print(f"tempest {service}: {result.passed} passed, {result.skipped} skipped in {seconds:.1f} s")


def test_tempest_compute_selection_runs_flavors_keypairs_and_server_crud(tempest_env: CloudLab) -> None:
    conn = tempest_env.connect()
    servers_before = {s.id for s in conn.compute.servers(all_projects=True)}
    result, seconds = tempest_run("nova")
    assert result.status == "pass", (result.message, result.details)
    assert ran(result, {"passed"}) == COMPUTE_PASSED
    assert ran(result, {"skipped"}) == COMPUTE_SKIPPED
    assert result.failed == 0
    # tempest deleted what it created: no server left behind
    assert {s.id for s in conn.compute.servers(all_projects=True)} == servers_before
    conn.close()
    print(f"tempest nova: {result.passed} passed, {result.skipped} skipped in {seconds:.1f} s")
