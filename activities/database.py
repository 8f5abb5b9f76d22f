"""Database activities: snapshot, verify and restore one service's MariaDB schema.

Why each step exists:

* **snapshot** — `mariadb-dump --single-transaction --routines --triggers` (a consistent read, no
  table locks, so the API keeps serving).  The file's sha256 and size are recorded, and the dump is
  loaded once into a scratch schema to record the CHECKSUM TABLE of every table *as the dump holds
  it*, and a sha256 of each table's definition (to tell a migration's changes from writers' later).
  The live schema may move on while the dump runs (nova's service heartbeats do), so checksums
  of the live schema would not describe the file; tables that changed are reported, not failed.
  The snapshot names the worker host that holds the file and that host's task queue
  (activities/locality.py), unless the storage is shared (`snapshot_storage: shared`, the job PVC).
* **verify** — read the file back (sha256 and size must match), load it into a fresh scratch schema
  and compare every table checksum with the snapshot's: a snapshot that does not load is no backup.
* **restore** — the workflow first scales the API to 0; the restore refuses (DatabaseInUse, naming
  them) while any session is still on the schema or of the service's users — checked in the same
  script right before the DROP, and after the file's sha256, so a missing or changed file or a live
  session leaves the schema untouched; it then bounds its metadata-lock
  waits (`lock_wait_timeout`, the server default is a day: an idle connection inside a transaction
  once held DROP DATABASE for ten minutes), drops and reloads the schema, and proves the result:
  every table checksum equals the snapshot's.

Runners: `local` runs the client tools on the worker (the lab exercises this for real); `job` runs the
same script in a Kubernetes Job built by `job_for()` (a pure function) and run by kube_jobs.run_job.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import dbtools, locality, retention
from activities.db_scripts import (
    inspect_script,
    parse_sessions,
    restore_script,
    sessions_script,
    snapshot_script,
    verify_script,
)
from model import errors, redact
from model.io import (
    DB_RESTORE,
    DB_SNAPSHOT,
    DB_VERIFY,
    RestoreInput,
    RestoreResult,
    Snapshot,
    SnapshotInput,
    VerifyInput,
    VerifyResult,
)
from model.plan import Database, KubeTarget

log = structlog.get_logger(__name__)

JOB_DEFAULTS_FILE = "/etc/stackhop/db/my.cnf"
JOB_SNAPSHOT_DIR = "/var/lib/stackhop/snapshots"
LOCK_WAIT_ERROR = "1205"  # ER_LOCK_WAIT_TIMEOUT


# --- where things live -------------------------------------------------------------------------
def snapshot_dir(database: Database) -> str:
    if database.runner == "job":
        return database.snapshot_dir or JOB_SNAPSHOT_DIR
    if database.snapshot_dir:
        return database.snapshot_dir
    env = os.environ.get("STACKHOP_SNAPSHOT_DIR")
    return env or str(Path.home() / ".local" / "state" / "stackhop" / "snapshots")


def snapshot_path(database: Database, service: str, upgrade_id: str) -> str:
    """Deterministic per (service, upgrade): a retried snapshot overwrites only its own file."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", upgrade_id).strip("_.") or "upgrade"
    return str(Path(snapshot_dir(database)) / f"{service}-{database.name}-{safe}.sql")


def defaults_file(database: Database) -> str:
    if database.runner == "job":
        return JOB_DEFAULTS_FILE
    path = database.defaults_file or os.environ.get("STACKHOP_DB_DEFAULTS_FILE")
    if not path:
        raise errors.permanent(
            errors.PLAN_INVALID,
            f"database {database.name}: set database.defaults_file (a MariaDB option file with the credentials)",
        )
    if not Path(path).is_file():
        raise errors.permanent(errors.PLAN_INVALID, f"database {database.name}: defaults file {path} does not exist")
    redact.register_option_file(path)  # its password is masked wherever a tool echoes it
    return path


