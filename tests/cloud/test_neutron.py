"""neutron's recipe steps against the real service: neutron 27.0.4 (2025.2) → 28.0.2 (2026.1).

Every migration phase runs through ``activities.migration.db_sync`` and the status check through
``activities.validation.run_check``, with the worker environment the cloud gives (its per-release
``neutron-manage`` / ``neutron-status`` commands, its MariaDB defaults file), so the test proves
what production runs. Each test observes the change its step makes: the ``alembic_version`` rows
(neutron keeps one per branch: expand and contract), the tables and rows a migration changes, and
the API answering (or not) through the lab proxy.

What 27.0.4 → 28.0.2 brings (read from both releases' migrations): one expand revision,
``b1bca967e19d`` (a unique constraint on ``network_segment_ranges``: it fills ``physical_network``
NULL → '' and deletes duplicate ranges first), and no contract revision: the contract head is
``5c85685d616d`` (Newton) in both, so ``has_offline_migrations`` exits 0 and ``--contract`` has
nothing to apply. The contract guard is shown on a database whose last contract revision is pending
(see ``make_contract_pending``): the state a database is in after ``upgrade 2e0d7a8a1586`` and
``upgrade --expand``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import openstack
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import database, dbtools, migration
from lab.openstack.cloud import ADMIN_CLOUD, CloudLab
from lab.openstack.services.neutron import VERSIONS
from model import errors
from model.io import MigrateInput, MigrateResult, MigrationPhase
from model.plan import Database, KubeTarget, Migration
from tests.cloud.recipe_steps import alembic_versions, status_check, use_worker_env
from tests.waiting import eventually_sync

OLD, NEW = "2025.2", "2026.1"
CONTRACT_HEAD = "5c85685d616d"  # newton/contract remove_availability_ranges: the head in both releases
EXPAND_OLD = "d553edeb540f"  # 27.0.4's expand head (2025.2 tag_case_sensitive)
EXPAND_NEW = "b1bca967e19d"  # 28.0.2's expand head (2026.1 add_unique_network_segment_range)
CONTRACT_BEFORE_LAST = "2e0d7a8a1586"  # 5c85685d616d's down revision
WORKLOADS = {"neutron-server", "neutron-rpc-server", "neutron-periodic-workers"}

# The two tables 5c85685d616d drops, as a database upgraded to 2e0d7a8a1586 has them (SHOW CREATE
# TABLE of a database brought there with `neutron-db-manage upgrade 2e0d7a8a1586` and then
# `upgrade --expand`; every other table of it equals the bootstrapped schema's but for the order of
# two indexes and two foreign keys).
PENDING_CONTRACT_TABLES = """
CREATE TABLE ipavailabilityranges (
  allocation_pool_id varchar(36) NOT NULL, first_ip varchar(64) NOT NULL, last_ip varchar(64) NOT NULL,
  PRIMARY KEY (allocation_pool_id, first_ip, last_ip),
  UNIQUE KEY uniq_ipavailabilityranges0first_ip0allocation_pool_id (first_ip, allocation_pool_id),
  UNIQUE KEY uniq_ipavailabilityranges0last_ip0allocation_pool_id (last_ip, allocation_pool_id),
  CONSTRAINT ipavailabilityranges_ibfk_1 FOREIGN KEY (allocation_pool_id) REFERENCES ipallocationpools (id)
    ON DELETE CASCADE);
CREATE TABLE ipamavailabilityranges (
  allocation_pool_id varchar(36) NOT NULL, first_ip varchar(64) NOT NULL, last_ip varchar(64) NOT NULL,
  PRIMARY KEY (allocation_pool_id, first_ip, last_ip),
  KEY ix_ipamavailabilityranges_first_ip_allocation_pool_id (first_ip, allocation_pool_id),
  KEY ix_ipamavailabilityranges_last_ip_allocation_pool_id (last_ip, allocation_pool_id),
  CONSTRAINT ipamavailabilityranges_ibfk_1 FOREIGN KEY (allocation_pool_id) REFERENCES ipamallocationpools (id)
    ON DELETE CASCADE);
"""


# --- fixtures and helpers ------------------------------------------------------------------------
@pytest.fixture
def neutron(cloud_at: Callable[..., CloudLab], monkeypatch: pytest.MonkeyPatch) -> Iterator[CloudLab]:
    """The cloud with neutron's database at the baseline and 2025.2 serving; the worker env set."""
    cloud = cloud_at("neutron")
    use_worker_env(cloud, monkeypatch)
    yield cloud


