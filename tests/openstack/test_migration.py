"""migration.db_sync against real Keystone releases sharing one MariaDB schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities import database, migration
from lab.openstack.manager import OpenStackLab
from model import errors
from model.io import MigrateInput, MigrateResult, RestoreInput, SnapshotInput, VerifyInput
from model.plan import KubeTarget, Migration
from tests.openstack.helpers import (
    RELEASE_MID,
    RELEASE_NEW,
    RELEASE_OLD,
    KeystoneAt,
    alembic_versions,
    connect,
    identity,
    issue_token,
    run,
    validate_token,
)
from tests.openstack.helpers import (
    database as lab_db,
)
from tests.openstack.helpers import (
    migration as lab_migration,
)

pytestmark = pytest.mark.openstack

# the two revisions 29.1.0 (2026.1) adds to the expand branch: new indexes
NEW_IN_29 = "742c857f1dfb"


def sync(lab: OpenStackLab, phase: str, version: str) -> MigrateResult:
    return run(
        migration.db_sync, MigrateInput(service="keystone", phase=phase, migration=lab_migration(lab), version=version)
    )


def test_rolling_upgrade_28_to_29_expand_while_old_release_serves(keystone_at: KeystoneAt) -> None:
    lab = keystone_at(RELEASE_OLD)
    token = issue_token(lab)

    check = sync(lab, "check", RELEASE_MID)
    assert (check.exit_code, check.state) == (2, "expand-needed")

    expanded = sync(lab, "expand", RELEASE_MID)
    assert expanded.state == "done" and expanded.command[-2:] == ["db_sync", "--expand"]
    assert NEW_IN_29 in alembic_versions(lab)

    # 28.1.0 still serves on the expanded schema: new tokens, old tokens, reads
    assert lab.keystone and lab.keystone.release == RELEASE_OLD
    assert validate_token(lab, issue_token(lab)) == 200
    assert validate_token(lab, token) == 200
    conn = connect(lab)
    assert identity(conn).find_project("admin") is not None
    conn.close()

    assert sync(lab, "migrate", RELEASE_MID).state == "done"
    lab.serve(RELEASE_MID)
    assert validate_token(lab, token) == 200  # shared fernet keys: no user is logged out
    assert sync(lab, "contract", RELEASE_MID).state == "done"
    final = sync(lab, "check", RELEASE_MID)
    assert (final.exit_code, final.state) == (0, "up-to-date")


def test_29_to_30_has_nothing_to_migrate(keystone_at: KeystoneAt) -> None:
    lab = keystone_at(RELEASE_OLD)
    lab.stop_keystone()  # offline db sync: the API is quiesced first
    assert sync(lab, "offline", RELEASE_MID).state == "done"
    lab.serve(RELEASE_MID)
    check = sync(lab, "check", RELEASE_NEW)
    assert (check.exit_code, check.state) == (0, "up-to-date")


def test_restore_after_failed_upgrade_brings_28_back_with_its_tokens(
    keystone_at: KeystoneAt,
) -> None:
    lab = keystone_at(RELEASE_OLD)
    token = issue_token(lab)
    conn = connect(lab)
    before = identity(conn).create_project(name="before-upgrade", domain_id="default")
    conn.close()
    db = lab_db(lab)
    snap = run(database.snapshot, SnapshotInput(upgrade_id="upgrade/failed", service="keystone", database=db))
    assert run(database.verify_snapshot, VerifyInput(snapshot=snap, database=db)).ok

    sync(lab, "expand", RELEASE_MID)
    lab.serve(RELEASE_MID)
    conn = connect(lab)
    after = identity(conn).create_project(name="after-upgrade", domain_id="default")
    conn.close()
    # ... the new release fails its validation: the workflow quiesces the API and restores
    lab.stop_keystone()
    assert run(database.restore, RestoreInput(snapshot=snap, database=db)).ok
    assert NEW_IN_29 not in alembic_versions(lab)
    lab.serve(RELEASE_OLD)

    assert validate_token(lab, token) == 200
    conn = connect(lab)
    assert identity(conn).find_project(before.id) is not None
    assert identity(conn).find_project(after.id) is None
    conn.close()
    assert sync(lab, "check", RELEASE_OLD).state == "up-to-date"
    assert sync(lab, "check", RELEASE_MID).state == "expand-needed"  # ready to try again


def test_a_failing_phase_is_a_permanent_migration_failure(openstack_lab: OpenStackLab, tmp_path: Path) -> None:
    assert openstack_lab.keystone
    broken = tmp_path / "keystone.conf"
    broken.write_text(openstack_lab.keystone.conf.read_text().replace("keystone:", "keystone-nobody:", 1))
    mig = Migration(
        mode="expand-contract",
        command=[
            str(openstack_lab.keystone.venv_link("{version}") / "bin" / "keystone-manage"),
            "--config-file",
            str(broken),
        ],
    )
    with pytest.raises(ApplicationError) as info:
        run(migration.db_sync, MigrateInput(service="keystone", phase="expand", migration=mig, version=RELEASE_MID))
    assert info.value.type in (errors.MIGRATION_FAILED, errors.UNAVAILABLE)
    assert "Access denied" in str(info.value.details) or "exited" in str(info.value)


# --- pure: exit codes and commands of every profile ------------------------------------------------
@pytest.mark.parametrize(
    ("service", "code", "state"),
    [
        ("keystone", 0, "up-to-date"),
        ("keystone", 2, "expand-needed"),
        ("keystone", 4, "contract-needed"),
        ("glance", 3, "expand-needed"),
        ("glance", 4, "migrate-needed"),
        ("glance", 5, "contract-needed"),
        ("neutron", 0, "expand-needed"),
        ("neutron", 1, "offline-contract-needed"),
    ],
)
def test_check_exit_codes(service: str, code: int, state: str) -> None:
    assert migration.interpret(service, "check", code, 1, 50) == state


def test_unknown_codes_and_unconverged_data_migrations_fail() -> None:
    with pytest.raises(ApplicationError) as info:
        migration.interpret("keystone", "check", 1, 1, 50)
    assert info.value.type == errors.MIGRATION_FAILED
    with pytest.raises(ApplicationError):
        migration.interpret("nova", "migrate", 1, 50, 50)  # still work left after every round
    with pytest.raises(ApplicationError):
        migration.interpret("nova", "migrate", 2, 1, 50)
    assert migration.interpret("nova", "migrate", 0, 3, 50) == "done"


def test_phase_scripts_per_service() -> None:
    nova = migration.phase_script("nova", "migrate", ["nova-manage"], 7)
    assert nova and "seq 1 7" in nova and "nova-manage db online_data_migrations --max-count 1000" in nova
    assert "[ $rc -eq 1 ] || break" in nova  # exit 1 = some rows migrated: run another round
    assert migration.phase_script("nova", "contract", ["nova-manage"], 7) is None
    neutron = migration.phase_script("neutron", "check", ["neutron-db-manage"], 1)
    assert neutron and "neutron-db-manage has_offline_migrations" in neutron
    expand = migration.phase_script("nova", "expand", ["nova-manage"], 1)
    assert expand and expand.index("api_db sync") < expand.index("nova-manage db sync")


def test_not_applicable_phases_and_unknown_services() -> None:
    result = run(
        migration.db_sync, MigrateInput(service="nova", phase="contract", migration=Migration(mode="expand-contract"))
    )
    assert result.state == "not-applicable"
    assert run(migration.db_sync, MigrateInput(service="nova", phase="check", migration=Migration())).state == "unknown"
    with pytest.raises(ApplicationError) as info:
        run(migration.db_sync, MigrateInput(service="swift", phase="expand", migration=Migration()))
    assert info.value.type == errors.PLAN_INVALID
    with pytest.raises(ApplicationError):  # {version} in the command but no version given
        run(
            migration.db_sync,
            MigrateInput(
                service="keystone",
                phase="check",
                migration=Migration(command=["/v/keystone-{version}/bin/keystone-manage"]),
            ),
        )


def test_job_runner_runs_the_phase_in_the_target_image() -> None:
    inp = MigrateInput(
        service="keystone",
        phase="expand",
        version="29.1.0",
        image="registry.lab/keystone:29.1.0",
        migration=Migration(mode="expand-contract", runner="job", config_secret="keystone-etc"),
        target=KubeTarget(context="lab"),
    )
    script = migration.phase_script(
        "keystone", "expand", migration.base_command("keystone", inp.migration, "29.1.0"), 1
    )
    assert script
    name, manifest = migration.job_for(inp, script)
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.lab/keystone:29.1.0"
    assert "keystone-manage db_sync --expand" in container["command"][4]
    assert container["volumeMounts"] == [{"name": "config", "mountPath": "/etc/keystone", "readOnly": True}]
    assert manifest["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"] == "keystone-etc"
    assert name.startswith("stackhop-keystone-db-expand-") and len(name) <= 63