# --- job runner (pure manifest) ----------------------------------------------------------------
def job_for(
    *, op: str, service: str, key: str, database: Database, target: KubeTarget, script: str, timeout_seconds: int = 3600
) -> tuple[str, dict[str, Any]]:
    """(step, manifest) of the Job that runs `script` with the MariaDB client image, the credentials
    Secret mounted as the defaults file and the snapshot PVC at the snapshot directory (the Job's
    name adds the workflow run and a generation to the step: kube_jobs.run_job)."""
    if not database.credentials_secret or not database.snapshot_pvc:
        raise errors.permanent(
            errors.PLAN_INVALID,
            f"database {database.name}: the job runner needs database.credentials_secret and database.snapshot_pvc",
        )
    name = dbtools.job_name(service, op, key)
    manifest = dbtools.job_manifest(
        namespace=target.namespace,
        image=database.job_image,
        script=script,
        labels={"stackhop.io/service": service, "stackhop.io/operation": f"db-{op}"},
        volumes=[
            {
                "name": "credentials",
                "secret": {
                    "secretName": database.credentials_secret,
                    "defaultMode": 0o400,
                    "items": [{"key": "my.cnf", "path": "my.cnf"}],
                },
            },
            {"name": "snapshots", "persistentVolumeClaim": {"claimName": database.snapshot_pvc}},
        ],
        mounts=[
            {"name": "credentials", "mountPath": str(Path(JOB_DEFAULTS_FILE).parent), "readOnly": True},
            {"name": "snapshots", "mountPath": snapshot_dir(database)},
        ],
        timeout_seconds=timeout_seconds,
    )
    return name, manifest


def file_location(database: Database) -> tuple[str, str]:
    """(host, task queue) that holds a new snapshot file; ("", "") when every worker can read it."""
    if database.runner == "job" or database.snapshot_storage == "shared":
        return "", ""
    return locality.current_host_queue()


def elsewhere(snap: Snapshot) -> str:
    """Names the snapshot's host when this worker is another one (a message suffix)."""
    here = locality.worker_host()
    if snap.host and snap.host != here:
        return f" (it was written on host {snap.host}, task queue {snap.task_queue}; this is {here})"
    return ""


def _run(op: str, service: str, key: str, database: Database, target: KubeTarget | None, script: str) -> dbtools.Ran:
    if database.runner == "local":
        return dbtools.run_local(script, step=f"db.{op}")
    if target is None:
        raise errors.permanent(
            errors.PLAN_INVALID, f"database {database.name}: the job runner needs a Kubernetes target"
        )
    step, manifest = job_for(op=op, service=service, key=key, database=database, target=target, script=script)
    return dbtools.run_job(target, step, manifest, 3600, f"db.{op}")


def _failure(kind: str, what: str, ran: dbtools.Ran) -> ApplicationError:
    if f"ERROR {LOCK_WAIT_ERROR}" in ran.output:
        return errors.temporary(
            f"{what}: metadata lock wait timed out (is the API still connected?)", output=ran.tail()
        )
    if re.search(r"ERROR 20(0[2-6]|13)", ran.output):  # cannot connect / server gone away
        return errors.temporary(f"{what}: database unreachable", output=ran.tail())
    return errors.permanent(kind, f"{what} failed (exit {ran.exit_code}): {ran.tail(5)}", output=ran.tail())


def _changed(a: dict[str, str], b: dict[str, str]) -> list[str]:
    return sorted(t for t in a.keys() | b.keys() if a.get(t) != b.get(t))


def open_sessions(service: str, database: Database, target: KubeTarget | None) -> list[str]:
    """The sessions on the service's schema or of its users now ("id user@host db command time"),
    through the database's runner; the connection asking is not counted."""
    script = sessions_script(db=database.name, users=database.users, defaults_file=defaults_file(database))
    ran = _run("sessions", service, database.name, database, target, script)
    if ran.exit_code or "sessions" not in ran.markers:
        raise _failure(errors.MIGRATION_FAILED, f"listing the sessions on {database.name}", ran)
    return parse_sessions(ran.markers["sessions"])


