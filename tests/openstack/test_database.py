"""db.snapshot / db.verify_snapshot / db.restore against the lab's real MariaDB and Keystone."""

from __future__ import annotations

import os
import re
import shutil
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.testing import ActivityEnvironment

from activities import database, db_scripts, dbtools, retention
from lab.openstack.manager import OpenStackLab
from model import errors
from model.io import RestoreInput, SnapshotInput, VerifyInput
from model.plan import Database, KubeTarget
from tests.openstack.db_sessions import session_held
from tests.openstack.helpers import KeystoneAt, connect, identity, issue_token, run, table_checksums, validate_token
from tests.openstack.helpers import database as lab_db
from tests.waiting import eventually_sync

pytestmark = pytest.mark.openstack


def test_snapshot_verify_mutate_restore_is_byte_identical(keystone_at: KeystoneAt) -> None:
    lab = keystone_at("28.1.0")
    db = lab_db(lab)
    token = issue_token(lab)
    before = table_checksums(lab)

    snap = run(database.snapshot, SnapshotInput(upgrade_id="upgrade/lab-db", service="keystone", database=db))
    assert Path(snap.location).stat().st_size == snap.size_bytes > 10_000
    assert snap.table_checksums == before  # a quiet schema: the dump holds exactly what was live
    assert len(snap.sha256) == 64 and snap.changed_during_dump == []
    # a definition per table: sha256 of SHOW CREATE TABLE without AUTO_INCREMENT=N
    assert snap.table_definitions.keys() == before.keys()
    assert all(re.fullmatch(r"[0-9a-f]{64}", d) for d in snap.table_definitions.values())
    # the file is on this machine: its host and the host queue (outside a worker: the env's main queue)
    assert snap.host and snap.task_queue.endswith(f"@{snap.host}")

    verified = run(database.verify_snapshot, VerifyInput(snapshot=snap, database=db))
    assert verified.ok, verified.message
    assert verified.table_checksums == snap.table_checksums and verified.tables == len(before)

    # mutate through the API: a project and a user that the snapshot does not know
    conn = connect(lab)
    project = identity(conn).create_project(name="after-snapshot", domain_id="default")
    identity(conn).create_user(name="after-snapshot-user", domain_id="default", password="x" * 12)
    conn.close()
    mutated = table_checksums(lab)
    assert mutated != before

    lab.stop_keystone()  # the workflow scales the API to 0 before a restore
    restored = run(database.restore, RestoreInput(snapshot=snap, database=db))
    assert restored.ok
    assert restored.table_checksums == snap.table_checksums
    assert table_checksums(lab) == before  # the lab's own view agrees: byte-identical tables

    lab.serve("28.1.0")
    conn = connect(lab)
    assert identity(conn).find_project(project.id) is None
    conn.close()
    assert validate_token(lab, token) == 200  # issued before the snapshot: still valid


