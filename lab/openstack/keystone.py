"""Keystone for the lab: one config and one database shared by every release, served by gunicorn.

All releases read the same keystone.conf, the same schema and the same fernet keys, exactly as the
pods of two releases do in a rolling upgrade: that is what lets the old release keep serving on an
expanded schema and lets tokens issued before an upgrade (or before a restore) stay valid.
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from lab.openstack import paths, procs

log = structlog.get_logger(__name__)

# keystone hands sys.argv to oslo.config, which rejects gunicorn's flags: truncate it first.
WSGI_MODULE = '''"""gunicorn entry point of the lab's Keystone (generated)."""
import sys

sys.argv = sys.argv[:1]
from keystone.server.wsgi import initialize_public_application  # noqa: E402 - after the argv truncation

application = initialize_public_application()
'''

# keystone-status loads the backends before it parses --config-file, so the key repositories fall
# back to /etc/keystone; this wrapper parses the configuration first, then runs the same checks.
STATUS_WRAPPER = '''"""keystone-status that honours --config-file (generated)."""
import sys

import keystone.conf
from keystone.cmd import status
from keystone.server import backends
from oslo_upgradecheck import upgradecheck

CONF = keystone.conf.CONF
keystone.conf.configure()
upgradecheck.register_cli_options(CONF, status.Checks())
CONF(args=sys.argv[1:], project="keystone")
backends.load_backends()
sys.exit(upgradecheck.run(CONF))
'''


def write_key_repository(directory: Path) -> None:
    """What `keystone-manage fernet_setup` writes (key 0 staged, key 1 primary), without its 3 s of
    imports: a Fernet key is 32 random bytes, urlsafe-base64 encoded."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for index in ("0", "1"):
        key_file = directory / index
        if not key_file.exists():
            key_file.write_bytes(base64.urlsafe_b64encode(os.urandom(32)))
            key_file.chmod(0o600)


@dataclass
class Keystone:
    base: Path  # lab directory
    port: int
    db_port: int
    db_password: str
    admin_password: str
    pid: int | None = None
    release: str | None = None
    # its schema and its MariaDB user (one name): the lab fleet's clouds share a MariaDB, each its own
    database: str = "keystone"
    # serve and stop one at a time: two threads serving at once (two lab controllers once did) would
    # each stop the pid they read, start their own, and the one whose pid is overwritten runs on unseen
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False, compare=False)

    @property
    def conf(self) -> Path:
        return self.base / "keystone.conf"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v3"

    @property
    def log_path(self) -> Path:
        return self.base / "keystone.log"

    def venv_link(self, release: str) -> Path:
        """Stable per-release path (`<lab>/venvs/keystone-X`) that plans can template with {version}."""
        return self.base / "venvs" / f"keystone-{release}"

    def write_files(self) -> None:
        for sub in ("fernet-keys", "fernet-receipts", "credential-keys"):
            (self.base / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.base / "venvs").mkdir(exist_ok=True)
        for release in paths.KEYSTONE_RELEASES:
            link = self.venv_link(release)
            target = paths.keystone_venv(release)
            if link.is_symlink() and os.readlink(link) == str(target):
                continue
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(target)
        (self.base / "keystone_wsgi.py").write_text(WSGI_MODULE)
        (self.base / "keystone_status.py").write_text(STATUS_WRAPPER)
        self.conf.write_text(
            "[DEFAULT]\n"
            "debug = false\n"
            "[database]\n"
            f"connection = mysql+pymysql://{self.database}:{self.db_password}@127.0.0.1:{self.db_port}/{self.database}"
            "?charset=utf8mb4\n"
            "[token]\n"
            "provider = fernet\n"
            "[fernet_tokens]\n"
            f"key_repository = {self.base / 'fernet-keys'}\n"
            "[fernet_receipts]\n"
            f"key_repository = {self.base / 'fernet-receipts'}\n"
            "[credential]\n"
            f"key_repository = {self.base / 'credential-keys'}\n"
            "# with caching on, a cached credential lacks encrypted_blob: PATCH/DELETE -> 500\n"
            "caching = false\n"
            "# test-only speed settings: 14 s instead of 123 s for the tempest smoke set\n"
            "[identity]\n"
            "password_hash_rounds = 4\n"
            "max_password_length = 72\n"
            "[cache]\n"
            "enabled = true\n"
            "backend = dogpile.cache.memory\n"
        )
        self.conf.chmod(0o600)

    # --- commands ------------------------------------------------------------------------------
    def manage_command(self, release: str) -> list[str]:
        """keystone-manage of `release` with the lab config ("{version}" is accepted as release)."""
        return [str(self.venv_link(release) / "bin" / "keystone-manage"), "--config-file", str(self.conf)]

    def status_command(self, release: str) -> list[str]:
        """`keystone-status upgrade check` of `release` with the lab config."""
        return [
            str(self.venv_link(release) / "bin" / "python"),
            str(self.base / "keystone_status.py"),
            "--config-file",
            str(self.conf),
            "upgrade",
            "check",
        ]

    def manage(self, release: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*self.manage_command(release), *args], capture_output=True, text=True)
        if check and done.returncode:
            raise RuntimeError(
                f"keystone-manage {' '.join(args)} ({release}) exited {done.returncode}:\n{done.stderr[-3000:]}"
            )
        return done

    def setup(self, release: str) -> None:
        """Keys, schema and bootstrap (admin user, RegionOne, identity endpoints) — first start only."""
        self.write_files()
        for sub in ("fernet-keys", "fernet-receipts", "credential-keys"):
            write_key_repository(self.base / sub)
        self.manage(release, "db_sync")
        self.manage(
            release,
            "bootstrap",
            "--bootstrap-password",
            self.admin_password,
            "--bootstrap-region-id",
            "RegionOne",
            "--bootstrap-admin-url",
            self.url,
            "--bootstrap-public-url",
            self.url,
            "--bootstrap-internal-url",
            self.url,
        )

    # --- serving -------------------------------------------------------------------------------
    def serve(self, release: str, timeout: float = 60.0) -> float:
        """Serve `release` (stopping whatever release served before); returns seconds to ready."""
        with self._lock:
            return self._serve(release, timeout)

    def _serve(self, release: str, timeout: float) -> float:
        self.stop()
        self.write_files()
        venv = self.venv_link(release)
        env = dict(os.environ, OS_KEYSTONE_CONFIG_FILES=str(self.conf))
        env.pop("OS_KEYSTONE_CONFIG_DIR", None)
        with open(self.log_path, "a") as handle:
            handle.write(f"\n===== serving keystone {release} =====\n")
        self.pid = procs.start_detached(
            [
                str(venv / "bin" / "gunicorn"),
                "--chdir",
                str(self.base),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "1",
                "--timeout",
                "120",
                "--graceful-timeout",
                "3",
                "--name",
                f"keystone-{release}",
                "keystone_wsgi:application",
            ],
            self.log_path,
            env=env,
            program="keystone",  # also in gunicorn's retitled command line: "gunicorn: master [keystone-...]"
        )
        self.release = release
        seconds = procs.wait_for(self.ready, timeout, f"keystone {release}", pid=self.pid, log=self.log_path)
        log.info("keystone_serving", release=release, port=self.port, pid=self.pid, seconds=round(seconds, 2))
        return seconds

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url, timeout=2) as response:
                status: int = response.status
                return status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def stop(self) -> None:
        with self._lock:
            procs.stop(self.pid, timeout=10)
            self.pid = None
            self.release = None