def sql(cloud: CloudLab, statement: str) -> str:
    assert cloud.mariadb
    return cloud.mariadb.sql(statement, "neutron")


def revisions(cloud: CloudLab) -> set[str]:
    return alembic_versions(cloud, "neutron")


def tables(cloud: CloudLab) -> set[str]:
    return set(sql(cloud, "SELECT table_name FROM information_schema.tables WHERE table_schema='neutron'").split())


def migrate_input(phase: MigrationPhase, release: str) -> MigrateInput:
    """A phase with the worker's STACKHOP_NEUTRON_MANAGE (the plan names no command) and the
    database whose sessions the contract guard looks at (defaults file: the worker's)."""
    return MigrateInput(
        service="neutron",
        phase=phase,
        migration=Migration(mode="expand-contract"),
        database=Database(name="neutron", users=["neutron"]),
        version=VERSIONS[release],
    )


def sync(phase: MigrationPhase, release: str) -> MigrateResult:
    """One migration phase through the activity."""
    result: MigrateResult = ActivityEnvironment().run(migration.db_sync, migrate_input(phase, release))
    return result


def network_api() -> Any:
    """The network API of the admin cloud (through the lab proxy, as the catalog lists it)."""
    return openstack.connect(cloud=ADMIN_CLOUD).network


def rpc_consumers(cloud: CloudLab) -> int:
    """Consumers on neutron's plugin RPC queue: the RPC server's listeners."""
    assert cloud.rabbit
    listing = cloud.rabbit.ctl("list_queues", "-q", "name", "consumers").stdout
    return sum(int(line.split()[1]) for line in listing.splitlines() if line.split()[:1] == ["q-plugin"])


def make_contract_pending(cloud: CloudLab) -> None:
    """Put back what the last contract revision removed and record the contract branch one revision
    behind: has_offline_migrations then says a contract is pending, and --contract applies the real
    5c85685d616d (it drops these two tables)."""
    sql(cloud, PENDING_CONTRACT_TABLES)
    sql(cloud, f"UPDATE alembic_version SET version_num='{CONTRACT_BEFORE_LAST}' WHERE version_num='{CONTRACT_HEAD}'")


def seed_duplicate_segment_ranges(cloud: CloudLab) -> None:
    """Two identical vxlan ranges with no physical network (the duplicates b1bca967e19d removes;
    the lab loads no network_segment_range plugin, so they are written directly)."""
    for _ in range(2):
        sql(
            cloud,
            "INSERT INTO standardattributes (resource_type, description, revision_number, created_at) "
            "VALUES ('network_segment_ranges', '', 0, NOW()); "
            "INSERT INTO network_segment_ranges (id, name, `default`, shared, project_id, network_type, "
            "physical_network, minimum, maximum, standard_attr_id) "
            "VALUES (UUID(), 'lab', 1, 1, NULL, 'vxlan', NULL, 1, 1000, LAST_INSERT_ID())",
        )


class Background:
    """An activity run in a thread, its heartbeats recorded (the test looks at it while it runs)."""

    def __init__(self, fn: Callable[..., Any], arg: Any) -> None:
        self.beats: list[dict[str, Any]] = []
        self.result: Any = None
        self.error: BaseException | None = None
        env = ActivityEnvironment()
        env.on_heartbeat = lambda *details: self.beats.extend(d for d in details if isinstance(d, dict))

        def target() -> None:
            try:
                self.result = env.run(fn, arg)
            except BaseException as e:  # reported by join()
                self.error = e

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def waiting(self) -> dict[str, Any] | None:
        """The first heartbeat of a contract waiting for the servers to be gone."""
        return next((b for b in self.beats if b.get("waiting_for") == "servers stopped"), None)

    def join(self, timeout: float) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"still running after {timeout}s"
        if self.error is not None:
            raise self.error
        return self.result


