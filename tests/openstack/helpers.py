"""Small helpers for the OpenStack lab tests: plain HTTP against Keystone, the lab's own view of
table checksums (independent of the activities under test), and the models the activities take."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import openstack
import requests
from openstack.identity.v3._proxy import Proxy as IdentityV3  # the SDK exports the v3 proxy only here
from temporalio.testing import ActivityEnvironment

from lab.openstack.manager import ADMIN_CLOUD, OpenStackLab
from model.plan import Database, Migration

RELEASE_OLD, RELEASE_MID, RELEASE_NEW = "28.1.0", "29.1.0", "30.0.0"

In = TypeVar("In")
Out = TypeVar("Out")
KeystoneAt = Callable[[str], OpenStackLab]  # the keystone_at fixture: the lab serving that release


def run(fn: Callable[[In], Out], arg: In) -> Out:
    """Run an activity function in a real activity context (heartbeats, cancellation)."""
    result: Out = ActivityEnvironment().run(fn, arg)
    return result


def database(lab: OpenStackLab, **overrides: object) -> Database:
    assert lab.mariadb
    fields = {
        "name": "keystone",
        "defaults_file": str(lab.mariadb.defaults_file),
        "snapshot_dir": str(lab.base / "snapshots"),
        **overrides,
    }
    return Database(**fields)


def migration(lab: OpenStackLab) -> Migration:
    assert lab.keystone
    return Migration(mode="expand-contract", command=lab.keystone.manage_command("{version}"))


def issue_token(lab: OpenStackLab) -> str:
    """POST /v3/auth/tokens as the admin (project scope); returns the token, asserts 201."""
    assert lab.keystone
    body: dict[str, Any] = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": "admin", "domain": {"id": "default"}, "password": lab.keystone.admin_password}
                },
            },
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}},
        }
    }
    response = requests.post(f"{lab.keystone.url}/auth/tokens", json=body, timeout=30)
    assert response.status_code == 201, response.text
    return response.headers["X-Subject-Token"]


def validate_token(lab: OpenStackLab, token: str) -> int:
    """GET /v3/auth/tokens (the token validating itself): the HTTP status."""
    assert lab.keystone
    headers = {"X-Auth-Token": token, "X-Subject-Token": token}
    return requests.get(f"{lab.keystone.url}/auth/tokens", headers=headers, timeout=30).status_code


def table_checksums(lab: OpenStackLab, schema: str = "keystone") -> dict[str, str]:
    """CHECKSUM TABLE of every base table, computed by the lab (not by the activity under test)."""
    assert lab.mariadb
    tables = lab.mariadb.sql(
        f"SELECT table_name FROM information_schema.tables WHERE table_schema='{schema}' AND table_type='BASE TABLE'"
    ).split()
    rows = lab.mariadb.sql("CHECKSUM TABLE " + ", ".join(f"`{schema}`.`{t}`" for t in tables))
    return {line.split("\t")[0].split(".", 1)[1]: line.split("\t")[1] for line in rows.splitlines() if line}


def alembic_versions(lab: OpenStackLab) -> set[str]:
    assert lab.mariadb
    return set(lab.mariadb.sql("SELECT version_num FROM alembic_version", "keystone").split())


def connect(lab: OpenStackLab) -> openstack.connection.Connection:
    return openstack.connect(cloud=ADMIN_CLOUD)


def identity(conn: openstack.connection.Connection) -> IdentityV3:
    """The connection's Identity API, which is v3 (the lab's Keystone serves nothing else)."""
    proxy = conn.identity
    assert isinstance(proxy, IdentityV3), proxy
    return proxy
