"""db.inspect: before a restore, who still uses the database and what the restore would undo.

The restore's decision rests on two questions. *Is anyone still connected?* A restore under a live
session loses that session's writes or waits behind its locks, so the sessions are listed by name
(and the restore checks again right before its DROP). *What changed since the snapshot?* A table
whose definition is unchanged but whose rows differ was changed by writers: a restore loses those
writes. A changed definition with the same rows is the migration's work, which the restore is meant
to undo. Both changed: unknown (the migration may have rewritten rows, or writers wrote too).
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from temporalio import activity

from activities import database, dbtools
from activities.db_scripts import inspect_script, parse_sessions
from model import errors
from model.io import DB_INSPECT, DbInspection, InspectInput, TableChange, TableChangeKind
from model.recipe import MIGRATION_BOOKKEEPING

log = structlog.get_logger(__name__)


def classify(
    snapshot_checksums: dict[str, str],
    snapshot_definitions: dict[str, str],
    live_checksums: dict[str, str],
    live_definitions: dict[str, str],
) -> list[TableChange]:
    """Each table that differs between the snapshot and the live schema, and who changed it.

    A table on one side only is the migration's, and so are the migration tool's own revision rows
    (model.recipe.MIGRATION_BOOKKEEPING). A snapshot without definitions (taken before they
    were recorded) cannot tell writers from the migration: a changed table is then unknown."""
    changes: list[TableChange] = []
    for table in sorted(snapshot_checksums.keys() | live_checksums.keys()):
        if table not in snapshot_checksums or table not in live_checksums:
            changes.append(TableChange(table=table, change="migration"))
            continue
        rows = snapshot_checksums[table] != live_checksums[table]
        known = table in snapshot_definitions and table in live_definitions
        definition = known and snapshot_definitions[table] != live_definitions[table]
        kind: TableChangeKind | None
        if not known:
            kind = "unknown" if rows else None
        elif definition:
            kind = "unknown" if rows else "migration"
        else:
            kind = "writers" if rows else None
        if kind and table in MIGRATION_BOOKKEEPING:
            kind = "migration"  # the tool's own revision rows: what the migration applied
        if kind:
            changes.append(TableChange(table=table, change=kind))
    return changes


@activity.defn(name=DB_INSPECT, no_thread_cancel_exception=True)
def inspect(inp: InspectInput) -> DbInspection:
    """Sessions on the schema (or of its users), live checksums and definitions, changes per table.

    Reads only; does not need the snapshot file, only what the snapshot recorded."""
    db, snap = inp.database, inp.snapshot
    # the runners of database.py (local or Job), shared by every database activity
    script = inspect_script(db=db.name, users=db.users, defaults_file=database.defaults_file(db))
    # A read must never be answered by an earlier read: a Job runner key unique to this activity
    # (the Job runner re-attaches to a succeeded Job of the same key, which suits only writes).
    fresh = f"{snap.location}#{activity.info().activity_id}" if activity.in_activity() else snap.location
    ran = database._run("inspect", snap.service, fresh, db, inp.target, script)
    m = ran.markers
    if ran.exit_code or "checksums" not in m or "sessions" not in m:
        raise database._failure(errors.SNAPSHOT_FAILED, f"inspect of {db.name}", ran)
    live = dbtools.parse_checksums(m["checksums"])
    definitions = dbtools.parse_checksums(m.get("definitions", ""))
    result = DbInspection(
        at=datetime.now(UTC).isoformat(timespec="seconds"),
        sessions=parse_sessions(m["sessions"]),
        table_checksums=live,
        table_definitions=definitions,
        changes=classify(snap.table_checksums, snap.table_definitions, live, definitions),
    )
    log.info(
        "db_inspected",
        database=db.name,
        sessions=len(result.sessions),
        changes={c.table: c.change for c in result.changes},
        seconds=round(ran.seconds, 2),
    )
    return result
