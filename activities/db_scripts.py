"""The shell scripts of the database activities (pure functions: text in, text out).

One script serves both runners (`local` on the worker, `job` in a Kubernetes Job), so the lab, which
runs them locally against a real MariaDB, exercises exactly what a production Job runs. Results are
marker lines (`@@stackhop key=value`, see dbtools); values never hold spaces, so the session
descriptions travel hex-encoded.
"""

from __future__ import annotations

import hashlib

from activities import dbtools
from activities.dbtools import q, sql_name
from model import errors

MAX_SESSIONS = 50  # listed by name; more only make the message longer

# Shell functions every script gets. Table names are plain identifiers in the schemas we manage.
# checksums SCHEMA   -> "table:checksum,..." (CHECKSUM TABLE of every base table, name order)
# definitions SCHEMA -> "table:sha256,..." of SHOW CREATE TABLE without its AUTO_INCREMENT=N clause
#                       (batch mode escapes the statement's newlines: one line per table)
# sessions SCHEMA USERS -> hex("id user@host db command time"),... of the connections on SCHEMA or of
#                       USERS (an SQL list), not counting the connection asking
# load_scratch FILE SCHEMA: a throw-away copy of the dump
FUNCTIONS = r"""
base_tables() {
  mariadb --defaults-file="$DF" -N -B -e "SELECT table_name FROM information_schema.tables
      WHERE table_schema='$1' AND table_type='BASE TABLE' ORDER BY table_name"
}
checksums() {
  local tables
  tables=$(base_tables "$1" | sed 's/.*/`&`/' | paste -sd, -)
  if [ -z "$tables" ]; then return 0; fi
  mariadb --defaults-file="$DF" -N -B "$1" -e "CHECKSUM TABLE $tables" \
    | awk -F'\t' '{n=$1; sub(/^[^.]*\./, "", n); printf "%s%s:%s", (NR>1 ? "," : ""), n, $2}'
}
definitions() {
  local tables name create digest
  tables=$(base_tables "$1" | sed 's/.*/SHOW CREATE TABLE `&`;/' | paste -sd' ' -)
  if [ -z "$tables" ]; then return 0; fi
  mariadb --defaults-file="$DF" -N -B "$1" -e "$tables" | while IFS=$'\t' read -r name create; do
    digest=$(printf '%s' "$create" | sed -E 's/ AUTO_INCREMENT=[0-9]+//' | sha256sum | cut -d' ' -f1)
    printf '%s:%s\n' "$name" "$digest"
  done | paste -sd, -
}
sessions() {
  mariadb --defaults-file="$DF" -N -B -e "SELECT HEX(CONCAT_WS(' ', id, CONCAT(user, '@', host),
      IFNULL(db, '-'), REPLACE(command, ' ', '_'), time)) FROM information_schema.processlist
      WHERE id <> CONNECTION_ID() AND (db = '$1' OR user IN ($2)) ORDER BY id LIMIT MAX_SESSIONS" | paste -sd, -
}
load_scratch() {
  mariadb --defaults-file="$DF" -e "DROP DATABASE IF EXISTS $2; CREATE DATABASE $2"
  mariadb --defaults-file="$DF" "$2" < "$1"
}
""".replace("MAX_SESSIONS", str(MAX_SESSIONS))


def scratch_name(db: str, kind: str, path: str) -> str:
    """A throw-away schema per (database, purpose, snapshot file): two upgrades never share one."""
    digest = hashlib.sha256(path.encode()).hexdigest()[:8]
    return sql_name(f"{sql_name(db)[:40]}_stackhop_{kind}_{digest}")


def user_list(users: list[str]) -> str:
    """An SQL list of the service's users for `sessions` (NULL: matches no one)."""
    return ", ".join(f"'{sql_name(u, 'database user')}'" for u in users) or "NULL"


def parse_sessions(value: str) -> list[str]:
    """The `sessions` marker -> ["id user@host db command time", ...]."""
    return [bytes.fromhex(item).decode(errors="replace") for item in filter(None, value.split(","))]


def _header(defaults_file: str) -> str:
    return f"set -euo pipefail\nDF={q(defaults_file)}\n{FUNCTIONS}"


