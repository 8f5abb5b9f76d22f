"""Nova in the cloud lab: API, conductor, scheduler, and one nova-compute per lab node with the fake
virt driver; cells v2 with cell0 and one cell (cell1).

Databases: ``nova_api`` (cell mappings, host mappings, flavors, quotas), ``nova_cell0`` (instances
that failed to schedule) and ``nova`` (cell1: services, compute nodes, instances). Every program
reads the same ``nova.conf``; nova-compute adds ``compute-<host>.conf`` (``[DEFAULT] host``), so the
computes of two lab nodes are two hosts to nova, as the DaemonSet's pods on two Kubernetes nodes are.
Conductor and scheduler read the same per-host file: their service record is named after the node
they run on, as in a cluster where the record is named after the pod's node (the lab's pods of one
workload on one node share it, which nova allows).

Bootstrap (first set-up at a release, upstream's order): ``api_db sync``, ``cell_v2 map_cell0``,
``cell_v2 create_cell --name cell1``, ``db sync`` (the cell database and, through the cell0 mapping,
cell0). Hosts are mapped when their compute is up: :meth:`Nova.ready` runs
``cell_v2 discover_hosts`` (the release's nova-manage) for a compute whose compute node exists and
whose host is not mapped yet, so a compute is ready only once the scheduler can place on it.

2025.2 (nova 32.2.1) and 2026.1 (33.0.2) have the same alembic heads (api ``cdeec0c85668``, main
``2903cd72dc14``) and the same online data migrations: the 2026.1 syncs change no schema. The
compute RPC API moves from 6.4 (service version 70) to 6.5 (72): with ``[upgrade_levels]
compute = auto`` the 2026.1 services pin their compute RPC to the oldest compute's version and log
``Automatically selected compute RPC version 6.4 from minimum service version 70`` the first time
they call a compute, until every compute runs 2026.1 and they are restarted (the unpin restart).

The API is WSGI (``nova.wsgi.osapi_compute``) under gunicorn. Nova hands ``sys.argv`` to oslo.config
(``config.parse_args(sys.argv, ...)`` in ``nova.api.openstack.wsgi_app``), which would reject
gunicorn's flags: a generated module truncates it first and points nova at this directory's
``api-paste.ini`` and ``nova.conf`` (``OS_NOVA_CONFIG_DIR``; nova reads both files, paste first).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from lab.openstack.services.base import RELEASES, Context, Program, gunicorn, run, venv

#: nova's SERVICE_VERSION per release (nova/objects/service.py) and the compute RPC API it maps to.
SERVICE_VERSIONS: dict[str, int] = {"2025.2": 70, "2026.1": 72}
COMPUTE_RPC: dict[str, str] = {"2025.2": "6.4", "2026.1": "6.5"}
#: alembic heads of both releases (no schema change between them).
HEADS: dict[str, str] = {"nova_api": "cdeec0c85668", "nova_cell0": "2903cd72dc14", "nova": "2903cd72dc14"}
#: the log line nova-api/-conductor/-scheduler write when [upgrade_levels] compute=auto picks a version
# (nova/compute/rpcapi.py, ComputeAPI._determine_version_cap).
RPC_PIN_LOG = "Automatically selected compute RPC version {rpc} from minimum service version {service}"
#: a service record is up when it reported within this many seconds ([DEFAULT] service_down_time)
SERVICE_DOWN_TIME = 60
FAKE_UPTIME = "lab fake driver: up"  # LabFakeDriver.get_host_uptime
RELEASE_ENV = "STACKHOP_NOVA_RELEASE"  # tells ready() which release a program runs

WSGI_MODULE = '''"""gunicorn entry point of the lab's nova-api (generated)."""
import os
import sys

# nova reads api-paste.ini and nova.conf from OS_NOVA_CONFIG_DIR (default /etc/nova)
os.environ.setdefault("OS_NOVA_CONFIG_DIR", os.path.dirname(os.path.abspath(__file__)))
# nova hands sys.argv to oslo.config, which rejects gunicorn's flags: truncate it first
sys.argv = sys.argv[:1]
from nova.wsgi.osapi_compute import application  # noqa: E402,F401 - after the argv truncation
'''

# nova-compute runs nova's own entry point from a launcher that makes the lab's driver loadable:
# nova imports "nova.virt.<compute_driver>", so lab_fake (next to the launcher, which puts its own
# directory first on sys.path) is registered as nova.virt.lab_fake after nova.cmd's monkey patching.
COMPUTE_LAUNCHER = '''"""nova-compute of the lab (generated): nova's entry point, nova.virt.lab_fake loadable."""
import sys