# --- the tests -----------------------------------------------------------------------------------
def test_2025_2_serves_its_workloads_and_the_target_release_checks_the_status(neutron: CloudLab) -> None:
    """The cloud as bootstrapped, then `neutron-status upgrade check` before the roll: 2026.1's tool
    has a check 2025.2's lacks (RBAC policies whose target project is no project id, LP#2161653);
    the 2025.2 API accepts such a policy, so only the target release's tool reports it."""
    cloud = neutron
    pods = cloud.pods_of("neutron")
    assert {p.workload for p in pods.values()} == WORKLOADS
    assert {p.release for p in pods.values()} == {OLD}
    # the workload set does not change in 2026.1: neither release has a neutron-server program
    svc = cloud.service("neutron")
    assert {p.workload for p in svc.programs(NEW)} == WORKLOADS
    assert [p.workload for p in svc.programs(OLD) if p.api] == ["neutron-server"]
    assert revisions(cloud) == {CONTRACT_HEAD, EXPAND_OLD}
    assert rpc_consumers(cloud) >= 1  # the RPC server listens

    net = network_api()
    network = net.create_network(name="lab-net")
    subnet = net.create_subnet(network_id=network.id, cidr="10.20.0.0/24", ip_version=4)
    port = net.create_port(network_id=network.id)
    assert network.provider_network_type == "local"
    assert port.fixed_ips[0]["subnet_id"] == subnet.id
    assert port.binding_vif_type == "unbound"  # no agent, no mechanism driver: ports stay unbound
    assert "lab-net" in {n.name for n in net.networks()}

    policy = net.create_rbac_policy(
        object_type="network", object_id=network.id, action="access_as_shared", target_project_id="demo-by-name"
    )
    old = status_check(cloud, "neutron", OLD)
    assert old.details["exit_code"] == 0, old.details["output"]
    assert "RBAC policies with invalid target_project" not in old.details["output"]

    new = status_check(cloud, "neutron", NEW)
    assert new.details["exit_code"] == 1, new.details["output"]
    assert (new.status, new.details["warning"], new.details["blocking"]) == ("pass", True, False)
    assert "RBAC policies with invalid target_project" in new.details["output"]
    assert policy.id[:8] in new.details["output"]


def test_expand_with_2026_1_while_2025_2_serves_then_roll_and_contract(neutron: CloudLab) -> None:
    cloud = neutron
    seed_duplicate_segment_ranges(cloud)
    net = network_api()
    before = net.create_network(name="before-expand")

    check = sync("check", NEW)  # has_offline_migrations: nothing needs the servers stopped
    assert (check.exit_code, check.state) == (0, "expand-needed")
    assert revisions(cloud) == {CONTRACT_HEAD, EXPAND_OLD}

    expand = Background(migration.db_sync, migrate_input("expand", NEW))
    during: list[str] = []
    while expand.thread.is_alive():  # the 2025.2 API answers while the expand runs
        during.append(net.create_network(name=f"during-{len(during)}").id)
        assert during[-1] in {n.id for n in net.networks()}
    expanded: MigrateResult = expand.join(600)
    assert expanded.state == "done" and expanded.command[-2:] == ["upgrade", "--expand"]
    assert during, "no API call ran while the expand did"

    assert revisions(cloud) == {CONTRACT_HEAD, EXPAND_NEW}
    assert "uniq_network_segment_ranges" in sql(cloud, "SHOW CREATE TABLE network_segment_ranges")
    # the duplicate range deleted, the one left has physical_network '' instead of NULL
    ranges = "SELECT COUNT(*), SUM(physical_network IS NULL), SUM(physical_network = '') FROM network_segment_ranges"
    assert sql(cloud, ranges).split() == ["1", "0", "1"]
    after = net.create_network(name="after-expand")  # 2025.2 on the expanded schema
    assert cloud.served("neutron") == OLD

    cloud.serve("neutron", NEW)  # the roll: every workload at 2026.1
    assert {p.release for p in cloud.pods_of("neutron").values()} == {NEW}
    names = {n.name for n in network_api().networks()}
    assert {before.name, after.name, *(f"during-{i}" for i in range(len(during)))} <= names

    contract = sync("contract", NEW)  # nothing offline pending: runs while 2026.1 serves
    assert contract.state == "done" and contract.command[-2:] == ["upgrade", "--contract"]
    assert revisions(cloud) == {CONTRACT_HEAD, EXPAND_NEW}
    network_api().create_network(name="after-contract")


