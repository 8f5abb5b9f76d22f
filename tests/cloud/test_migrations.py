"""Live and cold migration on the direct cloud lab: nova's fake driver (``LabFakeDriver``) between the
computes of two hosts, over RabbitMQ, as the data plane's drain uses them.

The session's ``cloud`` (lab/openstack/cloud_plugin.py) runs nova-compute on ``lab-node-0`` and
``lab-node-1`` (availability zones az-1 and az-2, one host aggregate each). Servers seeded with
``availability_zone="nova:<host>"`` carry no zone in their request spec, so nova's scheduler may move
them to any host.
"""

from __future__ import annotations

import time
from typing import Any

from lab.openstack import smoke
from lab.openstack.cloud import CloudLab
from lab.openstack.cloud_plugin import DIRECT_HOSTS
from lab.openstack.services import nova
from tests.waiting import eventually_sync


def migrations(conn: Any, server: str, kind: str) -> list[Any]:
    """nova's migration records of ``server`` of one type (live-migration, migration), oldest first."""
    found = [m for m in conn.compute.migrations() if m.server_id == server and m.migration_type == kind]
    return sorted(found, key=lambda m: m.created_at)


def host_of(conn: Any, server: str) -> str:
    host: str = conn.compute.get_server(server).compute_host
    return host


def test_zones_and_small_computes(cloud: CloudLab) -> None:
    """Each host in its availability zone's aggregate; placement's inventory is the small fake one."""
    conn = cloud.connect()
    try:
        aggregates = {a.name: (a.availability_zone, sorted(a.hosts or [])) for a in conn.compute.aggregates()}
        assert aggregates == {"az-1": ("az-1", [DIRECT_HOSTS[0]]), "az-2": ("az-2", [DIRECT_HOSTS[1]])}
        assert cloud.ensure_zones() == {"az-1": [DIRECT_HOSTS[0]], "az-2": [DIRECT_HOSTS[1]]}  # idempotent
        assert len(list(conn.compute.aggregates())) == 2
        zones = {s.host: s.availability_zone for s in conn.compute.services(binary="nova-compute")}
        assert zones == cloud.zones() == {DIRECT_HOSTS[0]: "az-1", DIRECT_HOSTS[1]: "az-2"}
        provider = next(conn.placement.resource_providers(name=DIRECT_HOSTS[0]))
        inventory = {i.resource_class: i for i in conn.placement.resource_provider_inventories(provider)}
        assert inventory["VCPU"].total == nova.FAKE_VCPUS
        assert inventory["MEMORY_MB"].total == nova.FAKE_MEMORY_MB
        assert inventory["MEMORY_MB"].reserved == nova.RESERVED_HOST_MEMORY_MB
        assert inventory["DISK_GB"].total == nova.FAKE_LOCAL_GB
    finally:
        conn.close()


def test_live_then_cold_migration_between_two_computes(cloud: CloudLab) -> None:
    """A server live-migrated with no host named lands on the other compute with a ``completed``
    migration record; cold-migrated back and confirmed, its record is ``confirmed``; the cell database
    (``servers_on``) follows it each time."""
    conn = cloud.connect()
    seeded = smoke.seed(conn)
    try:
        first, second = DIRECT_HOSTS
        (moving,) = [s.id for s in seeded.servers if s.host == first]
        (staying,) = [s.id for s in seeded.servers if s.host == second]
        assert cloud.servers_on(first) == [moving]

        started = time.monotonic()
        conn.compute.live_migrate_server(moving, host=None, block_migration="auto")
        live = eventually_sync(
            lambda: [m for m in migrations(conn, moving, "live-migration") if m.status == "completed"],
            within=120,
            what="a completed live migration",
        )
        eventually_sync(lambda: conn.compute.get_server(moving).status == "ACTIVE", within=60, what="ACTIVE")
        live_s = time.monotonic() - started
        assert (live[0].source_compute, live[0].dest_compute) == (first, second)
        assert host_of(conn, moving) == second
        assert cloud.servers_on(first) == []
        assert sorted(cloud.servers_on(second)) == sorted([moving, staying])

        started = time.monotonic()
        conn.compute.migrate_server(moving)
        eventually_sync(
            lambda: conn.compute.get_server(moving).status == "VERIFY_RESIZE", within=120, what="VERIFY_RESIZE"
        )
        conn.compute.confirm_server_resize(moving)
        cold = eventually_sync(
            lambda: [m for m in migrations(conn, moving, "migration") if m.status == "confirmed"],
            within=120,
            what="a confirmed cold migration",
        )
        eventually_sync(lambda: conn.compute.get_server(moving).status == "ACTIVE", within=60, what="ACTIVE")
        cold_s = time.monotonic() - started
        assert (cold[0].source_compute, cold[0].dest_compute) == (second, first)
        assert host_of(conn, moving) == first
        assert cloud.servers_on(first) == [moving] and cloud.servers_on(second) == [staying]
        print(f"live migration {live_s:.1f} s, cold migration + confirm {cold_s:.1f} s")
    finally:
        smoke.remove(conn, seeded)
        conn.close()
