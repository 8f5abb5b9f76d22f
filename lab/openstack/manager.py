"""The OpenStack lab manager: bring MariaDB + Keystone (+ tempest workspace) up, serve a release,
report status, tear down.

State (ports, pids, generated passwords) is persisted in `<lab>/state.json` so that `stackhop lab
openstack up` in one shell and `status`/`down` in another (or a pytest run) act on the same servers.
Passwords are generated per lab and live only in files under the lab directory (mode 0600).
"""

from __future__ import annotations

import json
import secrets
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import yaml

from lab.openstack import install, paths, procs, tempest_ws
from lab.openstack.keystone import Keystone
from lab.openstack.mariadb import MariaDB

log = structlog.get_logger(__name__)

DEFAULT_RELEASE = paths.KEYSTONE_RELEASES[0]
ADMIN_CLOUD = "lab-admin"
SYSTEM_CLOUD = "lab-system"


@dataclass
class OpenStackLab:
    base: Path = field(default_factory=paths.lab_dir)
    mariadb: MariaDB | None = None
    keystone: Keystone | None = None
    bootstrapped: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    # --- persistence ---------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.base / "state.json"

    @classmethod
    def load(cls, base: Path | None = None) -> OpenStackLab:
        lab = cls(base=base or paths.lab_dir())
        if lab.state_file.exists():
            state = json.loads(lab.state_file.read_text())
            mariadb = {**state["mariadb"], "pid": procs.adopt(state["mariadb"].get("pid"), "mariadbd")}
            keystone = {**state["keystone"], "pid": procs.adopt(state["keystone"].get("pid"), "keystone")}
            lab.mariadb = MariaDB(base=lab.base / "mariadb", **mariadb)
            lab.keystone = Keystone(base=lab.base / "keystone", **keystone)
            lab.bootstrapped = state.get("bootstrapped", False)
        return lab

    def save(self) -> None:
        assert self.mariadb and self.keystone
        state = {
            "mariadb": {
                "port": self.mariadb.port,
                "admin_password": self.mariadb.admin_password,
                "pid": procs.record(self.mariadb.pid),
            },
            "keystone": {
                "port": self.keystone.port,
                "db_port": self.keystone.db_port,
                "db_password": self.keystone.db_password,
                "admin_password": self.keystone.admin_password,
                "pid": procs.record(self.keystone.pid),
                "release": self.keystone.release,
                "database": self.keystone.database,
            },
            "bootstrapped": self.bootstrapped,
        }
        paths.write_private(self.state_file, json.dumps(state, indent=2))

    # --- lifecycle -----------------------------------------------------------------------------
    def up(self, release: str | None = None) -> dict[str, float]:
        """Install what is missing, start MariaDB, set Keystone up once, serve `release` (default:
        the release already serving, else the oldest)."""
        started = time.monotonic()
        release = (
            release
            or (self.keystone.release if self.keystone and procs.alive(self.keystone.pid) else None)
            or DEFAULT_RELEASE
        )
        install.ensure_all()
        self.timings["install"] = time.monotonic() - started
        if self.mariadb is None or self.keystone is None:
            db_port = paths.free_port()
            self.mariadb = MariaDB(base=self.base / "mariadb", port=db_port)
            self.keystone = Keystone(
                base=self.base / "keystone",
                port=paths.free_port(),
                db_port=db_port,
                db_password=secrets.token_hex(12),
                admin_password=secrets.token_hex(12),
            )
        t0 = time.monotonic()
        self.mariadb.start()
        self.timings["mariadb"] = time.monotonic() - t0
        self.save()
        if not self.bootstrapped:
            t0 = time.monotonic()
            db = self.keystone.database
            self.mariadb.create_service_database(db, db, self.keystone.db_password)
            self.keystone.setup(release)
            self.bootstrapped = True
            self.save()
            self.timings["keystone_setup"] = time.monotonic() - t0
        if self.keystone.release != release or not procs.alive(self.keystone.pid):
            t0 = time.monotonic()
            self.serve(release)
            self.timings["keystone_serve"] = time.monotonic() - t0
        self.write_clouds_yaml()
        t0 = time.monotonic()
        tempest_ws.create(self.base, auth_url=self.keystone.url, admin_password=self.keystone.admin_password)
        self.timings["tempest_workspace"] = time.monotonic() - t0
        self.timings["total"] = time.monotonic() - started
        log.info("openstack_lab_up", release=release, **{k: round(v, 2) for k, v in self.timings.items()})
        return self.timings

    def serve(self, release: str) -> float:
        if release not in paths.KEYSTONE_RELEASES:
            raise ValueError(f"unknown keystone release {release!r}; the lab has {paths.KEYSTONE_RELEASES}")
        assert self.keystone
        try:
            return self.keystone.serve(release)
        finally:
            self.save()

    def stop_keystone(self) -> None:
        """Stop the API (what scaling the Deployment to 0 does in a cluster)."""
        assert self.keystone
        self.keystone.stop()
        self.save()

    def down(self, purge: bool = False) -> None:
        if self.keystone:
            self.keystone.stop()
        if self.mariadb:
            self.mariadb.stop()
        if self.mariadb and self.keystone:
            self.save()
        if purge and self.base.exists():
            shutil.rmtree(self.base)
            self.mariadb = self.keystone = None
            self.bootstrapped = False

    def status(self) -> dict[str, Any]:
        mariadb_up = bool(self.mariadb and procs.alive(self.mariadb.pid))
        keystone_up = bool(self.keystone and procs.alive(self.keystone.pid) and self.keystone.ready())
        return {
            "lab_dir": str(self.base),
            "installed": install.all_installed(),
            "mariadb": {
                "up": mariadb_up,
                "port": self.mariadb.port if self.mariadb else None,
                "pid": self.mariadb.pid if mariadb_up and self.mariadb else None,
            },
            "keystone": {
                "up": keystone_up,
                "release": self.keystone.release if keystone_up and self.keystone else None,
                "url": self.keystone.url if self.keystone else None,
                "pid": self.keystone.pid if keystone_up and self.keystone else None,
            },
            "clouds_yaml": str(self.clouds_yaml),
            "tempest_workspace": str(tempest_ws.workspace(self.base)),
        }

    # --- baseline (fast reset between tests) ----------------------------------------------------
    @property
    def baseline_file(self) -> Path:
        return self.base / "baseline-keystone.sql"

    def save_baseline(self) -> Path:
        """Dump the freshly bootstrapped keystone schema (lab plumbing, not the activity under test)."""
        assert self.mariadb and self.keystone
        dump = install.find_tool("mariadb-dump") or "mariadb-dump"
        with open(self.baseline_file, "wb") as out:
            subprocess.run(
                [dump, f"--defaults-file={self.mariadb.defaults_file}", "--single-transaction", self.keystone.database],
                stdout=out,
                check=True,
            )
        return self.baseline_file

    def reset(self, release: str = DEFAULT_RELEASE) -> float:
        """Back to the bootstrapped schema, serving `release`: what each upgrade test starts from."""
        assert self.mariadb and self.keystone
        started = time.monotonic()
        self.stop_keystone()
        client = install.find_tool("mariadb") or "mariadb"
        db = self.keystone.database
        self.mariadb.sql(
            f"DROP DATABASE IF EXISTS `{db}`; CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
        )
        with open(self.baseline_file, "rb") as dump:
            subprocess.run([client, f"--defaults-file={self.mariadb.defaults_file}", db], stdin=dump, check=True)
        self.serve(release)
        return time.monotonic() - started

    # --- client configuration ------------------------------------------------------------------
    @property
    def clouds_yaml(self) -> Path:
        return self.base / "clouds.yaml"

    def write_clouds_yaml(self) -> Path:
        assert self.keystone
        auth = {
            "auth_url": self.keystone.url,
            "username": "admin",
            "password": self.keystone.admin_password,
            "user_domain_name": "Default",
        }
        common = {"region_name": "RegionOne", "identity_api_version": 3, "interface": "public"}
        clouds = {
            "clouds": {
                ADMIN_CLOUD: {"auth": {**auth, "project_name": "admin", "project_domain_name": "Default"}, **common},
                SYSTEM_CLOUD: {"auth": {**auth, "system_scope": "all"}, **common},
            }
        }
        paths.write_private(self.clouds_yaml, yaml.safe_dump(clouds, sort_keys=False))
        return self.clouds_yaml

    def worker_env(self) -> dict[str, str]:
        """Environment for a stackhop worker whose local runners act on this lab (plans then need
        no machine-specific paths: see activities/*.py for each variable)."""
        assert self.mariadb and self.keystone
        return {
            "OS_CLIENT_CONFIG_FILE": str(self.clouds_yaml),
            "STACKHOP_DB_DEFAULTS_FILE": str(self.mariadb.defaults_file),
            "STACKHOP_SNAPSHOT_DIR": str(self.base / "snapshots"),
            "STACKHOP_KEYSTONE_MANAGE": shlex.join(self.keystone.manage_command("{version}")),
            "STACKHOP_KEYSTONE_STATUS": shlex.join(self.keystone.status_command("{version}")),
            "STACKHOP_TEMPEST_WORKSPACE": str(self.tempest_workspace),
            "STACKHOP_TEMPEST_COMMAND": str(tempest_ws.tempest_bin()),
        }

    @property
    def tempest_workspace(self) -> Path:
        return tempest_ws.workspace(self.base)