def snapshot_script(*, db: str, path: str, defaults_file: str) -> str:
    scratch = scratch_name(db, "snap", path)
    m = dbtools.MARKER
    return (
        _header(defaults_file)
        + f"""
OUT={q(path)}
umask 077
mkdir -p "$(dirname "$OUT")"
chmod 700 "$(dirname "$OUT")" 2>/dev/null || true
rm -f "$OUT.partial"
mariadb-dump --defaults-file="$DF" --single-transaction --routines --triggers --hex-blob --skip-dump-date \\
  {db} > "$OUT.partial"
mv "$OUT.partial" "$OUT"
chmod 600 "$OUT"
echo "{m} sha256=$(sha256sum "$OUT" | cut -d' ' -f1) size=$(stat -c %s "$OUT")"
echo "{m} charset=$(mariadb --defaults-file="$DF" -N -B -e \\
  "SELECT CONCAT(default_character_set_name, ':', default_collation_name) FROM information_schema.schemata
   WHERE schema_name='{db}'")"
echo "{m} live=$(checksums {db})"
trap 'mariadb --defaults-file="$DF" -e "DROP DATABASE IF EXISTS {scratch}" || true' EXIT
load_scratch "$OUT" {scratch}
echo "{m} checksums=$(checksums {scratch})"
echo "{m} definitions=$(definitions {scratch})"
"""
    )


def verify_script(*, db: str, path: str, defaults_file: str) -> str:
    scratch = scratch_name(db, "verify", path)
    m = dbtools.MARKER
    return (
        _header(defaults_file)
        + f"""
IN={q(path)}
test -f "$IN" || {{ echo "{m} error=missing"; exit 3; }}
echo "{m} sha256=$(sha256sum "$IN" | cut -d' ' -f1) size=$(stat -c %s "$IN")"
trap 'mariadb --defaults-file="$DF" -e "DROP DATABASE IF EXISTS {scratch}" || true' EXIT
load_scratch "$IN" {scratch}
echo "{m} checksums=$(checksums {scratch})"
echo "{m} live=$(checksums {db})"
"""
    )


def inspect_script(*, db: str, users: list[str], defaults_file: str) -> str:
    """Who uses the schema now, and its live table checksums and definitions (reads only)."""
    sql_name(db)
    m = dbtools.MARKER
    return (
        _header(defaults_file)
        + f"""
echo "{m} sessions=$(sessions {db} {q(user_list(users))})"
echo "{m} checksums=$(checksums {db})"
echo "{m} definitions=$(definitions {db})"
"""
    )


def sessions_script(*, db: str, users: list[str], defaults_file: str) -> str:
    """Who is connected to the schema or as one of the service's users now (reads only): a neutron
    contract with offline migrations pending waits until no server of the service is connected."""
    sql_name(db)
    return _header(defaults_file) + f'echo "{dbtools.MARKER} sessions=$(sessions {db} {q(user_list(users))})"\n'


def restore_script(
    *,
    db: str,
    path: str,
    defaults_file: str,
    sha256: str,
    charset: str,
    collation: str,
    lock_wait_timeout: int,
    users: list[str] | None = None,
) -> str:
    """Check the file, then the sessions, then drop and reload. Nothing is dropped when the file is
    missing or changed, or while a session of the service is open (the activity names them)."""
    sql_name(db)
    sql_name(charset, "charset", errors.RESTORE_FAILED)
    sql_name(collation, "collation", errors.RESTORE_FAILED)
    init = q(f"SET SESSION lock_wait_timeout={int(lock_wait_timeout)}")
    m = dbtools.MARKER
    return (
        _header(defaults_file)
        + f"""
IN={q(path)}
test -f "$IN" || {{ echo "{m} error=missing"; exit 3; }}
actual=$(sha256sum "$IN" | cut -d' ' -f1)
if [ "$actual" != {q(sha256)} ]; then echo "{m} error=sha256-mismatch actual=$actual"; exit 3; fi
busy=$(sessions {db} {q(user_list(users or []))})
if [ -n "$busy" ]; then echo "{m} error=in-use sessions=$busy"; exit 4; fi
mariadb --defaults-file="$DF" --init-command={init} \\
  -e "DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db} CHARACTER SET {charset} COLLATE {collation}"
mariadb --defaults-file="$DF" --init-command={init} {db} < "$IN"
echo "{m} checksums=$(checksums {db})"
"""
    )
