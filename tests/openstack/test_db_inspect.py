"""db.inspect and the restore's session check against the lab's real MariaDB and Keystone."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError

from activities import database, db_inspect
from model import errors
from model.io import InspectInput, RestoreInput, SnapshotInput
from tests.openstack.db_sessions import session_held
from tests.openstack.helpers import KeystoneAt, run, table_checksums
from tests.openstack.helpers import database as lab_db

pytestmark = pytest.mark.openstack


def test_inspect_tells_writers_from_the_migration(keystone_at: KeystoneAt, tmp_path: Path) -> None:
    lab = keystone_at("28.1.0")
    assert lab.mariadb
    db = lab_db(lab, snapshot_dir=str(tmp_path))
    snap = run(database.snapshot, SnapshotInput(upgrade_id="inspect", service="keystone", database=db))
    lab.stop_keystone()  # its pooled connections would be listed as sessions

    quiet = run(db_inspect.inspect, InspectInput(snapshot=snap, database=db))
    assert quiet.changes == [] and quiet.sessions == []
    assert quiet.table_definitions == snap.table_definitions  # live and dump-loaded definitions agree
    assert quiet.table_checksums == snap.table_checksums and quiet.at >= snap.created_at

    sql = lab.mariadb.sql
    sql("INSERT INTO region (id, description, extra) VALUES ('RegionX', '', '{}')", "keystone")  # writers
    # writers again: AUTO_INCREMENT=N of the definition moves, which is not a definition change
    sql("INSERT INTO revocation_event (issued_before, revoked_at) VALUES (NOW(), NOW())", "keystone")
    sql("ALTER TABLE role ADD INDEX ix_stackhop_test (name)", "keystone")  # definition only: migration
    sql("ALTER TABLE user ADD COLUMN stackhop_flag INT NOT NULL DEFAULT 1", "keystone")  # both: unknown
    sql("CREATE TABLE stackhop_new (id INT PRIMARY KEY)", "keystone")  # a new table: migration

    found = run(db_inspect.inspect, InspectInput(snapshot=snap, database=db))
    assert {c.table: c.change for c in found.changes} == {
        "region": "writers",
        "revocation_event": "writers",
        "role": "migration",
        "user": "unknown",
        "stackhop_new": "migration",
    }
    assert found.writers_changed == ["region", "revocation_event", "user"]
    assert found.table_checksums == table_checksums(lab)  # the lab's own view of the live tables


def test_an_open_session_is_listed_and_the_restore_drops_nothing(keystone_at: KeystoneAt, tmp_path: Path) -> None:
    lab = keystone_at("28.1.0")
    assert lab.mariadb and lab.keystone
    db = lab_db(lab, snapshot_dir=str(tmp_path), users=["keystone"])
    snap = run(database.snapshot, SnapshotInput(upgrade_id="in-use", service="keystone", database=db))
    lab.stop_keystone()
    lab.mariadb.sql("INSERT INTO region (id, description, extra) VALUES ('AfterSnap', '', '{}')", "keystone")
    changed = table_checksums(lab)

    with session_held(lab) as session:  # a client on the keystone schema
        inspection = run(db_inspect.inspect, InspectInput(snapshot=snap, database=db))
        assert [s.split()[0] for s in inspection.sessions] == [session]
        assert inspection.sessions[0].split()[2] == "keystone"
        with pytest.raises(ApplicationError) as info:
            run(database.restore, RestoreInput(snapshot=snap, database=db))
        assert info.value.type == errors.DB_IN_USE and not info.value.non_retryable
        assert f"{session} " in str(info.value) and "nothing was dropped" in str(info.value)
        assert table_checksums(lab) == changed  # schema intact, the write still there

    # a session of the service's user, with no default schema, counts too
    login = ["--user=keystone", f"--password={lab.keystone.db_password}"]
    with session_held(lab, schema=None, login=login) as session:
        inspection = run(db_inspect.inspect, InspectInput(snapshot=snap, database=db))
        ((listed_id, user_host, schema, *_),) = (s.split() for s in inspection.sessions)
        assert (listed_id, user_host.split("@")[0], schema) == (session, "keystone", "-")
        unlisted = run(db_inspect.inspect, InspectInput(snapshot=snap, database=db.model_copy(update={"users": []})))
        assert unlisted.sessions == []
        with pytest.raises(ApplicationError) as info:
            run(database.restore, RestoreInput(snapshot=snap, database=db))
        assert info.value.type == errors.DB_IN_USE

    restored = run(database.restore, RestoreInput(snapshot=snap, database=db))  # closed: the restore runs
    assert restored.ok and table_checksums(lab) == snap.table_checksums
    assert not restored.already_restored

    # The worker died after that restore and before its result reached Temporal: the retry finds
    # the schema equal to the snapshot and drops nothing (an open session would refuse a real one).
    with session_held(lab):
        again = run(database.restore, RestoreInput(snapshot=snap, database=db))
    assert again.ok and again.already_restored and table_checksums(lab) == snap.table_checksums