# --- activities --------------------------------------------------------------------------------
@activity.defn(name=DB_SNAPSHOT, no_thread_cancel_exception=True)
def snapshot(inp: SnapshotInput) -> Snapshot:
    """Dump the service schema, record sha256, size and the dump's table checksums."""
    db = inp.database
    path = snapshot_path(db, inp.service, inp.upgrade_id)
    script = snapshot_script(db=db.name, path=path, defaults_file=defaults_file(db))
    ran = _run("snapshot", inp.service, inp.upgrade_id, db, inp.target, script)
    m = ran.markers
    if ran.exit_code or "checksums" not in m or "sha256" not in m:
        raise _failure(errors.SNAPSHOT_FAILED, f"snapshot of {db.name}", ran)
    checksums = dbtools.parse_checksums(m["checksums"])
    if not checksums:
        raise errors.permanent(errors.SNAPSHOT_FAILED, f"snapshot of {db.name} holds no tables", output=ran.tail())
    charset, _, collation = m.get("charset", "").partition(":")
    host, task_queue = file_location(db)
    drift = _changed(checksums, dbtools.parse_checksums(m.get("live", "")))
    try:  # a misconfigured retention must not fail a good snapshot: it is logged, nothing is pruned
        pruned = retention.prune(path, inp.service, db.name) if db.runner == "local" else []
    except ValueError as e:
        log.warning("snapshot retention not applied", error=str(e))
        pruned = []
    log.info(
        "db_snapshot",
        pruned=pruned,
        database=db.name,
        path=path,
        host=host,
        size=m.get("size"),
        tables=len(checksums),
        changed_during_dump=drift,
        seconds=round(ran.seconds, 2),
    )
    return Snapshot(
        service=inp.service,
        database=db.name,
        location=path,
        sha256=m["sha256"],
        size_bytes=int(m.get("size", "0")),
        table_checksums=checksums,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        charset=charset or "utf8mb4",
        collation=collation or "utf8mb4_general_ci",
        changed_during_dump=drift,
        seconds=round(ran.seconds, 3),
        table_definitions=dbtools.parse_checksums(m.get("definitions", "")),
        host=host,
        task_queue=task_queue,
    )


@activity.defn(name=DB_VERIFY, no_thread_cancel_exception=True)
def verify_snapshot(inp: VerifyInput) -> VerifyResult:
    """The file is intact and loads into a scratch schema with the recorded table checksums.

    A snapshot that does not verify is reported (ok=False), not raised: the workflow decides."""
    db, snap = inp.database, inp.snapshot
    script = verify_script(db=db.name, path=snap.location, defaults_file=defaults_file(db))
    ran = _run("verify", snap.service, snap.location, db, inp.target, script)
    m = ran.markers
    if ran.exit_code and m.get("error") == "missing":
        return VerifyResult(ok=False, message=f"snapshot file {snap.location} is missing{elsewhere(snap)}")
    if ran.exit_code or "checksums" not in m:
        if f"ERROR {LOCK_WAIT_ERROR}" in ran.output or re.search(r"ERROR 20(0[2-6]|13)", ran.output):
            raise _failure(errors.SNAPSHOT_FAILED, f"verify of {snap.location}", ran)
        return VerifyResult(ok=False, message=f"snapshot does not load: {ran.tail(3)}")
    if m.get("sha256") != snap.sha256 or int(m.get("size", "-1")) != snap.size_bytes:
        return VerifyResult(
            ok=False, message=f"snapshot file changed: sha256 {m.get('sha256')} != recorded {snap.sha256}"
        )
    loaded = dbtools.parse_checksums(m["checksums"])
    mismatched = _changed(snap.table_checksums, loaded)
    drift = _changed(loaded, dbtools.parse_checksums(m.get("live", "")))
    if mismatched:
        return VerifyResult(
            ok=False,
            tables=len(loaded),
            table_checksums=loaded,
            mismatched_tables=mismatched,
            message=f"{len(mismatched)} table checksums differ after loading: {', '.join(mismatched[:10])}",
        )
    note = f"; {len(drift)} tables changed in the live schema since" if drift else ""
    return VerifyResult(
        ok=True,
        tables=len(loaded),
        table_checksums=loaded,
        changed_since_snapshot=drift,
        message=f"{len(loaded)} tables load with matching checksums (sha256 {snap.sha256[:12]}){note}",
        seconds=round(ran.seconds, 3),
    )


