"""The lab's own RabbitMQ node: Debian's rabbitmq-server, bound to loopback, state under the lab dir.

Never the packaged system service: the node runs from ``/usr/lib/rabbitmq/bin/rabbitmq-server``
with its config, Mnesia and logs under ``<cloud>/rabbitmq`` and its own Erlang cookie (``HOME``),
on free ports; the distribution port is pinned to 127.0.0.1 too (without the extra Erlang argument
it binds every interface). One vhost ``/`` and one user ``openstack`` shared by the services, as
openstack-helm's RabbitMQ chart gives them.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from lab.openstack import paths, procs

SBIN = Path("/usr/lib/rabbitmq/bin")


def installed() -> bool:
    return (SBIN / "rabbitmq-server").exists()


@dataclass
class RabbitMQ:
    base: Path
    port: int = field(default_factory=paths.free_port)
    dist_port: int = field(default_factory=paths.free_port)
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    pid: int | None = None
    user: str = "openstack"

    @property
    def node(self) -> str:
        return f"stackhop{self.port}@localhost"

    @property
    def url(self) -> str:
        """oslo.messaging transport_url."""
        return f"rabbit://{self.user}:{self.password}@127.0.0.1:{self.port}/"

    @property
    def log_path(self) -> Path:
        return self.base / "rabbitmq-server.out"

    def env(self) -> dict[str, str]:
        return dict(
            os.environ,
            HOME=str(self.base),
            RABBITMQ_CONFIG_FILE=str(self.base / "rabbitmq"),
            RABBITMQ_MNESIA_BASE=str(self.base / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.base / "log"),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_DIST_PORT=str(self.dist_port),
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.base / "enabled_plugins"),
        )

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(SBIN / "rabbitmqctl"), "-n", self.node, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and done.returncode:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")
        return done

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass
        except OSError:
            return False
        return self.ctl("await_startup", "--timeout", "5", check=False).returncode == 0

    def start(self, timeout: float = 120.0) -> float:
        """Start the node (first start: config, then the user); returns seconds to ready."""
        if procs.alive(self.pid) and self._answers():
            return 0.0
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "loopback_users = none\n"
            "management.tcp.ip = 127.0.0.1\n"
            "vm_memory_high_watermark.relative = 0.2\n"
            "disk_free_limit.absolute = 50MB\n"
        )
        (self.base / "enabled_plugins").write_text("[].\n")
        # the script execs the Erlang VM: its command line keeps "rabbit", not the script's name
        self.pid = procs.start_detached(
            [str(SBIN / "rabbitmq-server")], self.log_path, env=self.env(), program="rabbit"
        )
        seconds = procs.wait_for(self._answers, timeout, "rabbitmq", pid=self.pid, log=self.log_path)
        users = self.ctl("list_users", "--quiet").stdout
        if self.user not in users.split():
            self.ctl("add_user", self.user, self.password)
            self.ctl("set_permissions", "-p", "/", self.user, ".*", ".*", ".*")
        return seconds

    def stop(self) -> None:
        if procs.alive(self.pid):
            self.ctl("stop", check=False)
        procs.stop(self.pid, timeout=20)
        self.pid = None
