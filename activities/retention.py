"""Snapshot files are private to the worker and do not pile up: written 0600 in a 0700 directory,
pruned by STACKHOP_SNAPSHOT_RETENTION.

Why: a dump is the whole schema — password hashes, tokens, credentials of the service's users — so
nobody but the worker's user reads it (db_scripts.snapshot_script writes it under ``umask 077``).
And a snapshot directory collects one file per service, database and cloud upgraded
(``<service>-<database>-upgrade_<cloud>.sql``, activities/database.py), rewritten by that cloud's
next upgrade but never removed: tests and short-lived clouds leave hundreds.

The rule (``prune``), applied by ``db.snapshot`` on the worker that wrote a new snapshot, in its
directory, right after the dump succeeded:

* only files of the same service and database (``<service>-<database>-*.sql``), never the one just
  written (each cloud's own file is replaced by its next snapshot, so the file of a cloud's previous,
  finished, upgrade is never kept beside the new one);
* the newest ``STACKHOP_SNAPSHOT_RETENTION`` files (default 5; ``0`` or ``off``: never prune) are kept;
* of the others, only those untouched for :data:`PROTECT_SECONDS` (7 days) go: a snapshot is written
  when its upgrade starts changing the service, and an upgrade that another cloud's snapshot might
  outlive is one waiting longer than that for an operator's decision — its file stays.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

RETENTION_ENV = "STACKHOP_SNAPSHOT_RETENTION"
DEFAULT_KEEP = 5
PROTECT_SECONDS = 7 * 86400


def keep_count() -> int:
    """STACKHOP_SNAPSHOT_RETENTION as a number of files (0: keep all); ValueError names the fix."""
    raw = os.environ.get(RETENTION_ENV, "").strip().lower()
    if not raw:
        return DEFAULT_KEEP
    if raw in ("off", "0"):
        return 0
    try:
        keep = int(raw)
    except ValueError:
        keep = -1
    if keep < 1:
        raise ValueError(f"{RETENTION_ENV}={raw!r}: the number of snapshots to keep per database (or 0 / off)")
    return keep


def prune(
    written: str | Path, service: str, database: str, keep: int | None = None, now: float | None = None
) -> list[str]:
    """Delete the older snapshots of ``service``/``database`` beside ``written`` (see the module
    docstring); returns the paths deleted. A file that vanishes meanwhile is not an error."""
    keep = keep_count() if keep is None else keep
    if keep <= 0:
        return []
    new = Path(written)
    now = time.time() if now is None else now
    candidates: list[tuple[float, Path]] = []
    for p in new.parent.glob(f"{service}-{database}-*.sql"):
        try:
            if p.samefile(new) or not p.is_file() or p.is_symlink():
                continue
            candidates.append((p.stat().st_mtime, p))
        except OSError:
            continue
    candidates.sort(reverse=True)  # newest first; the new file counts as one of those kept
    deleted = []
    for mtime, p in candidates[max(keep - 1, 0) :]:
        if now - mtime < PROTECT_SECONDS:
            continue
        try:
            p.unlink()
        except FileNotFoundError:
            continue
        deleted.append(str(p))
    return deleted
