"""The redaction filter (model/redact.py) on real output of the tools the worker runs, and at the
worker's boundary (activities/boundary.py). Every output here is produced live (each tool answers
in well under a second without a server): MariaDB's client echoing its option file, helm rendering
a lab chart with a password and a database URL, a Fernet token of the kind Keystone issues.
Beside it, the worker's rules that need no Temporal: snapshot retention and the command allow-list
(the admission itself: tests/workflows/test_admission.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from temporalio.exceptions import ApplicationError

from activities import retention
from activities.boundary import redacted_error
from lab.k8s.versions import helm_bin
from model import errors, io, redact, trust

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "Sup3r-S3cret-Pw"  # not a word of any output: a leak is found by value
DB_PASSWORD = "Db5ecretPassw0rd"


def option_file(tmp_path: Path, *extra: str) -> Path:
    f = tmp_path / "my.cnf"
    f.write_text("[client]\nhost=127.0.0.1\nport=1\nuser=admin\n" + "".join(f"{line}\n" for line in extra))
    return f


def test_the_mariadb_client_echoing_option_file_lines(tmp_path: Path) -> None:
    printed = subprocess.run(
        ["mariadb", f"--defaults-file={option_file(tmp_path, f'password={PASSWORD}')}", "--print-defaults"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # the option file's lines, as MariaDB echoes an unknown one on error
    refused = subprocess.run(
        ["mariadb", f"--defaults-file={option_file(tmp_path, f'db_password={PASSWORD}')}", "-e", "select 1"],
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0
    for out in (printed, refused.stderr):
        assert PASSWORD in out  # the tool does echo it
        masked = redact.redact(out)
        assert PASSWORD not in masked and "***" in masked
    assert "--user=admin" in redact.redact(printed)  # only the secret goes


def test_a_registered_secret_is_masked_wherever_it_appears(tmp_path: Path) -> None:
    """The password of an option file an activity read (database.defaults_file) is masked even in a
    line no pattern recognises (the connection error of a URL-less tool, a shell trace)."""
    secret = "Zq7-unguessable-41"
    redact.register_option_file(str(option_file(tmp_path, f'password="{secret}"')))
    line = f"+ mariadb -u admin -p{secret} keystone"
    assert redact.redact(line) == "+ mariadb -u admin -p*** keystone"
    redact.register("short")  # shorter than MIN_SECRET_LENGTH: not masked by value
    assert redact.redact("shortcut") == "shortcut"


def test_helm_output_with_values_holding_a_password_and_a_database_url() -> None:
    chart = ROOT / "lab" / "charts" / "keystone-2026.1.0"
    out = subprocess.run(
        [
            str(helm_bin()),
            "install",
            "keystone",
            str(chart),
            "--dry-run=client",
            "--debug",
            "--set",
            f"endpoints.identity.auth.admin.password={PASSWORD}",
            "--set",
            f"conf.keystone.database.connection=mysql+pymysql://keystone:{DB_PASSWORD}@mariadb/keystone",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert PASSWORD in out and DB_PASSWORD in out  # helm prints the user-supplied values
    masked = redact.redact(out)
    assert PASSWORD not in masked and DB_PASSWORD not in masked
    assert "mysql+pymysql://keystone:***@mariadb/keystone" in masked
    assert "kind: Deployment" in masked  # the rest of the output is untouched


def test_tokens_and_headers() -> None:
    token = Fernet(Fernet.generate_key()).encrypt(b"keystone token payload" * 4).decode()
    assert token.startswith("gAAAAA")
    text = f"REQ: curl -g -i -X GET http://k:5000/v3 -H 'X-Auth-Token: {token}' -H 'Authorization: Bearer abc.def'"
    masked = redact.redact(text)
    assert token not in masked and "abc.def" not in masked and "X-Auth-Token: ***" in masked
    assert redact.redact(f"validated {token}") == "validated ***"  # a token alone, with no key
    # a Secret's *name* stays: it says where the credentials are, and holds none
    assert redact.redact("credentials_secret: keystone-db") == "credentials_secret: keystone-db"


def test_the_boundary_redacts_results_errors_and_log_fields() -> None:
    err = errors.permanent(
        errors.MIGRATION_FAILED,
        f"db_sync failed: sqlalchemy url mysql+pymysql://nova:{DB_PASSWORD}@db/nova",
        output=f"password={PASSWORD}\nline 2",
    )
    out = redacted_error(err)
    assert isinstance(out, ApplicationError)
    assert out.type == errors.MIGRATION_FAILED and out.non_retryable
    assert DB_PASSWORD not in out.message and PASSWORD not in str(out.details)
    result = io.CheckResult(status="fail", message=f"token={PASSWORD}", details={"output": f"pwd={PASSWORD}", "n": 3})
    cleaned = redact.redact_value(result)
    assert PASSWORD not in cleaned.model_dump_json() and cleaned.details["n"] == 3
    # a result's keys are data: keystone's tables "password" and "credential" keep their checksums
    snap = io.Snapshot(
        service="keystone",
        database="keystone",
        location="/s/k.sql",
        sha256="ab" * 32,
        size_bytes=1,
        table_checksums={"password": "123456789", "credential": "42"},
    )
    assert redact.redact_value(snap) is snap
    event = redact.redact_event(None, "info", {"event": "x", "db_password": PASSWORD, "tail": f"passwd={PASSWORD}"})
    assert PASSWORD not in str(event)


def test_retention_keeps_the_newest_and_what_an_unfinished_upgrade_may_need(tmp_path: Path) -> None:
    now = 1_000_000_000.0
    old = now - retention.PROTECT_SECONDS - 1
    files = {}
    for i, (name, mtime) in enumerate(
        [("a", old - 30), ("b", old - 20), ("c", old - 10), ("recent", now - 60), ("other-db", old - 40)]
    ):
        p = tmp_path / (
            f"keystone-keystone-upgrade_{name}.sql" if name != "other-db" else "keystone-other-upgrade_x.sql"
        )
        p.write_text(str(i))
        import os

        os.utime(p, (mtime, mtime))
        files[name] = p
    new = tmp_path / "keystone-keystone-upgrade_new.sql"
    new.write_text("new")
    deleted = retention.prune(new, "keystone", "keystone", keep=3, now=now)
    # kept: the new one, "recent" (newest) and "c"; "a" and "b" are older and past the protection window
    assert sorted(Path(p).name for p in deleted) == [
        "keystone-keystone-upgrade_a.sql",
        "keystone-keystone-upgrade_b.sql",
    ]
    assert new.exists() and files["recent"].exists() and files["c"].exists() and files["other-db"].exists()
    # the protection window: with keep=1, a recent file of another upgrade still stays
    assert retention.prune(new, "keystone", "keystone", keep=1, now=now) == [str(files["c"])]
    assert files["recent"].exists()


def test_the_snapshot_script_writes_a_private_file() -> None:
    from activities.db_scripts import snapshot_script

    script = snapshot_script(db="keystone", path="/srv/s/k.sql", defaults_file="/etc/my.cnf")
    assert script.index("umask 077") < script.index("mariadb-dump")
    assert 'chmod 600 "$OUT"' in script


def test_allowed_commands_are_matched_after_dot_dot(monkeypatch: pytest.MonkeyPatch) -> None:
    """The allow-list's patterns cannot be left through ``..`` (fnmatch's * matches "/")."""
    monkeypatch.setenv(trust.ALLOWED_COMMANDS_ENV, "/opt/venvs/*/bin/keystone-manage")
    assert trust.command_allowed(["/opt/venvs/keystone-{version}/bin/keystone-manage", "db_sync"])
    assert trust.command_allowed(["keystone-manage"])  # the recipe's own tool, on the worker's PATH
    assert not trust.command_allowed(["/opt/venvs/../../tmp/x/bin/keystone-manage"])
    assert not trust.command_allowed(["bash", "-c", "keystone-manage"])