def test_contract_waits_for_the_servers_when_offline_migrations_are_pending(
    neutron: CloudLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud = neutron
    network_api().create_network(name="keeps-a-session")  # the API's pool keeps its connection
    make_contract_pending(cloud)
    assert {"ipavailabilityranges", "ipamavailabilityranges"} <= tables(cloud)

    check = sync("check", NEW)
    assert (check.exit_code, check.state) == (1, "offline-contract-needed")

    # refused, naming the sessions, once the wait runs out (retryable: the workflow tries again)
    wait = migration.QUIESCE_WAIT_SECONDS
    monkeypatch.setattr(migration, "QUIESCE_WAIT_SECONDS", 0.0)
    with pytest.raises(ApplicationError) as refused:
        sync("contract", NEW)
    assert refused.value.type == errors.DB_IN_USE and not refused.value.non_retryable
    assert "neutron@127.0.0.1" in str(refused.value)
    assert CONTRACT_BEFORE_LAST in revisions(cloud)
    monkeypatch.setattr(migration, "QUIESCE_WAIT_SECONDS", wait)

    contract = Background(migration.db_sync, migrate_input("contract", NEW))
    waiting = eventually_sync(contract.waiting, within=300, what="the contract waiting for the servers")
    assert waiting and any(s.split()[1].startswith("neutron@") for s in waiting["sessions"])
    assert contract.thread.is_alive()
    assert CONTRACT_BEFORE_LAST in revisions(cloud)  # nothing contracted while the API serves
    assert network_api().networks()  # and it still answers

    cloud.stop_service("neutron")  # every neutron pod stopped: the quiesce
    assert rpc_consumers(cloud) == 0
    contracted: MigrateResult = contract.join(600)
    assert contracted.state == "done" and contracted.command[-2:] == ["upgrade", "--contract"]
    assert revisions(cloud) == {CONTRACT_HEAD, EXPAND_OLD}
    assert not {"ipavailabilityranges", "ipamavailabilityranges"} & tables(cloud)


# --- the contract guard's other paths (no cloud: the runner and the session listing are stubbed) ----
def _ran(output: str) -> dbtools.Ran:
    return dbtools.Ran(0, output, dbtools.parse_markers(output), 0.1)


def test_the_job_runner_looks_once_then_the_contract_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Job per look would only re-attach to the first Job: the job runner refuses after one look
    (retryable DatabaseInUse), and the contract's own Job never starts."""
    jobs: list[str] = []

    def run_job(target: Any, step: str, manifest: Any, timeout: int, what: str) -> dbtools.Ran:
        jobs.append(step)
        return _ran("@@stackhop final=1")  # has_offline_migrations: pending

    monkeypatch.setattr("activities.dbtools.run_job", run_job)
    monkeypatch.setattr(database, "open_sessions", lambda *a: ["7 neutron@10.0.0.5 neutron Sleep 3"])
    inp = MigrateInput(
        service="neutron",
        phase="contract",
        version="28.0.2",
        image="registry.lab/neutron:28.0.2",
        migration=Migration(mode="expand-contract", runner="job"),
        database=Database(name="neutron", users=["neutron"], runner="job"),
        target=KubeTarget(context="lab"),
    )
    with pytest.raises(ApplicationError) as refused:
        ActivityEnvironment().run(migration.db_sync, inp)
    assert refused.value.type == errors.DB_IN_USE and not refused.value.non_retryable
    assert "7 neutron@10.0.0.5" in str(refused.value)
    # the offline check's Job only (named apart from the offline phase's), no contract Job
    assert jobs == [dbtools.job_name("neutron", "db-offline-check", "28.0.2")]
    assert jobs[0] != dbtools.job_name("neutron", "db-offline", "28.0.2")


def test_a_pending_offline_contract_without_the_database_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("activities.dbtools.run_local", lambda script, step: _ran("@@stackhop final=1"))
    inp = MigrateInput(
        service="neutron", phase="contract", version="28.0.2", migration=Migration(command=["neutron-db-manage"])
    )
    with pytest.raises(ApplicationError) as refused:
        ActivityEnvironment().run(migration.db_sync, inp)
    assert refused.value.type == errors.PLAN_INVALID and refused.value.non_retryable


def test_an_offline_check_that_fails_fails_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []

    def run_local(script: str, step: str) -> dbtools.Ran:
        ran.append(step)
        return _ran("ERROR: Unable to connect\n@@stackhop final=255")

    monkeypatch.setattr("activities.dbtools.run_local", run_local)
    inp = migrate_input("contract", NEW).model_copy(update={"migration": Migration(command=["neutron-db-manage"])})
    with pytest.raises(ApplicationError) as failed:
        ActivityEnvironment().run(migration.db_sync, inp)
    assert failed.value.type == errors.MIGRATION_FAILED and "exited 255" in str(failed.value)
    assert ran == ["migration.offline-check"]  # the contract itself never ran
