"""A private MariaDB server for the lab: Debian's binaries, our own data dir and loopback port.

No systemd and no system-wide state: `mariadb-install-db` initialises a data dir under the lab
directory and `mariadbd` runs detached with a generated my.cnf.  Clients (the lab, and the
activities under test) authenticate with a MariaDB *defaults file* — the same mechanism a plan uses
so passwords never appear inline in a plan or on a command line.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from lab.openstack import paths, procs
from lab.openstack.install import find_tool

log = structlog.get_logger(__name__)

ADMIN_USER = "stackhop_admin"


@dataclass
class MariaDB:
    """One MariaDB server rooted at `base` (data, socket, pid, logs, option files)."""

    base: Path
    port: int
    admin_password: str = field(default_factory=lambda: secrets.token_hex(12))
    pid: int | None = None

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def socket(self) -> Path:
        return self.base / "mysqld.sock"

    @property
    def server_cnf(self) -> Path:
        return self.base / "my.cnf"

    @property
    def defaults_file(self) -> Path:
        """Client option file with the admin credentials (mode 0600)."""
        return self.base / "admin.cnf"

    @property
    def log_path(self) -> Path:
        return self.base / "mariadbd.log"

    @property
    def general_log_path(self) -> Path:
        """Every statement of every session, when ``general_log(True)`` turned it on: the fault
        suite counts DDL, DROP DATABASE and migration revisions from it."""
        return self.base / "general.log"

    def _write_server_cnf(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        paths.write_private(
            self.server_cnf,
            "[mariadbd]\n"
            f"datadir={self.datadir}\n"
            f"socket={self.socket}\n"
            f"pid-file={self.base / 'mariadbd.pid'}\n"
            f"port={self.port}\n"
            "bind-address=127.0.0.1\n"
            "user=root\n"
            "skip-name-resolve\n"
            "skip-log-bin\n"
            "innodb_buffer_pool_size=128M\n"
            "innodb_log_file_size=48M\n"
            "innodb_flush_log_at_trx_commit=2\n"
            # a lab: no fsync of data files, no doublewrite (the OS keeps what a killed server wrote;
            # only a host crash could lose it). Loading nova's three baseline dumps: 10.8 s -> 8.3 s
            "innodb_flush_method=nosync\n"
            "innodb_doublewrite=0\n"
            "character-set-server=utf8mb4\n"
            "collation-server=utf8mb4_general_ci\n"
            "max_connections=200\n",
        )

    def _write_client_cnf(self) -> None:
        paths.write_private(
            self.defaults_file,
            f"[client]\nhost=127.0.0.1\nport={self.port}\nuser={ADMIN_USER}\npassword={self.admin_password}\n",
        )

    def initialise(self) -> None:
        """Create a fresh data dir (1 s) unless one exists already."""
        self._write_server_cnf()
        if (self.datadir / "mysql").exists():
            return
        tool = find_tool("mariadb-install-db")
        if tool is None:
            raise RuntimeError("mariadb-install-db not found: run `python -m lab.openstack.install`")
        subprocess.run(
            [
                tool,
                f"--defaults-file={self.server_cnf}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
        )

    def start(self, timeout: float = 30.0, general_log: bool = False) -> float:
        """Start mariadbd and create the admin user; returns seconds until it answered.
        ``general_log``: logging from its first session on (a restart must not leave a gap)."""
        if procs.alive(self.pid):
            return 0.0
        self.initialise()
        server = find_tool("mariadbd")
        if server is None:
            raise RuntimeError("mariadbd not found: run `python -m lab.openstack.install`")
        args = [server, f"--defaults-file={self.server_cnf}"]
        if general_log:
            args += ["--general-log=ON", f"--general-log-file={self.general_log_path}"]
        self.pid = procs.start_detached(args, self.log_path)
        seconds = procs.wait_for(self._socket_ping, timeout, "mariadbd", pid=self.pid, log=self.log_path)
        self._root_sql(
            f"CREATE USER IF NOT EXISTS '{ADMIN_USER}'@'127.0.0.1' IDENTIFIED BY '{self.admin_password}';"
            f"ALTER USER '{ADMIN_USER}'@'127.0.0.1' IDENTIFIED BY '{self.admin_password}';"
            f"GRANT ALL PRIVILEGES ON *.* TO '{ADMIN_USER}'@'127.0.0.1' WITH GRANT OPTION;"
        )
        self._write_client_cnf()
        log.info("mariadb_started", port=self.port, pid=self.pid, seconds=round(seconds, 2))
        return seconds

    def stop(self) -> None:
        procs.stop(self.pid, timeout=30)
        self.pid = None

    def restart(self, timeout: float = 30.0) -> float:
        """Stop (a clean shutdown: sessions are cut) and start again on the same port and data dir;
        the general log stays as it was. Returns the seconds the server was away."""
        logging = self.general_log_on()
        started = time.monotonic()
        self.stop()
        self.start(timeout=timeout, general_log=logging)
        return time.monotonic() - started

    def general_log(self, on: bool) -> None:
        """Turn the general query log (``general_log_path``) on or off, without a restart."""
        path = str(self.general_log_path).replace("'", "''")
        self._root_sql(f"SET GLOBAL general_log_file = '{path}'; SET GLOBAL general_log = {int(on)}")

    def general_log_on(self) -> bool:
        return self._root_sql("SELECT @@general_log").strip() == "1"

    def _socket_ping(self) -> bool:
        if not self.socket.exists():
            return False
        done = subprocess.run(
            [find_tool("mariadb-admin") or "mariadb-admin", f"--socket={self.socket}", "--user=root", "ping"],
            capture_output=True,
        )
        return done.returncode == 0

    def _root_sql(self, sql: str) -> str:
        done = subprocess.run(
            [find_tool("mariadb") or "mariadb", f"--socket={self.socket}", "--user=root", "-N", "-B", "-e", sql],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise RuntimeError(f"mariadb: {done.stderr.strip()}")
        return done.stdout

    def sql(self, sql: str, database: str | None = None) -> str:
        """Run SQL as the admin over TCP (as clients do); return tab-separated rows."""
        argv = [find_tool("mariadb") or "mariadb", f"--defaults-file={self.defaults_file}", "-N", "-B"]
        if database:
            argv.append(database)
        done = subprocess.run([*argv, "-e", sql], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"mariadb: {done.stderr.strip()}")
        return done.stdout

    def create_service_database(self, name: str, user: str, password: str) -> None:
        """The usual OpenStack layout: one schema and one user per service."""
        self.sql(
            f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;"
            f"CREATE USER IF NOT EXISTS '{user}'@'127.0.0.1' IDENTIFIED BY '{password}';"
            f"GRANT ALL PRIVILEGES ON `{name}`.* TO '{user}'@'127.0.0.1';"
        )
