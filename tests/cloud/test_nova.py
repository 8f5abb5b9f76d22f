"""Nova's recipe steps against real nova 32.2.1 (2025.2) and 33.0.2 (2026.1) on the cloud lab.

Nova's upgrade (upstream's rolling-upgrade order): ``nova-status upgrade check`` with the target
release; ``nova-manage api_db sync`` then ``db sync`` (cell0 and every cell) with the target
release while the old one serves (the migration profile's ``expand``: nova has no contract phase);
conductor, scheduler and API roll to the new release while the computes stay on the old one, the
new services pinning their compute RPC to the oldest compute (``[upgrade_levels] compute =
auto``); every compute rolls; the services restart to lift the pin; then ``nova-manage db
online_data_migrations`` runs in rounds until it exits 0 — after it the old release cannot come
back. Nova's three databases (``nova_api``, ``nova_cell0``, ``nova``) are snapshotted, verified
and restored together.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from activities import database
from lab.openstack.cloud import CloudLab
from lab.openstack.services import nova
from model.io import RestoreInput, Snapshot, SnapshotInput, VerifyInput
from model.plan import Database
from tests.cloud.recipe_steps import alembic_versions, phase, served_releases, status_check, use_worker_env
from tests.openstack.helpers import run
from tests.waiting import eventually_sync

OLD, NEW = "2025.2", "2026.1"
DATABASES = ("nova_api", "nova_cell0", "nova")
DEPLOYMENTS = ("nova-api", "nova-conductor", "nova-scheduler")
PIN = re.compile(r"Automatically selected compute RPC version (\S+) from minimum service version (\d+)")


# --- what the tests read ---------------------------------------------------------------------------
def sql(cloud: CloudLab, query: str, db: str) -> str:
    assert cloud.mariadb
    return cloud.mariadb.sql(query, db).strip()


def schema_versions(cloud: CloudLab) -> dict[str, set[str]]:
    """alembic_version of every nova database (empty when the database has no schema)."""
    found: dict[str, set[str]] = {}
    for db in DATABASES:
        tables = sql(cloud, f"SHOW TABLES FROM `{db}` LIKE 'alembic_version'", db)
        found[db] = alembic_versions(cloud, db) if tables else set()
    return found


def pod_log(cloud: CloudLab, pod: str) -> str:
    """What the pod's process wrote since it started (a pod's log file is appended across starts;
    the cloud writes a header before each)."""
    text = (cloud.base / "nova" / "logs" / f"{pod}.log").read_text(errors="replace")
    return text.rsplit(f"===== {pod}:", 1)[-1]


def pins(cloud: CloudLab, pod: str) -> list[tuple[str, str]]:
    """(compute RPC version, minimum service version) of every pin the pod logged."""
    return PIN.findall(pod_log(cloud, pod))


def hypervisor_uptime(cloud: CloudLab) -> str:
    """GET /os-hypervisors/{id}/uptime (microversion 2.1): nova-api asks the compute over RPC, so
    the API process picks its compute RPC version; returns the uptime the compute's driver gave."""
    conn = cloud.connect()
    listed = conn.compute.get("/os-hypervisors", microversion="2.1")
    assert listed.status_code == 200, listed.text
    hypervisor = listed.json()["hypervisors"][0]["id"]
    response = conn.compute.get(f"/os-hypervisors/{hypervisor}/uptime", microversion="2.1")
    assert response.status_code == 200, response.text
    uptime: str = response.json()["hypervisor"]["uptime"]
    return uptime


def compute_services(cloud: CloudLab) -> dict[str, tuple[str, str]]:
    """host -> (state, status) of every nova-compute, as the API reports them."""
    conn = cloud.connect()
    return {s.host: (s.state, s.status) for s in conn.compute.services() if s.binary == "nova-compute"}


def wait_ready(cloud: CloudLab, pod: str, within: float = 240) -> None:
    eventually_sync(lambda: cloud.pod_ready(pod), within=within, what=f"{pod} ready")


def roll_deployments(cloud: CloudLab, release: str, suffix: str = "") -> None:
    """Start each Deployment's pod of ``release``, wait until it is ready, stop the others (a
    rolling update with surge); the computes are left as they are."""
    host = cloud.hosts[0]
    for workload in DEPLOYMENTS:
        pod = f"{workload}-{release}{suffix}"
        cloud.start_pod("nova", workload, release, pod, host)
        wait_ready(cloud, pod)
        for other, proc in list(cloud.pods_of("nova").items()):
            if proc.workload == workload and other != pod:
                cloud.stop_pod(other)


