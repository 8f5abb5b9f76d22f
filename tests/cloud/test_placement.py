"""Placement's recipe steps against real placement 14.0.0 (2025.2) and 15.0.0 (2026.1).

Placement's upgrade is ``placement-manage db sync`` with the new release (its recipe's default
mode ``offline``: placement-api stopped for it; ``expand-contract``: run while the old release
serves), then ``db online_data_migrations`` (phase ``online``) once every placement-api runs the
new release, in rounds until it exits 0. Placement has no contract phase.
"""

from __future__ import annotations

import re
import urllib.request
import uuid
from collections.abc import Callable

import pytest

from lab.openstack.cloud import CloudLab
from tests.cloud.recipe_steps import alembic_versions, phase, served_releases, status_check, use_worker_env

OLD, NEW = "2025.2", "2026.1"
# placement's alembic head in both releases: 15.0.0 adds no revision to 14.0.0's
HEAD = "a082b8bb98d0"
MICROVERSION = {"OpenStack-API-Version": "placement 1.39"}  # newest both releases serve


def providers(cloud: CloudLab) -> dict[str, dict[str, object]]:
    """Every resource provider as the API (through the proxy) returns it, by name."""
    conn = cloud.connect()
    response = conn.placement.get("/resource_providers", headers=MICROVERSION)
    assert response.status_code == 200, response.text
    return {rp["name"]: rp for rp in response.json()["resource_providers"]}


def create_provider(cloud: CloudLab, name: str) -> str:
    conn = cloud.connect()
    response = conn.placement.post("/resource_providers", json={"name": name}, headers=MICROVERSION)
    assert response.status_code == 200, response.text
    rp_uuid: str = response.json()["uuid"]
    return rp_uuid


