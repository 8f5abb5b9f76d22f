"""Neutron in the cloud lab: ML2 without agents, the API as WSGI, an RPC server and the periodic workers.

Networking backend: **ML2 without agents, no OVN.** Type drivers ``local`` (project networks: no
segmentation ids to allocate, nothing outside the database) and ``flat`` (provider networks on
``physnet1``, for admins); no mechanism driver (none of neutron's real ones binds a port without an
agent or OVN), no service plugins, no DHCP scheduling (``enable_traditional_dhcp = false``).
Networks, subnets, ports and security groups are created, listed and deleted through the real API
and stored in the real schema; ports stay unbound (``binding:vif_type`` ``unbound``, or
``binding_failed`` once a host is set, e.g. when nova binds an instance's port).

Workloads (named as openstack-helm's neutron chart names its Deployments):

============================ ================================================================ =========
workload                     2025.2 (neutron 27.0.4) and 2026.1 (neutron 28.0.2)               kind
============================ ================================================================ =========
``neutron-server``           the API: ``neutron.wsgi.api:application`` under gunicorn, 1 worker Deployment
``neutron-rpc-server``       ``neutron-rpc-server`` (agents' RPC; ``rpc_workers = 1``)          Deployment
``neutron-periodic-workers``  ``neutron-periodic-workers`` (the plugins' periodic tasks)          Deployment
============================ ================================================================ =========

The set is **the same in both releases**: neither 27.0.4 nor 28.0.2 has a ``neutron-server`` console
script. Neutron serves its API only through WSGI since 2025.1 (its docs, "Neutron server-side
processes": "Since OpenStack Epoxy (2025.1), the Neutron API is served exclusively through a WSGI
server"); both releases ship the same entry points (``neutron-api`` as a pbr wsgi script,
``neutron-rpc-server``, ``neutron-periodic-workers``, ``neutron-ovn-maintenance-worker``, the last
for ML2/OVN only) and the same ``neutron/cmd/server`` and ``neutron/server`` modules. The chart's
``neutron-server`` Deployment therefore runs the WSGI API in both. gunicorn serves it (it is in both
lock files; uWSGI is not): the generated ``neutron_wsgi.py`` hands neutron's oslo.config its own
``--config-file`` arguments instead of gunicorn's command line, which it would reject.

Schema: ``neutron-db-manage upgrade heads`` at bootstrap. Between 27.0.4 and 28.0.2 there is one
expand revision (``b1bca967e19d``: a unique constraint on ``network_segment_ranges``, after filling
``physical_network`` and deleting duplicate rows) and no contract revision: the contract head is
``5c85685d616d`` (Newton) in both, as in every release since Newton.
"""

from __future__ import annotations

from pathlib import Path

from lab.openstack.services.base import RELEASES, Context, Program, gunicorn, run, venv

VERSIONS: dict[str, str] = {"2025.2": "27.0.4", "2026.1": "28.0.2"}

# neutron's WSGI module parses sys.argv with oslo.config (neutron.server._init_configuration): under
# gunicorn that is gunicorn's command line, so the lab's module replaces it with the config files.
WSGI_MODULE = '''"""gunicorn entry point of the lab's neutron API (generated)."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.argv = [sys.argv[0], "--config-file", os.path.join(HERE, "neutron.conf"),
            "--config-file", os.path.join(HERE, "ml2_conf.ini")]
from neutron.wsgi.api import application  # noqa: E402,F401 - after the argv replacement
# every model, as neutron-db-manage loads them, and their mappers configured: ``Port.port_forwardings``
# (a backref the port-forwarding model adds, which GET /v2.0/ports reads) exists only then; without
# an L3 plugin nothing else does it, and a fresh process answers GET /v2.0/ports with a 500
from neutron.db.migration.models import head  # noqa: E402,F401
from sqlalchemy import orm  # noqa: E402

orm.configure_mappers()
'''