def _missing(snap: Snapshot) -> ApplicationError:
    return errors.permanent(
        errors.RESTORE_FAILED, f"snapshot file {snap.location} is missing{elsewhere(snap)}; nothing was dropped"
    )


def _corrupt(snap: Snapshot, actual: str) -> ApplicationError:
    return errors.permanent(errors.RESTORE_FAILED, f"snapshot {snap.location} is corrupt (sha256 {actual})")


def _file_problem(snap: Snapshot) -> ApplicationError | None:
    """The local snapshot file is missing or not the one recorded (the restore script checks the
    same before it drops anything; here it comes first so an already-restored schema is never
    reported restored from a file that could not restore it)."""
    path = Path(snap.location)
    if not path.is_file():
        return _missing(snap)
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    actual = digest.hexdigest()
    return None if actual == snap.sha256 else _corrupt(snap, actual)


def _equals_snapshot(inp: RestoreInput) -> bool:
    """The live schema already has the snapshot's tables, definitions and checksums: restoring it
    again would drop and reload the same data. Only a snapshot that recorded definitions can say."""
    db, snap = inp.database, inp.snapshot
    if not snap.table_definitions:
        return False
    ran = _run(
        "inspect",
        snap.service,
        snap.location,
        db,
        inp.target,
        inspect_script(db=db.name, users=db.users, defaults_file=defaults_file(db)),
    )
    if ran.exit_code:
        return False
    live = dbtools.parse_checksums(ran.markers.get("checksums", ""))
    definitions = dbtools.parse_checksums(ran.markers.get("definitions", ""))
    return live == snap.table_checksums and definitions == snap.table_definitions


@activity.defn(name=DB_RESTORE, no_thread_cancel_exception=True)
def restore(inp: RestoreInput) -> RestoreResult:
    """Drop and reload the schema from the snapshot, then prove it equals the snapshot.

    The caller quiesces the API first; a metadata lock still held makes this fail after
    `database.lock_wait_timeout` seconds with a retryable error instead of hanging."""
    db, snap = inp.database, inp.snapshot
    if snap.database != db.name:
        raise errors.permanent(errors.RESTORE_FAILED, f"snapshot is of {snap.database}, not {db.name}")
    started = time.monotonic()
    problem = _file_problem(snap) if db.runner == "local" else None
    if problem:
        raise problem
    if db.runner == "local" and _equals_snapshot(inp):
        # The Job runner needs no such check: a retry re-attaches to the Job that already ran.
        log.info("db_already_restored", database=db.name)
        return RestoreResult(
            ok=True,
            table_checksums=snap.table_checksums,
            seconds=round(time.monotonic() - started, 3),
            already_restored=True,
        )
    script = restore_script(
        db=db.name,
        path=snap.location,
        defaults_file=defaults_file(db),
        sha256=snap.sha256,
        charset=snap.charset,
        collation=snap.collation,
        lock_wait_timeout=db.lock_wait_timeout,
        users=db.users,
    )
    ran = _run("restore", snap.service, snap.location, db, inp.target, script)
    m = ran.markers
    if m.get("error") == "in-use":
        found = parse_sessions(m.get("sessions", ""))
        raise errors.temporary(
            f"{db.name} is still in use by {len(found)} sessions, nothing was dropped: {'; '.join(found)}",
            type=errors.DB_IN_USE,
            sessions=found,
        )
    if m.get("error") == "missing":
        raise _missing(snap)
    if m.get("error") == "sha256-mismatch":
        raise _corrupt(snap, m.get("actual", ""))
    if ran.exit_code or "checksums" not in m:
        raise _failure(errors.RESTORE_FAILED, f"restore of {db.name}", ran)
    restored = dbtools.parse_checksums(m["checksums"])
    mismatched = _changed(snap.table_checksums, restored)
    seconds = round(time.monotonic() - started, 3)
    if mismatched:
        raise errors.permanent(
            errors.RESTORE_FAILED,
            f"restored {db.name} differs from the snapshot in {len(mismatched)} tables: {', '.join(mismatched[:10])}",
            mismatched=mismatched,
        )
    log.info("db_restored", database=db.name, tables=len(restored), seconds=seconds)
    return RestoreResult(ok=True, table_checksums=restored, seconds=seconds)