def test_db_sync_while_2025_2_serves_then_2026_1_serves(
    cloud_at: Callable[..., CloudLab], monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud = cloud_at("placement")
    use_worker_env(cloud, monkeypatch)
    created = create_provider(cloud, "before-upgrade")

    check = status_check(cloud, "placement", NEW)
    assert (check.status, check.details["exit_code"]) == ("pass", 0)
    assert "15.0.0" in " ".join(check.details["command"])  # the target release's placement-status

    assert alembic_versions(cloud, "placement") == {HEAD}
    expanded = phase(cloud, "placement", "expand", NEW)
    assert expanded.state == "done" and expanded.command[-2:] == ["db", "sync"]
    assert "15.0.0" in " ".join(expanded.command)
    assert alembic_versions(cloud, "placement") == {HEAD}  # 15.0.0 brings no revision
    # the old release served during the sync and still answers on the synced schema
    assert served_releases(cloud, "placement") == {OLD}
    assert providers(cloud)["before-upgrade"]["uuid"] == created
    assert create_provider(cloud, "during-upgrade")

    cloud.serve("placement", NEW)
    assert served_releases(cloud, "placement") == {NEW}
    # nova-compute's own provider (named by its host) comes and goes with its periodic report
    assert set(providers(cloud)) - set(cloud.hosts) == {"before-upgrade", "during-upgrade"}

    # a database 2025.2 wrote has nothing to migrate: one round, exit 0
    migrated = phase(cloud, "placement", "online", NEW)
    assert (migrated.state, migrated.exit_code, migrated.rounds) == ("done", 0, 1)
    assert phase(cloud, "placement", "contract", NEW).state == "not-applicable"


def test_offline_db_sync_with_placement_api_stopped(
    cloud_at: Callable[..., CloudLab], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recipe's default mode: placement-api quiesced, ``db sync`` of the target, the target
    serves, then the online data migrations."""
    cloud = cloud_at("placement")
    use_worker_env(cloud, monkeypatch)
    create_provider(cloud, "before-offline")
    assert status_check(cloud, "placement", NEW).status == "pass"

    cloud.stop_service("placement")
    assert served_releases(cloud, "placement") == set()
    with pytest.raises(OSError):  # no placement pod: the proxy refuses, as a Service without endpoints
        urllib.request.urlopen(cloud.endpoints["placement"], timeout=5)
    synced = phase(cloud, "placement", "offline", NEW, mode="offline")
    assert synced.state == "done" and synced.command[-2:] == ["db", "sync"] and "15.0.0" in " ".join(synced.command)
    assert alembic_versions(cloud, "placement") == {HEAD}

    cloud.serve("placement", NEW)
    assert served_releases(cloud, "placement") == {NEW}
    assert "before-offline" in providers(cloud)
    assert phase(cloud, "placement", "online", NEW, mode="offline").state == "done"


def seed_rows_online_migrations_fix(cloud: CloudLab) -> tuple[list[str], list[str]]:
    """Rows as releases before Stein (placement still in nova) left them: resource providers
    without a root provider id, allocations whose consumer has no consumers record. Returns
    (provider uuids, consumer uuids)."""
    assert cloud.mariadb
    rp_uuids = [str(uuid.uuid4()) for _ in range(3)]
    consumers = [str(uuid.uuid4()) for _ in range(2)]
    rows = ", ".join(f"('{u}', 'legacy-{i}', 0, NOW())" for i, u in enumerate(rp_uuids))
    cloud.mariadb.sql(f"INSERT INTO resource_providers (uuid, name, generation, created_at) VALUES {rows}", "placement")
    rp_id = cloud.mariadb.sql(f"SELECT id FROM resource_providers WHERE uuid = '{rp_uuids[0]}'", "placement").strip()
    # VCPU (resource class 0) and MEMORY_MB (1): the first consumer holds two allocations
    allocations = [(consumers[0], 0, 2), (consumers[0], 1, 512), (consumers[1], 0, 1)]
    values = ", ".join(f"({rp_id}, '{c}', {rc}, {used}, NOW())" for c, rc, used in allocations)
    cloud.mariadb.sql(
        "INSERT INTO allocations (resource_provider_id, consumer_id, resource_class_id, used, created_at) "
        f"VALUES {values}",
        "placement",
    )
    return rp_uuids, consumers


def count(cloud: CloudLab, sql: str) -> int:
    assert cloud.mariadb
    return int(cloud.mariadb.sql(sql, "placement").strip())


def test_online_data_migrations_more_to_do_then_done(
    cloud_at: Callable[..., CloudLab], monkeypatch: pytest.MonkeyPatch
) -> None:
    """2025.2 → 2026.1 has nothing to migrate: placement's two online migrations
    (``set_root_provider_ids``, ``create_incomplete_consumers``) date from Stein and a database
    14.0.0 wrote has no row they fix. The test seeds rows in the state they fix (providers with a
    NULL ``root_provider_id``, allocations without a consumer record), as an old cloud's database
    carries them, and runs the recipe's steps over them."""
    cloud = cloud_at("placement")
    use_worker_env(cloud, monkeypatch)
    rp_uuids, consumers = seed_rows_online_migrations_fix(cloud)
    null_roots = "SELECT COUNT(*) FROM resource_providers WHERE root_provider_id IS NULL"
    missing = (
        "SELECT COUNT(DISTINCT a.consumer_id) FROM allocations a "
        "LEFT JOIN consumers c ON a.consumer_id = c.uuid WHERE c.id IS NULL"
    )
    assert (count(cloud, null_roots), count(cloud, missing)) == (3, 2)

    # the target release's status check sees the rows and blocks the roll
    check = status_check(cloud, "placement", NEW)
    assert (check.status, check.details["exit_code"], check.details["blocking"]) == ("fail", 2, True)
    assert "root provider id" in check.details["output"]

    assert phase(cloud, "placement", "expand", NEW).state == "done"
    cloud.serve("placement", NEW)
    migrated = phase(cloud, "placement", "online", NEW)
    # round 1 migrated rows and exited 1 ("more to do"), round 2 found nothing and exited 0
    assert (migrated.state, migrated.exit_code, migrated.rounds) == ("done", 0, 2)
    assert "step=1 round=1 exit=1" in migrated.output_tail
    assert "step=1 round=2 exit=0" in migrated.output_tail
    done = {
        name: (int(found), int(rows))
        for found, name, rows in re.findall(r"(\d+) rows matched query (\w+), (\d+) migrated", migrated.output_tail)
    }
    assert done == {"set_root_provider_ids": (3, 3), "create_incomplete_consumers": (2, 2)}
    assert (count(cloud, null_roots), count(cloud, missing)) == (0, 0)

    # placement 15.0.0 serves the fixed rows: each legacy provider is its own root
    listed = providers(cloud)
    assert {listed[f"legacy-{i}"]["root_provider_uuid"] for i in range(3)} == {
        listed[f"legacy-{i}"]["uuid"] for i in range(3)
    }
    assert set(rp_uuids) == {listed[f"legacy-{i}"]["uuid"] for i in range(3)}
    conn = cloud.connect()
    for consumer in consumers:
        response = conn.placement.get(f"/allocations/{consumer}", headers=MICROVERSION)
        assert response.status_code == 200 and response.json()["consumer_generation"] is not None
    assert status_check(cloud, "placement", NEW).status == "pass"
