"""A worker started with `stackhop lab openstack env` runs a plan that names no lab paths."""

from __future__ import annotations

import pytest

from activities import database, migration, validation
from model.io import CheckInput, MigrateInput, SnapshotInput, VerifyInput
from model.plan import Database, Migration, UpgradeStatusCheck
from tests.openstack.helpers import RELEASE_MID, RELEASE_OLD, KeystoneAt, run

pytestmark = pytest.mark.openstack


def test_plan_without_paths_uses_the_worker_environment(
    keystone_at: KeystoneAt, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = keystone_at(RELEASE_OLD)
    for key, value in lab.worker_env().items():
        monkeypatch.setenv(key, value)
    db = Database(name="keystone")  # as in examples/lab-keystone.yaml
    snap = run(database.snapshot, SnapshotInput(upgrade_id="upgrade/env", service="keystone", database=db))
    assert snap.location.startswith(str(lab.base / "snapshots"))
    assert run(database.verify_snapshot, VerifyInput(snapshot=snap, database=db)).ok
    check = run(
        migration.db_sync,
        MigrateInput(
            service="keystone", phase="check", version=RELEASE_MID, migration=Migration(mode="expand-contract")
        ),
    )
    assert check.state == "expand-needed" and "keystone-29.1.0" in check.command[0]
    status = run(
        validation.run_check,
        CheckInput(
            service="keystone", cloud="lab-admin", version=RELEASE_MID, check=UpgradeStatusCheck(kind="upgrade-status")
        ),
    )
    assert status.status == "pass" and status.details["exit_code"] == 0
