"""Glance's recipe steps against real glance 31.1.0 (2025.2) and 32.0.0 (2026.1).

glance-manage's phases: ``db check`` (exit 0 up to date, 3 expand, 4 migrate, 5 contract),
``db expand`` / ``migrate`` / ``contract`` (the rolling path, which glance's docs still call
experimental and unsupported in production) and ``db sync`` (all three offline: the recipe's mode).

Glance's last schema revisions are 2024.1's, so 2025.2 → 2026.1 changes no revision (the offline
recipe on that hop); expand/migrate/contract run from the schema a 2023.1/2023.2 glance left
(``2023_1_contract01``), where they do work while 2025.2 serves.
Glance has no data migration for 2026.1, so ``db check`` never exits 4 (migrate needed) here.
"""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Callable

import pytest

from lab.openstack.cloud import CloudLab
from tests.cloud.recipe_steps import alembic_versions, phase, served_releases, status_check, use_worker_env

OLD, NEW = "2025.2", "2026.1"
HEAD = "2024_1_contract01"  # glance's head in 31.1.0 and 32.0.0
OLDER = "2023_1_contract01"  # what glance 2023.1 and 2023.2 left
EXPANDED = {OLDER, "2024_1_expand01"}  # after 32.0.0's expand: the expand branch moved on


def upload(cloud: CloudLab, name: str, data: bytes) -> str:
    conn = cloud.connect()
    image = conn.image.create_image(
        name=name, data=data, disk_format="raw", container_format="bare", allow_duplicates=True
    )
    image_id: str = image.id
    return image_id


def download(cloud: CloudLab, image_id: str) -> bytes:
    conn = cloud.connect()
    return b"".join(conn.image.download_image(image_id, stream=True).iter_content(65536))


def image_names(cloud: CloudLab) -> set[str]:
    conn = cloud.connect()
    return {image.name for image in conn.image.images()}


def tables(cloud: CloudLab) -> set[str]:
    assert cloud.mariadb
    return set(cloud.mariadb.sql("SHOW TABLES", "glance").split())


def at_2023_schema(cloud: CloudLab) -> None:
    """The glance database as a 2023.1/2023.2 glance left it: every revision up to
    ``2023_1_contract01`` (the scripts that release ran), then 2025.2 serving on it."""
    assert cloud.mariadb
    cloud.stop_service("glance")
    cloud.mariadb.sql("DROP DATABASE glance; CREATE DATABASE glance CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
    made = cloud.manage("glance", OLD, "db", "upgrade", "--version", OLDER)
    assert made.returncode == 0, made.stdout + made.stderr
    assert alembic_versions(cloud, "glance") == {OLDER}
    cloud.serve("glance", OLD)


def test_2025_2_to_2026_1_offline_sync_changes_no_revision(
    cloud_at: Callable[..., CloudLab], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recipe's mode on the real hop: the target's status check and ``db check`` first,
    glance-api quiesced, ``db sync`` of the target (nothing to do: 32.0.0 adds no revision), then
    2026.1 serves the images 2025.2 stored."""
    cloud = cloud_at("glance")
    use_worker_env(cloud, monkeypatch)
    data = os.urandom(4096)
    image = upload(cloud, "before-upgrade", data)

    check = status_check(cloud, "glance", NEW)
    assert (check.status, check.details["exit_code"]) == ("pass", 0)
    assert "32.0.0" in " ".join(check.details["command"])  # the target release's glance-status
    before = phase(cloud, "glance", "check", NEW, mode="offline")
    assert (before.exit_code, before.state) == (0, "up-to-date")
    assert alembic_versions(cloud, "glance") == {HEAD}

    cloud.stop_service("glance")
    assert served_releases(cloud, "glance") == set()
    with pytest.raises(OSError):  # no glance pod: the proxy refuses, as a Service without endpoints
        urllib.request.urlopen(cloud.endpoints["glance"], timeout=5)
    synced = phase(cloud, "glance", "offline", NEW, mode="offline")
    assert synced.state == "done" and synced.command[-2:] == ["db", "sync"]
    assert "Database is up to date" in synced.output_tail
    assert alembic_versions(cloud, "glance") == {HEAD}

    cloud.serve("glance", NEW)
    assert served_releases(cloud, "glance") == {NEW}
    assert download(cloud, image) == data  # the file store is shared by both releases
    after = phase(cloud, "glance", "check", NEW, mode="offline")
    assert (after.exit_code, after.state) == (0, "up-to-date")


def test_expand_migrate_contract_from_the_2023_schema_while_2025_2_serves(
    cloud_at: Callable[..., CloudLab], monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud = cloud_at("glance")
    use_worker_env(cloud, monkeypatch)
    at_2023_schema(cloud)
    data = os.urandom(2048)
    image = upload(cloud, "on-2023-schema", data)
    assert "cached_images" not in tables(cloud)

    check = phase(cloud, "glance", "check", NEW)
    assert (check.exit_code, check.state) == (3, "expand-needed")

    expanded = phase(cloud, "glance", "expand", NEW)
    assert expanded.state == "done" and expanded.command[-2:] == ["db", "expand"]
    assert alembic_versions(cloud, "glance") == EXPANDED
    assert {"cached_images", "node_reference"} <= tables(cloud)  # 2024.1's cache tables
    assert served_releases(cloud, "glance") == {OLD}
    assert download(cloud, image) == data  # 2025.2 serves on the expanded schema
    upload(cloud, "during-expand", b"x")

    # no data migration pending for 2026.1: check goes straight to contract (5), never 4
    between = phase(cloud, "glance", "check", NEW)
    assert (between.exit_code, between.state) == (5, "contract-needed")
    migrated = phase(cloud, "glance", "migrate", NEW)
    assert migrated.state == "done" and "No migration needed" in migrated.output_tail

    cloud.serve("glance", NEW)
    assert served_releases(cloud, "glance") == {NEW}
    contracted = phase(cloud, "glance", "contract", NEW)
    assert contracted.state == "done" and contracted.command[-2:] == ["db", "contract"]
    assert alembic_versions(cloud, "glance") == {HEAD}
    final = phase(cloud, "glance", "check", NEW)
    assert (final.exit_code, final.state) == (0, "up-to-date")
    assert download(cloud, image) == data
    assert {"on-2023-schema", "during-expand"} <= image_names(cloud)