class NeutronLab:
    name = "neutron"
    versions = VERSIONS
    databases: tuple[str, ...] = ("neutron",)
    catalog: tuple[str, str] | None = ("network", "")

    # --- files ----------------------------------------------------------------------------------
    @staticmethod
    def conf(ctx: Context) -> Path:
        return ctx.base / "neutron.conf"

    @staticmethod
    def ml2_conf(ctx: Context) -> Path:
        return ctx.base / "ml2_conf.ini"

    def config_args(self, ctx: Context) -> list[str]:
        return ["--config-file", str(self.conf(ctx)), "--config-file", str(self.ml2_conf(ctx))]

    def write_config(self, ctx: Context) -> None:
        base = ctx.base
        for sub in ("state", "lock"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        self.conf(ctx).write_text(
            "[DEFAULT]\n"
            "debug = false\n"
            "core_plugin = ml2\n"
            "service_plugins =\n"
            "auth_strategy = keystone\n"
            f"transport_url = {ctx.transport_url}\n"
            f"state_path = {base / 'state'}\n"
            f"api_paste_config = {base / 'api-paste.ini'}\n"
            "# 2 cores for the whole cloud: one process per role, long periodic intervals\n"
            "api_workers = 1\n"
            "rpc_workers = 1\n"
            "rpc_state_report_workers = 0\n"
            "periodic_interval = 600\n"
            "periodic_fuzzy_delay = 0\n"
            "# the agents' health check runs every agent_down_time / 2; there are no agents\n"
            "agent_down_time = 3600\n"
            "enable_traditional_dhcp = false\n"
            "dhcp_agent_notification = false\n"
            "notify_nova_on_port_status_changes = false\n"
            "notify_nova_on_port_data_changes = false\n"
            "[database]\n"
            f"connection = {ctx.db_url('neutron')}\n"
            f"{ctx.keystone_authtoken()}"
            "[oslo_concurrency]\n"
            f"lock_path = {base / 'lock'}\n"
            "[oslo_messaging_notifications]\n"
            "driver = noop\n"
        )
        self.conf(ctx).chmod(0o600)
        self.ml2_conf(ctx).write_text(
            "[ml2]\n"
            "type_drivers = local,flat\n"
            "tenant_network_types = local\n"
            "mechanism_drivers =\n"
            "extension_drivers = port_security\n"
            "[ml2_type_flat]\n"
            "flat_networks = physnet1\n"
            "[ovn]\n"
            "# neutron-status's 'OVN support for BM provisioning over IPv6' check connects to OVN (a\n"
            "# warning, exit 1, when none answers) unless OVN's DHCP for baremetal ports is off\n"
            "disable_ovn_dhcp_for_baremetal_ports = true\n"
        )
        (base / "neutron_wsgi.py").write_text(WSGI_MODULE)
        # api-paste.ini ships with neutron (identical in 27.0.4 and 28.0.2); /healthcheck's disable
        # file would default to /var/lib/neutron
        paste = (venv(self.name, RELEASES[0], VERSIONS) / "etc" / "neutron" / "api-paste.ini").read_text()
        paste = paste.replace("/var/lib/neutron/healthcheck_disable", str(base / "state" / "healthcheck_disable"))
        (base / "api-paste.ini").write_text(paste)

    # --- set-up and tools -----------------------------------------------------------------------
    def bootstrap(self, ctx: Context, release: str) -> None:
        run([*self.manage_command(ctx, release), "upgrade", "heads"], ctx.base / "bootstrap.log")

    def manage_command(self, ctx: Context, release: str) -> list[str]:
        return [str(venv(self.name, release, VERSIONS) / "bin" / "neutron-db-manage"), *self.config_args(ctx)]

    def status_command(self, ctx: Context, release: str) -> list[str]:
        return [str(venv(self.name, release, VERSIONS) / "bin" / "neutron-status"), *self.config_args(ctx)]

    # --- workloads ------------------------------------------------------------------------------
    def programs(self, release: str) -> list[Program]:
        if release not in VERSIONS:
            raise KeyError(f"neutron has no release {release!r}; known: {', '.join(VERSIONS)}")
        config = ("--config-file", "{etc}/neutron.conf", "--config-file", "{etc}/ml2_conf.ini")
        return [
            Program(
                workload="neutron-server",
                kind="Deployment",
                argv=gunicorn("neutron_wsgi:application", "neutron-server"),
                api=True,
                health_path="/",
            ),
            Program(workload="neutron-rpc-server", kind="Deployment", argv=("{bin}/neutron-rpc-server", *config)),
            Program(
                workload="neutron-periodic-workers", kind="Deployment", argv=("{bin}/neutron-periodic-workers", *config)
            ),
        ]

    def ready(self, ctx: Context, program: Program, host: str) -> bool:
        """The RPC server and the periodic workers have no port to ask: ready while they live."""
        return True


SERVICE = NeutronLab()