def roll_computes(cloud: CloudLab, release: str) -> None:
    """The DaemonSet's rolling update (maxUnavailable 1, no surge): per node, the old compute
    stops, then the new one starts on that node and becomes ready."""
    for host in cloud.hosts:
        for other, proc in list(cloud.pods_of("nova").items()):
            if proc.workload == "nova-compute" and proc.host == host:
                cloud.stop_pod(other)
        pod = f"nova-compute-{host}-{release}"
        cloud.start_pod("nova", "nova-compute", release, pod, host)
        wait_ready(cloud, pod)


# --- schema ----------------------------------------------------------------------------------------
def test_2026_1_syncs_keep_every_database_at_the_head_while_2025_2_serves(
    cloud_at: Callable[..., CloudLab], monkeypatch: pytest.MonkeyPatch
) -> None:
    """nova 33.0.2 adds no alembic revision to 32.2.1 (api head cdeec0c85668, main and cell0 head
    2903cd72dc14 in both): ``api_db sync`` and ``db sync`` with 2026.1 leave every schema version
    as 2025.2's bootstrap left it, and 2025.2 keeps serving on it."""
    cloud = cloud_at("nova")
    use_worker_env(cloud, monkeypatch)
    heads = {db: {nova.HEADS[db]} for db in DATABASES}
    assert schema_versions(cloud) == heads

    synced = phase(cloud, "nova", "expand", NEW)
    assert synced.state == "done" and synced.command[-2:] == ["api_db", "sync"]
    assert "33.0.2" in " ".join(synced.command)  # the target release's nova-manage
    assert "step=1 exit=0" in synced.output_tail and "step=2 exit=0" in synced.output_tail  # api_db, db sync
    assert schema_versions(cloud) == heads

    assert served_releases(cloud, "nova") == {OLD}
    assert compute_services(cloud) == {host: ("up", "enabled") for host in cloud.hosts}
    assert cloud.connect().compute.get("/flavors", microversion="2.1").status_code == 200