def test_verify_refuses_a_changed_or_truncated_snapshot(keystone_at: KeystoneAt, tmp_path: Path) -> None:
    lab = keystone_at("28.1.0")
    db = lab_db(lab, snapshot_dir=str(tmp_path), snapshot_storage="shared")
    # an older snapshot of another (finished) upgrade, past the protection window: retention prunes it
    old = tmp_path / "keystone-keystone-upgrade_gone.sql"
    old.write_text("-- old dump\n")
    os.utime(old, (time.time() - retention.PROTECT_SECONDS - 60,) * 2)
    tmp_path.chmod(0o755)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(retention.RETENTION_ENV, "1")
        snap = run(database.snapshot, SnapshotInput(upgrade_id="corrupt", service="keystone", database=db))
    assert snap.host == snap.task_queue == ""  # shared storage: any worker reads the file
    # the dump is private to the worker's user, and the older one is gone
    assert stat.S_IMODE(Path(snap.location).stat().st_mode) == 0o600
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700
    assert not old.exists()

    data = Path(snap.location).read_bytes()
    Path(snap.location).write_bytes(data[: len(data) // 2])  # truncated mid-statement
    result = run(database.verify_snapshot, VerifyInput(snapshot=snap, database=db))
    assert not result.ok

    Path(snap.location).write_bytes(data.replace(b"RegionOne", b"RegionTwo"))  # loads, but differs
    result = run(database.verify_snapshot, VerifyInput(snapshot=snap, database=db))
    assert not result.ok and "sha256" in result.message

    Path(snap.location).unlink()
    result = run(database.verify_snapshot, VerifyInput(snapshot=snap, database=db))
    assert not result.ok and "missing" in result.message

    lab.stop_keystone()
    before = table_checksums(lab)
    with pytest.raises(ApplicationError) as info:  # a restore without its file drops nothing
        run(database.restore, RestoreInput(snapshot=snap, database=db))
    assert info.value.type == errors.RESTORE_FAILED and info.value.non_retryable
    assert "missing" in str(info.value) and "nothing was dropped" in str(info.value)

    Path(snap.location).write_bytes(data.replace(b"RegionOne", b"RegionTwo"))
    with pytest.raises(ApplicationError) as info:  # a restore never loads a file that changed
        run(database.restore, RestoreInput(snapshot=snap, database=db))
    assert info.value.type == errors.RESTORE_FAILED and info.value.non_retryable
    assert table_checksums(lab) == before


def sessions(lab: OpenStackLab, statement: str) -> list[str]:
    """Ids of the connections running a statement that starts with ``statement`` (processlist)."""
    assert lab.mariadb
    rows = lab.mariadb.sql(f"SELECT id FROM information_schema.processlist WHERE info LIKE '{statement}%'")
    return rows.split()


@contextmanager
def metadata_lock_held(lab: OpenStackLab) -> Iterator[None]:
    """A client inside a read transaction holds a metadata lock on the keystone schema. It is not a
    session the restore's check can see (another user, no default schema: it names the table with
    its schema), so the restore goes on to its DROP and waits there: the lock-wait bound is the
    second line of defence. Entered once the lock is held."""
    with session_held(lab, "START TRANSACTION; SELECT COUNT(*) FROM keystone.region;", schema=None):
        yield


def test_restore_waits_for_metadata_locks_only_as_long_as_configured(keystone_at: KeystoneAt, tmp_path: Path) -> None:
    """An idle connection inside a transaction holds a metadata lock: the restore gives up after
    lock_wait_timeout with a retryable error instead of hanging for the server default (a day)."""
    lab = keystone_at("28.1.0")
    db = lab_db(lab, snapshot_dir=str(tmp_path), lock_wait_timeout=2)
    snap = run(database.snapshot, SnapshotInput(upgrade_id="locked", service="keystone", database=db))
    lab.stop_keystone()
    assert lab.mariadb
    # a write since the snapshot: a schema equal to the snapshot would be found restored already
    lab.mariadb.sql("INSERT INTO region (id, description, extra) VALUES ('AfterSnap', '', '{}')", "keystone")
    with metadata_lock_held(lab):
        started = time.monotonic()
        with pytest.raises(ApplicationError) as info:
            run(database.restore, RestoreInput(snapshot=snap, database=db))
        assert info.value.type == errors.UNAVAILABLE and not info.value.non_retryable
        assert "lock" in str(info.value)
        assert time.monotonic() - started < 20
    lab.mariadb.sql("SELECT 1")  # the server is fine; a retry now succeeds
    assert run(database.restore, RestoreInput(snapshot=snap, database=db)).ok


def test_job_runner_manifest_mounts_credentials_and_snapshots() -> None:
    db = Database(
        name="keystone", runner="job", credentials_secret="keystone-db-backup", snapshot_pvc="stackhop-snapshots"
    )
    target = KubeTarget(context="lab", namespace="openstack")
    script = db_scripts.snapshot_script(
        db="keystone",
        path=database.snapshot_path(db, "keystone", "upgrade/x"),
        defaults_file=database.defaults_file(db),
    )
    name, manifest = database.job_for(
        op="snapshot", service="keystone", key="upgrade/x", database=db, target=target, script=script
    )
    again, _ = database.job_for(
        op="snapshot", service="keystone", key="upgrade/x", database=db, target=target, script=script
    )
    assert name == again and len(name) <= 63 and name.startswith("stackhop-keystone-snapshot-")
    spec = manifest["spec"]
    assert manifest["kind"] == "Job" and manifest["metadata"]["namespace"] == "openstack"
    assert spec["backoffLimit"] == 0 and spec["template"]["spec"]["restartPolicy"] == "Never"
    container = spec["template"]["spec"]["containers"][0]
    assert container["image"] == "docker.io/library/mariadb:10.11"
    assert container["command"][:4] == ["bash", "-c", dbtools.JOB_WRAPPER, "stackhop-job"]  # markers kept
    assert 'mariadb-dump --defaults-file="$DF" --single-transaction --routines --triggers' in container["command"][4]
    assert "DF=/etc/stackhop/db/my.cnf" in container["command"][4]
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert volumes["credentials"]["secret"]["secretName"] == "keystone-db-backup"
    assert volumes["snapshots"]["persistentVolumeClaim"]["claimName"] == "stackhop-snapshots"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"credentials": "/etc/stackhop/db", "snapshots": "/var/lib/stackhop/snapshots"}

    with pytest.raises(ApplicationError) as info:
        database.job_for(
            op="snapshot",
            service="keystone",
            key="k",
            database=Database(name="keystone", runner="job"),
            target=target,
            script=script,
        )
    assert info.value.type == errors.PLAN_INVALID


def test_names_and_paths_are_safe() -> None:
    """The plan model refuses such a name first (tests/plans/bad-database-name.yaml); the activity's
    own check is a permanent PlanInvalid, never a retried ValueError."""
    with pytest.raises(ApplicationError) as info:
        db_scripts.snapshot_script(db="keystone; DROP DATABASE x", path="/tmp/x.sql", defaults_file="/tmp/my.cnf")
    assert info.value.type == errors.PLAN_INVALID and info.value.non_retryable
    db = Database(name="keystone", snapshot_dir="/srv/snaps")
    assert database.snapshot_path(db, "keystone", "upgrade/lab") == "/srv/snaps/keystone-keystone-upgrade_lab.sql"
    assert shutil.which("bash")


def test_a_cancelled_restore_stops_at_once_and_leaves_the_schema_alone(keystone_at: KeystoneAt, tmp_path: Path) -> None:
    """Stuck behind a metadata lock with a long timeout, the restore is cancelled: the activity ends
    within a heartbeat, its client is killed (MariaDB then abandons the waiting DROP DATABASE)."""
    lab = keystone_at("28.1.0")
    db = lab_db(lab, snapshot_dir=str(tmp_path), lock_wait_timeout=300)
    snap = run(database.snapshot, SnapshotInput(upgrade_id="cancelled", service="keystone", database=db))
    lab.stop_keystone()
    assert lab.mariadb
    # a write since the snapshot: a schema equal to the snapshot would be found restored already
    lab.mariadb.sql("INSERT INTO region (id, description, extra) VALUES ('AfterSnap', '', '{}')", "keystone")
    env = ActivityEnvironment()
    cancelled_at: list[float] = []

    def cancel_once_stuck() -> None:  # the restore's DROP DATABASE waits behind the holder's lock
        try:
            eventually_sync(lambda: sessions(lab, "DROP DATABASE"), what="the restore's DROP DATABASE waiting")
            cancelled_at.append(time.monotonic())
        finally:
            env.cancel()  # in any case: a failed wait must not leave the restore stuck for 300 s

    canceller = threading.Thread(target=cancel_once_stuck, daemon=True)
    with metadata_lock_held(lab):
        canceller.start()
        with pytest.raises(CancelledError):
            env.run(database.restore, RestoreInput(snapshot=snap, database=db))
        canceller.join()
        assert cancelled_at, "the restore never waited behind the lock"
        assert time.monotonic() - cancelled_at[0] < 6  # within a heartbeat of the cancel
        # MariaDB notices the killed client and abandons its statement
        eventually_sync(lambda: not sessions(lab, "DROP DATABASE"), within=10, what="the DROP DATABASE abandoned")
    assert "region" in lab.mariadb.sql("SHOW TABLES", "keystone").split()  # nothing was dropped
