"""What one OpenStack service of the cloud lab is: its releases, databases, configuration, first
set-up, and the programs its pods run.

The cloud (``lab/openstack/cloud.py``) owns what every service shares: MariaDB, the RabbitMQ node,
Keystone, the lab proxy and the process of each pod. A service module owns everything particular to
its service and nothing else, so adding a service is one module (plus its chart and lock files).

Lifecycle, driven by the cloud:

1. the cloud creates every database in :attr:`ServiceLab.databases` and one MariaDB user named like
   the service (password ``ctx.db_password``) with all rights on each;
2. the cloud registers the service in Keystone: a user named like the service (``ctx.service_password``)
   with the admin role in project ``service``, and when :attr:`ServiceLab.catalog` is set, the
   service and its public/internal/admin endpoints at ``ctx.endpoints[name]`` (the proxy's stable
   port, never a pod's own port);
3. ``write_config(ctx)`` writes the service's configuration under ``ctx.base`` (one config for both
   releases wherever the releases accept the same options);
4. ``bootstrap(ctx, release)`` brings the databases to ``release`` and does the service's own
   first set-up (nova: cell0/cell1 mapping; neutron: nothing more);
5. per pod (or per workload when no Kubernetes lab runs), the cloud starts
   ``program.command(...)`` for the pod's release, on a free loopback port, and routes the service's
   proxy port to it once it is ready: for an API, when the port answers HTTP; for the others, while
   the process lives and ``ready(ctx, program, host)`` says yes.

Releases are the OpenStack release names (``2025.2``); each maps to the service's PyPI version, and
a venv per version is built from ``lab/openstack/locks/<service>-<version>.txt`` and cached by the
lock's hash (``lab/openstack/install.py``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from lab.openstack import paths
from lab.openstack.mariadb import MariaDB

#: The releases of the cloud lab, oldest first: the cloud comes up at the first.
RELEASES: tuple[str, ...] = ("2025.2", "2026.1")


@dataclass(frozen=True)
class Program:
    """What one pod of a workload runs.

    ``argv`` may hold the placeholders ``{bin}`` (the release venv's bin directory), ``{etc}`` (the
    service's config directory, ``ctx.base``), ``{port}`` (the pod's own loopback port), ``{host}``
    (the pod's node name: nova-compute's ``host``) and ``{release}``.
    """

    workload: str  # the Deployment/DaemonSet name in the service's chart, e.g. "nova-api"
    kind: Literal["Deployment", "DaemonSet"]
    argv: tuple[str, ...]
    api: bool = False  # serves the service's HTTP API on {port}: ready when it answers, routed by the proxy
    health_path: str = "/"  # what the readiness check GETs on an API (any answer below 500 is ready)
    env: Mapping[str, str] = field(default_factory=dict)

    def command(self, venv: Path, etc: Path, port: int, host: str, release: str) -> list[str]:
        values = {"bin": str(venv / "bin"), "etc": str(etc), "port": str(port), "host": host, "release": release}
        return [arg.format(**values) for arg in self.argv]


@dataclass
class Context:
    """What the cloud gives a service: where it lives and how to reach what it shares."""

    base: Path  # this service's directory, <cloud>/<service>/: configs, logs, keys
    mariadb: MariaDB
    transport_url: str  # rabbit://USER:PW@127.0.0.1:PORT/
    auth_url: str  # Keystone's public URL through the proxy, e.g. http://127.0.0.1:P/v3
    admin_password: str  # Keystone's admin (project admin, domain Default)
    service_password: str  # this service's Keystone user (named like the service, project "service")
    db_password: str  # this service's MariaDB user (named like the service)
    endpoints: Mapping[str, str]  # catalog URL of every service of the cloud: "placement" -> http://127.0.0.1:P
    hosts: tuple[str, ...] = ("lab-node-0",)  # the lab's nodes; nova-compute runs one per node, host = node

    def keystone_authtoken(self) -> str:
        """The ``[keystone_authtoken]`` section of an API service's config: tokens validated as its
        own service user."""
        return (
            "[keystone_authtoken]\n"
            f"www_authenticate_uri = {self.auth_url}\n"
            f"auth_url = {self.auth_url}\n"
            "auth_type = password\n"
            "project_domain_name = Default\n"
            "user_domain_name = Default\n"
            "project_name = service\n"
            f"username = {self.base.name}\n"
            f"password = {self.service_password}\n"
        )

    def db_url(self, database: str) -> str:
        """SQLAlchemy URL of one of this service's databases, as its config needs it."""
        user = self.base.name
        return f"mysql+pymysql://{user}:{self.db_password}@127.0.0.1:{self.mariadb.port}/{database}?charset=utf8"


class ServiceLab(Protocol):
    name: str  # "nova"; also its MariaDB and Keystone user names
    versions: Mapping[str, str]  # release -> PyPI version: {"2025.2": "32.2.1", "2026.1": "33.0.2"}
    databases: tuple[str, ...]  # every database it uses, e.g. ("nova_api", "nova_cell0", "nova")
    catalog: tuple[str, str] | None  # (service type, path after the endpoint URL), e.g. ("compute", "/v2.1")

    def write_config(self, ctx: Context) -> None: ...

    def bootstrap(self, ctx: Context, release: str) -> None: ...

    def programs(self, release: str) -> list[Program]:
        """Every workload of ``release`` (the set may change between releases: neutron 2026.1 has no
        neutron-server)."""
        ...

    def ready(self, ctx: Context, program: Program, host: str) -> bool:
        """For a program that is not an API: whether its pod is ready (e.g. nova-compute's service
        record is up). An API is ready when its port answers; this is not asked for it."""
        ...

    def manage_command(self, ctx: Context, release: str) -> list[str]:
        """The service's manage tool for ``release`` with its config options, e.g.
        ``[.../nova-manage, --config-file, .../nova.conf]`` (the migration activity appends the phase)."""
        ...

    def status_command(self, ctx: Context, release: str) -> list[str]:
        """``<service>-status --config-file ...`` for ``release`` (``upgrade check`` is appended)."""
        ...


def gunicorn(app: str, name: str, *options: str) -> tuple[str, ...]:
    """``Program.argv`` of an API pod: gunicorn with one worker on the pod's port, in the service's
    config directory (where the generated WSGI modules are), named ``<name>-<release>``."""
    return (
        "{bin}/gunicorn",
        "--chdir",
        "{etc}",
        "--bind",
        "127.0.0.1:{port}",
        "--workers",
        "1",
        "--timeout",
        "120",
        "--graceful-timeout",
        "5",
        "--name",
        name + "-{release}",
        *options,
        app,
    )


def venv(service: str, release: str, versions: Mapping[str, str]) -> Path:
    """The cached venv of a service release (built by ``lab.openstack.install``)."""
    return paths.venv_dir(f"{service}-{versions[release]}")


def run(argv: list[str], log: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run a set-up command, its output appended to ``log``; a failure raises with the output's tail."""
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    with open(log, "a") as out:
        out.write(f"$ {' '.join(argv)}\n{done.stdout}{done.stderr}")
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise RuntimeError(f"`{' '.join(argv)}` exited {done.returncode}:\n{tail}")
    return done