def test_db_sync_brings_cell0_to_the_head_with_the_cell(
    cloud_at: Callable[..., CloudLab], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``db sync`` syncs cell0 through its mapping in nova_api, not only ``[database]
    connection``: a cell0 left without a schema (dropped and recreated empty while nova is
    stopped) is at the head after the 2026.1 expand phase, the cell database untouched."""
    cloud = cloud_at("nova")
    use_worker_env(cloud, monkeypatch)
    cloud.stop_service("nova")
    sql(cloud, "DROP DATABASE nova_cell0; CREATE DATABASE nova_cell0 CHARACTER SET utf8mb4", "nova_api")
    before = schema_versions(cloud)
    assert before == {"nova_api": {nova.HEADS["nova_api"]}, "nova_cell0": set(), "nova": {nova.HEADS["nova"]}}

    assert phase(cloud, "nova", "expand", NEW).state == "done"
    assert schema_versions(cloud) == {db: {nova.HEADS[db]} for db in DATABASES}
    assert (
        int(sql(cloud, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'nova_cell0'", "nova"))
        > 100
    )


# --- status check ----------------------------------------------------------------------------------
def test_status_check_with_the_target_release_before_the_roll(
    cloud_at: Callable[..., CloudLab], monkeypatch: pytest.MonkeyPatch
) -> None:
    """nova-status of 2026.1 on the 2025.2 cloud passes every check (cells v2, placement, the
    oldest compute's version, the service user token); with the compute host unmapped (no
    ``discover_hosts`` after it started) it fails and blocks the roll."""
    cloud = cloud_at("nova")
    use_worker_env(cloud, monkeypatch)
    check = status_check(cloud, "nova", NEW)
    assert (check.status, check.details["exit_code"]) == ("pass", 0), check.details["output"]
    assert "33.0.2" in " ".join(check.details["command"])
    for name in ("Cells v2", "Placement API", "Older than N-1 computes", "Service User Token Configuration"):
        assert f"Check: {name}" in check.details["output"]
    assert served_releases(cloud, "nova") == {OLD}

    # the state of a compute that started but was never discovered: no host mapping, its compute
    # node not marked mapped
    sql(cloud, "DELETE FROM host_mappings", "nova_api")
    sql(cloud, "UPDATE compute_nodes SET mapped = 0", "nova")
    unmapped = status_check(cloud, "nova", NEW)
    assert (unmapped.status, unmapped.details["exit_code"], unmapped.details["blocking"]) == ("fail", 2, True)
    assert "No host mappings found but there are compute nodes" in unmapped.details["output"]

    mapped = cloud.manage("nova", OLD, "cell_v2", "discover_hosts")
    assert mapped.returncode == 0, mapped.stderr[-2000:]
    assert status_check(cloud, "nova", NEW).status == "pass"


# --- the RPC pin and the unpin restart -------------------------------------------------------------
def test_rpc_pin_while_a_compute_runs_2025_2_and_unpin_after_every_compute_and_a_restart(
    cloud_at: Callable[..., CloudLab], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``[upgrade_levels] compute = auto``, nova-api 2026.1 beside a 2025.2 compute logs
    ``Automatically selected compute RPC version 6.4 from minimum service version 70`` (2025.2's
    service version); after every compute runs 2026.1 it stays pinned (the version is cached in the
    process) until the restart, after which it logs 6.5 from 72."""
    cloud = cloud_at("nova")
    use_worker_env(cloud, monkeypatch)
    assert phase(cloud, "nova", "expand", NEW).state == "done"

    roll_deployments(cloud, NEW)
    api = f"nova-api-{NEW}"
    assert {p.release for p in cloud.pods_of("nova").values() if p.workload == "nova-compute"} == {OLD}
    assert hypervisor_uptime(cloud) == nova.FAKE_UPTIME  # the compute answered the API's RPC
    pinned = eventually_sync(lambda: pins(cloud, api), within=60, what="nova-api logs its compute RPC pin")
    assert pinned == [(nova.COMPUTE_RPC[OLD], str(nova.SERVICE_VERSIONS[OLD]))]

    roll_computes(cloud, NEW)
    assert served_releases(cloud, "nova") == {NEW}
    assert compute_services(cloud) == {host: ("up", "enabled") for host in cloud.hosts}
    assert hypervisor_uptime(cloud) == nova.FAKE_UPTIME
    assert pins(cloud, api) == pinned  # still pinned: the running API chose its version once

    roll_deployments(cloud, NEW, suffix="-unpinned")  # the unpin restart
    api = f"nova-api-{NEW}-unpinned"
    assert hypervisor_uptime(cloud) == nova.FAKE_UPTIME
    unpinned = eventually_sync(lambda: pins(cloud, api), within=60, what="the restarted nova-api logs its version")
    assert unpinned == [(nova.COMPUTE_RPC[NEW], str(nova.SERVICE_VERSIONS[NEW]))]


# --- online data migrations ------------------------------------------------------------------------
def seed_pre_pike_quota_limits(cloud: CloudLab) -> tuple[str, str]:
    """Quota limits where releases before Pike kept them: in the cell database (``quotas``,
    ``project_user_quotas``), which ``migrate_quota_limits_to_api_db`` moves to nova_api. The
    projects are real (nova-api checks a quota set's project in Keystone). Returns their ids."""
    conn = cloud.connect()
    admin, service = (conn.identity.find_project(name).id for name in ("admin", "service"))
    sql(
        cloud,
        "INSERT INTO quotas (created_at, deleted, project_id, resource, hard_limit) VALUES "
        f"(UTC_TIMESTAMP(), 0, '{admin}', 'instances', 5), (UTC_TIMESTAMP(), 0, '{admin}', 'cores', 9), "
        f"(UTC_TIMESTAMP(), 0, '{service}', 'ram', 1024);"
        "INSERT INTO project_user_quotas (created_at, deleted, project_id, user_id, resource, hard_limit) VALUES "
        f"(UTC_TIMESTAMP(), 0, '{admin}', 'u1', 'instances', 2), (UTC_TIMESTAMP(), 0, '{service}', 'u2', 'ram', 512)",
        "nova",
    )
    return admin, service


def test_online_data_migrations_more_to_do_then_done_after_every_service_runs_2026_1(
    cloud_at: Callable[..., CloudLab], monkeypatch: pytest.MonkeyPatch
) -> None:
    """2025.2 → 2026.1 has nothing to migrate: nova 33.0.2 lists the same online migrations as
    32.2.1 (the newest, ``populate_instance_compute_id``, dates from 2023.2), and a database 32.2.1
    wrote has no row they fix. The test seeds rows in the state one of them fixes — quota limits in
    the cell database, where releases before Pike kept them — and runs the recipe's step over them
    once every nova workload runs 2026.1."""
    cloud = cloud_at("nova")
    use_worker_env(cloud, monkeypatch)
    admin, service = seed_pre_pike_quota_limits(cloud)
    assert phase(cloud, "nova", "expand", NEW).state == "done"
    cloud.serve("nova", NEW)
    assert served_releases(cloud, "nova") == {NEW}

    migrated = phase(cloud, "nova", "migrate", NEW)
    # round 1 moved the rows and exited 1 ("more to do"); round 2 found nothing and exited 0
    assert (migrated.state, migrated.exit_code, migrated.rounds) == ("done", 0, 2)
    assert migrated.command[-4:] == ["db", "online_data_migrations", "--max-count", "1000"]
    assert "step=1 round=1 exit=1" in migrated.output_tail
    assert "step=1 round=2 exit=0" in migrated.output_tail
    counts = re.findall(r"\|\s+migrate_quota_limits_to_api_db\s+\|\s+(\d+)\s+\|\s+(\d+)\s+\|", migrated.output_tail)
    assert counts == [("5", "5"), ("0", "0")]  # (found, migrated) of round 1, then round 2

    # the migration soft-deletes what it moved out of the cell database
    assert sql(cloud, "SELECT COUNT(*) FROM quotas WHERE deleted = 0", "nova") == "0"
    assert sql(cloud, "SELECT COUNT(*) FROM project_user_quotas WHERE deleted = 0", "nova") == "0"
    assert sql(cloud, "SELECT project_id, resource, hard_limit FROM quotas ORDER BY id", "nova_api").splitlines() == [
        f"{admin}\tinstances\t5",
        f"{admin}\tcores\t9",
        f"{service}\tram\t1024",
    ]
    assert sql(cloud, "SELECT COUNT(*) FROM project_user_quotas", "nova_api") == "2"
    # nova-api 2026.1 serves the moved limits
    limits = cloud.connect().compute.get(f"/os-quota-sets/{admin}", microversion="2.1")
    assert limits.status_code == 200, limits.text
    assert (limits.json()["quota_set"]["instances"], limits.json()["quota_set"]["cores"]) == (5, 9)


# --- all three databases together ------------------------------------------------------------------
def test_snapshot_verify_restore_all_three_databases_together(
    cloud_at: Callable[..., CloudLab], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The database activities take one database per call; nova's recipe runs them for each of
    its three databases. Changes in each after the snapshot (a flavor in nova_api, a disabled
    compute service in the cell, a row in cell0) are gone after the restores, every checksum
    equals the snapshot's, and 2025.2 serves the restored cloud."""
    cloud = cloud_at("nova")
    use_worker_env(cloud, monkeypatch)
    dbs = {db: Database(name=db, snapshot_dir=str(tmp_path), users=["nova"]) for db in DATABASES}
    snaps: dict[str, Snapshot] = {
        db: run(database.snapshot, SnapshotInput(upgrade_id="nova-recipe", service="nova", database=dbs[db]))
        for db in DATABASES
    }
    for db in DATABASES:
        verified = run(database.verify_snapshot, VerifyInput(snapshot=snaps[db], database=dbs[db]))
        assert verified.ok, verified.message

    conn = cloud.connect()
    flavor = conn.compute.create_flavor(name="after-snapshot", ram=64, vcpus=1, disk=0)
    service = next(s for s in conn.compute.services() if s.binary == "nova-compute")
    conn.compute.disable_service(service)
    sql(cloud, "INSERT INTO tags (resource_id, tag) VALUES ('after-snapshot', 'x')", "nova_cell0")
    disabled = f"SELECT disabled FROM services WHERE `binary` = 'nova-compute' AND host = '{service.host}'"
    assert sql(cloud, disabled, "nova") == "1"

    cloud.stop_service("nova")  # the workflow quiesces the service before a restore
    for db in DATABASES:
        restored = run(database.restore, RestoreInput(snapshot=snaps[db], database=dbs[db]))
        assert restored.ok and restored.table_checksums == snaps[db].table_checksums

    assert sql(cloud, "SELECT COUNT(*) FROM flavors WHERE name = 'after-snapshot'", "nova_api") == "0"
    assert sql(cloud, "SELECT COUNT(*) FROM tags", "nova_cell0") == "0"
    cloud.serve("nova", OLD)
    assert conn.compute.find_flavor(flavor.id) is None
    assert compute_services(cloud) == {host: ("up", "enabled") for host in cloud.hosts}