from nova.cmd.compute import main

import lab_fake

sys.modules["nova.virt.lab_fake"] = lab_fake
sys.exit(main())
'''

#: What each lab compute's fake hypervisor reports (nova's FakeDriver claims 1000 vCPUs, 800 GB of
#: RAM and 600 TB of disk, so nothing ever fails to fit): small enough that a capacity check can refuse
#: a batch — a flavor of FAKE_MEMORY_MB / 2 fits once per host. The seed (one 1 vCPU / 64 MiB / 1 GiB
#: server per host) and tempest's flavors (64 and 128 MiB) use a fraction of it.
FAKE_VCPUS = 4
FAKE_MEMORY_MB = 8192
FAKE_LOCAL_GB = 40
#: placement's inventory of a compute: (total - reserved) x ratio (set explicitly, nova's initial_* defaults)
CPU_ALLOCATION_RATIO = 4.0  # 16 VCPU per host
RAM_ALLOCATION_RATIO = 1.0  # 8192 - 512 = 7680 MEMORY_MB per host
DISK_ALLOCATION_RATIO = 1.0  # 40 DISK_GB per host
RESERVED_HOST_MEMORY_MB = 512
#: how long the fake driver's live migration "copies" before it completes (FakeLiveMigrateDriver: 5 s);
#: within it ``live_migration_force_complete`` ends it at once and ``live_migration_abort`` cancels it
LIVE_MIGRATION_SECONDS = 1.0
#: the availability zones of the lab's computes: host i is in ZONES[i % 2] (a nova host aggregate per
#: zone with ``availability_zone`` metadata; on Kubernetes also the node label ZONE_LABEL)
ZONES = ("az-1", "az-2")
ZONE_LABEL = "topology.kubernetes.io/zone"

# nova's FakeDriver names its node uuid after a per-process sentinel and writes no compute_id file,
# so a restarted compute (every upgrade restarts it) refuses to start: "No local node identity
# found, but this is not our first startup on this host". FakeDriverWithoutFakeNodes keeps a stable
# identity (state_path/compute_id); FakeLiveMigrateDriver adds what live migration needs (the source
# forgets the server after the move, force-complete and abort). The uptime answers an RPC the tests
# use to make nova-api call a compute (FakeDriver raises there).
LAB_FAKE_DRIVER = (
    '"""The lab\'s virt driver (generated): fake, restartable, live-migratable, small."""\n'
    "import time\n\n"
    "from nova.virt import fake\n\n"
    f"UPTIME = {FAKE_UPTIME!r}\n"
    f"LIVE_MIGRATION_SECONDS = {LIVE_MIGRATION_SECONDS!r}\n\n\n"
    "class LabFakeDriver(fake.FakeDriverWithoutFakeNodes, fake.FakeLiveMigrateDriver):\n"
    f"    vcpus = {FAKE_VCPUS}\n"
    f"    memory_mb = {FAKE_MEMORY_MB}\n"
    f"    local_gb = {FAKE_LOCAL_GB}\n\n"
    "    def get_host_uptime(self):\n"
    '        """What GET /os-hypervisors/{id}/uptime shows (nova-api asks the compute over RPC)."""\n'
    "        return UPTIME\n\n"
    "    def live_migration(self, context, instance, dest, post_method, recover_method,\n"
    "                       block_migration=False, migrate_data=None):\n"
    '        """FakeLiveMigrateDriver\'s, with a shorter copy (LIVE_MIGRATION_SECONDS instead of 5 s)."""\n'
    "        self._abort_migration = False\n"
    "        self._migrating = True\n"
    "        deadline = time.monotonic() + LIVE_MIGRATION_SECONDS\n"
    "        while self._migrating and time.monotonic() < deadline:\n"
    "            time.sleep(0.1)\n"
    "        if self._abort_migration:\n"
    "            recover_method(context, instance, dest, migrate_data, migration_status='cancelled')\n"
    "        else:\n"
    "            post_method(context, instance, dest, block_migration, migrate_data)\n"
)


def zones(hosts: Sequence[str]) -> dict[str, str]:
    """host -> availability zone, alternating in the hosts' order (az-1, az-2, az-1, ...)."""
    return {host: ZONES[i % len(ZONES)] for i, host in enumerate(hosts)}


def ensure_zones(conn: Any, placement: Mapping[str, str]) -> dict[str, list[str]]:
    """A host aggregate per zone (named after it, metadata ``availability_zone``) holding exactly the
    hosts ``placement`` puts in it (host -> zone); idempotent. The hosts must be mapped computes
    (nova refuses an unknown host). Returns zone -> its hosts."""
    wanted: dict[str, list[str]] = {}
    for host, zone in placement.items():
        wanted.setdefault(zone, []).append(host)
    existing = {a.name: a for a in conn.compute.aggregates()}
    for zone, hosts in sorted(wanted.items()):
        aggregate = existing.get(zone) or conn.compute.create_aggregate(name=zone, availability_zone=zone)
        if (aggregate.availability_zone or "") != zone:
            conn.compute.set_aggregate_metadata(aggregate, {"availability_zone": zone})
        have = set(aggregate.hosts or [])
        for host in sorted(have - set(hosts)):
            aggregate = conn.compute.remove_host_from_aggregate(aggregate, host)
        for host in sorted(set(hosts) - have):
            aggregate = conn.compute.add_host_to_aggregate(aggregate, host)
    return {zone: sorted(hosts) for zone, hosts in wanted.items()}


class Nova:
    name = "nova"
    versions: Mapping[str, str] = MappingProxyType({"2025.2": "32.2.1", "2026.1": "33.0.2"})
    databases = ("nova_api", "nova_cell0", "nova")
    catalog: tuple[str, str] | None = ("compute", "/v2.1")

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}  # bootstrap step -> seconds (the last bootstrap)

    # --- files ---------------------------------------------------------------------------------
    def conf(self, ctx: Context) -> Path:
        return ctx.base / "nova.conf"

    def host_conf(self, ctx: Context, host: str) -> Path:
        return ctx.base / f"host-{host}.conf"

    def compute_conf(self, ctx: Context, host: str) -> Path:
        return ctx.base / f"compute-{host}.conf"

    def log(self, ctx: Context) -> Path:
        return ctx.base / "bootstrap.log"

    def write_config(self, ctx: Context) -> None:
        base = ctx.base
        (base / "locks").mkdir(parents=True, exist_ok=True)
        self.conf(ctx).write_text(_config(ctx, host=None))
        self.conf(ctx).chmod(0o600)
        for host in ctx.hosts:
            self.write_host_config(ctx, host)
        (base / "nova_api_wsgi.py").write_text(WSGI_MODULE)
        (base / "nova_compute.py").write_text(COMPUTE_LAUNCHER)
        (base / "lab_fake.py").write_text(LAB_FAKE_DRIVER)
        paste = base / "api-paste.ini"
        if not paste.exists():
            shutil.copyfile(_paste_source(), paste)

    def write_host_config(self, ctx: Context, host: str) -> None:
        """Node ``host``: ``host-<host>.conf`` names the service records of conductor and scheduler
        after it; ``compute-<host>.conf`` is nova-compute's whole configuration: ``host``, a state
        directory of its own (its node identity file ``compute_id``) and no database connection (a
        compute asks the conductor; with ``[api_database] connection`` set, ``compute = auto``
        would query every cell directly and nova refuses: "No DB access allowed in nova-compute")."""
        (ctx.base / "state" / host).mkdir(parents=True, exist_ok=True)
        self.host_conf(ctx, host).write_text(f"[DEFAULT]\nhost = {host}\n")
        self.compute_conf(ctx, host).write_text(_config(ctx, host=host))
        self.compute_conf(ctx, host).chmod(0o600)

    # --- set-up --------------------------------------------------------------------------------
    def manage_command(self, ctx: Context, release: str) -> list[str]:
        return [
            str(venv(self.name, release, self.versions) / "bin" / "nova-manage"),
            "--config-file",
            str(self.conf(ctx)),
        ]

    def status_command(self, ctx: Context, release: str) -> list[str]:
        return [
            str(venv(self.name, release, self.versions) / "bin" / "nova-status"),
            "--config-file",
            str(self.conf(ctx)),
        ]

    def bootstrap(self, ctx: Context, release: str) -> None:
        manage = self.manage_command(ctx, release)
        log = self.log(ctx)
        steps: list[tuple[str, list[str]]] = [
            ("api_db sync", ["api_db", "sync"]),
            ("cell_v2 map_cell0", ["cell_v2", "map_cell0", "--database_connection", ctx.db_url("nova_cell0")]),
        ]
        if not self.cell_exists(ctx, "cell1"):
            steps.append(("cell_v2 create_cell", ["cell_v2", "create_cell", "--name", "cell1", "--verbose"]))
        steps.append(("db sync", ["db", "sync"]))
        for what, args in steps:
            started = time.monotonic()
            run([*manage, *args], log)
            self.timings[what] = round(time.monotonic() - started, 2)

    def cell_exists(self, ctx: Context, name: str) -> bool:
        try:
            rows = ctx.mariadb.sql(f"SELECT COUNT(*) FROM cell_mappings WHERE name = '{name}'", database="nova_api")
        except RuntimeError:  # no schema yet
            return False
        return rows.strip() not in ("", "0")

    # --- programs ------------------------------------------------------------------------------
    def programs(self, release: str) -> list[Program]:
        if release not in RELEASES or release not in self.versions:
            raise ValueError(f"nova has no release {release!r}; known: {', '.join(self.versions)}")
        env = {RELEASE_ENV: release}
        conf = ("--config-file", "{etc}/nova.conf", "--config-file", "{etc}/host-{host}.conf")
        compute = ("{bin}/python", "{etc}/nova_compute.py", "--config-file", "{etc}/compute-{host}.conf")
        return [
            Program(
                workload="nova-api",
                kind="Deployment",
                argv=gunicorn("nova_api_wsgi:application", "nova-api"),
                api=True,
                health_path="/",
                env=env,
            ),
            Program(workload="nova-conductor", kind="Deployment", argv=("{bin}/nova-conductor", *conf), env=env),
            Program(workload="nova-scheduler", kind="Deployment", argv=("{bin}/nova-scheduler", *conf), env=env),
            Program(workload="nova-compute", kind="DaemonSet", argv=compute, env=env),
        ]

    def ready(self, ctx: Context, program: Program, host: str) -> bool:
        """Conductor/scheduler/compute: their service record (binary, host) carries their release's
        service version (the old release's pod, still running, never raises it) and reported within
        ``service_down_time``. A compute is ready only once its host is mapped to cell1: when its
        compute node exists and the host is unmapped, this runs ``nova-manage cell_v2 discover_hosts``.

        Limits: a pod replacing one of the same release on the same node is ready at once (the
        record its predecessor kept up within the last minute already qualifies), and a heartbeat a
        stopped compute left queued in RabbitMQ, written by the next conductor, counts as a report."""
        release = program.env.get(RELEASE_ENV, RELEASES[0])
        binary = program.workload
        if not self.service_up(ctx, binary, host, SERVICE_VERSIONS[release]):
            return False
        if binary != "nova-compute":
            return True
        if self.host_mapped(ctx, host):
            return True
        if not self.compute_node_exists(ctx, host):
            return False
        run([*self.manage_command(ctx, release), "cell_v2", "discover_hosts", "--verbose"], self.log(ctx))
        return self.host_mapped(ctx, host)

    def service_up(self, ctx: Context, binary: str, host: str, version: int) -> bool:
        rows = ctx.mariadb.sql(
            # disabled or not: a disabled service that reports is ready (disabling is the scheduler's
            # business: stackhop disables a compute before its pod is replaced, and waits for the new one)
            "SELECT COUNT(*) FROM services WHERE deleted = 0"
            f" AND `binary` = '{binary}' AND host = '{host}' AND version >= {int(version)}"
            " AND COALESCE(last_seen_up, updated_at, created_at)"
            f" > UTC_TIMESTAMP() - INTERVAL {SERVICE_DOWN_TIME} SECOND",
            database="nova",
        )
        return rows.strip() not in ("", "0")

    def host_mapped(self, ctx: Context, host: str) -> bool:
        rows = ctx.mariadb.sql(f"SELECT COUNT(*) FROM host_mappings WHERE host = '{host}'", database="nova_api")
        return rows.strip() not in ("", "0")

    def compute_node_exists(self, ctx: Context, host: str) -> bool:
        rows = ctx.mariadb.sql(
            f"SELECT COUNT(*) FROM compute_nodes WHERE deleted = 0 AND host = '{host}'", database="nova"
        )
        return rows.strip() not in ("", "0")


def _config(ctx: Context, host: str | None) -> str:
    """nova.conf (``host`` None: API, conductor, scheduler, nova-manage, nova-status) or the whole
    configuration of the nova-compute on node ``host`` (no database connections)."""
    base = ctx.base
    keystone = _auth_section(ctx)
    region = "region_name = RegionOne\nvalid_interfaces = internal,public\n"
    if host is None:
        node = ""
        databases = (
            f"[api_database]\nconnection = {ctx.db_url('nova_api')}\n[database]\nconnection = {ctx.db_url('nova')}\n"
        )
        state = base / "state"
    else:
        node = f"host = {host}\n"
        databases = ""
        state = base / "state" / host
    return (
        "[DEFAULT]\n"
        f"transport_url = {ctx.transport_url}\n"
        f"{node}"
        "compute_driver = lab_fake.LabFakeDriver\n"
        "my_ip = 127.0.0.1\n"
        f"state_path = {state}\n"
        f"instances_path = {state / 'instances'}\n"
        "enabled_apis = osapi_compute\n"
        "osapi_compute_workers = 1\n"
        "metadata_workers = 1\n"
        "debug = false\n"
        # the fake hypervisor's inventory in placement (see FAKE_VCPUS): explicit, not nova's initial_*
        f"cpu_allocation_ratio = {CPU_ALLOCATION_RATIO}\n"
        f"ram_allocation_ratio = {RAM_ALLOCATION_RATIO}\n"
        f"disk_allocation_ratio = {DISK_ALLOCATION_RATIO}\n"
        f"reserved_host_memory_mb = {RESERVED_HOST_MEMORY_MB}\n"
        # long periodic intervals: 2 cores for the whole cloud
        "report_interval = 10\n"
        f"service_down_time = {SERVICE_DOWN_TIME}\n"
        "periodic_interval = 60\n"
        "periodic_fuzzy_delay = 5\n"
        "update_resources_interval = 600\n"
        "heal_instance_info_cache_interval = -1\n"
        "sync_power_state_interval = -1\n"
        "instance_usage_audit = false\n"
        "running_deleted_instance_poll_interval = 0\n"
        "shelved_poll_interval = -1\n"
        f"{databases}"
        "[conductor]\n"
        "workers = 1\n"
        "[scheduler]\n"
        "workers = 1\n"
        "discover_hosts_in_cells_interval = -1\n"
        "[upgrade_levels]\n"
        "compute = auto\n"
        "[api]\n"
        "auth_strategy = keystone\n"
        "[wsgi]\n"
        f"api_paste_config = {base / 'api-paste.ini'}\n"
        "[keystone_authtoken]\n"
        f"www_authenticate_uri = {ctx.auth_url}\n"
        f"{keystone}"
        "service_token_roles_required = true\n"
        # nova-status fails without it (required for all nova services since 2023.2)
        "[service_user]\n"
        "send_service_user_token = true\n"
        f"{keystone}"
        "[placement]\n"
        f"{keystone}{region}"
        # servers of the lab use `networks: none`; with neutron in the catalog nova can still ask it
        # (port listings, security groups), as its own service user
        "[neutron]\n"
        f"{keystone}{region}"
        "service_metadata_proxy = false\n"
        "[glance]\n"
        f"{region}"
        "[cinder]\n"
        "os_region_name = RegionOne\n"
        "[vnc]\n"
        "enabled = false\n"
        "[oslo_concurrency]\n"
        f"lock_path = {base / 'locks'}\n"
        "[oslo_messaging_notifications]\n"
        "driver = noop\n"
    )


def _auth_section(ctx: Context) -> str:
    """keystoneauth password options of nova's own Keystone user (project ``service``)."""
    return (
        "auth_type = password\n"
        f"auth_url = {ctx.auth_url}\n"
        "project_domain_name = Default\n"
        "user_domain_name = Default\n"
        "project_name = service\n"
        "username = nova\n"
        f"password = {ctx.service_password}\n"
    )


def _paste_source() -> Path:
    """nova's api-paste.ini, as its wheel installs it (``<venv>/etc/nova``; the same in both releases)."""
    for release in reversed(RELEASES):
        candidate = venv("nova", release, Nova.versions) / "etc" / "nova" / "api-paste.ini"
        if candidate.exists():
            return candidate
    raise RuntimeError("nova's api-paste.ini not found: build the nova venvs first (lab.openstack.install)")


SERVICE = Nova()
