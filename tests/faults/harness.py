"""Run one upgrade through chained faults and count its side effects from the labs' logs.

Everything is real: the Temporal dev server (restartable, with its database file), the Kubernetes
lab with the lab controller, MariaDB + Keystone, and the worker as a subprocess (so SIGKILL is a
real process death). A case names its kill points and its disruptions; after each kill the
harness starts a new worker and the upgrade goes on.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import WorkflowIDReusePolicy
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from cliapp.dev import die_with_parent
from lab.demo import RELEASE, DemoLab, Deploy, Inject
from model import io, visibility
from model.codec import data_converter
from model.loading import parse_plan
from model.plan import UpgradePlan
from tests.conftest import ROOT, temporal_binary
from tests.faults import logs
from tests.faults.points import PLAN_ENV, Event, KillPoint, When, fired, read_events, release_file, write_plan
from tests.waiting import eventually
from workflows.upgrade import UpgradeWorkflow

TASK_QUEUE = "stackhop-faults"
WORKER_USER_NS = "stackhop-faults"
WORKER_SA = "stackhop-worker"
WORKER_USER = f"system:serviceaccount:{WORKER_USER_NS}:{WORKER_SA}"
Action = Literal["temporal", "apiserver", "mariadb"]
CASE_TIMEOUT = 240.0
SUMMARIES: list[str] = []  # one line per case, printed at the end of the session (conftest.py)
WORKERS = 3  # a start kill and a completion kill take out two: the third takes the next step at once
# A kill costs one heartbeat timeout (the server's only way to learn of it) plus the retry backoff.
# The activities heartbeat at least every quarter of it, the fault worker sends them unthrottled.
HEARTBEAT_TIMEOUT = "3s"


def fault_plan(rollout_timeout: str, deploy: Deploy = "objects") -> UpgradePlan:
    """The demo's plan made small and fast to fail over: the endpoint check only (no tempest), a
    short heartbeat timeout (a killed worker's activity is retried after it), room for retries and
    automatic restores (a part-way expand never waits for an approval)."""
    doc = yaml.safe_load((ROOT / "examples" / "lab-keystone.yaml").read_text())
    doc["policy"] = {
        "on_failure": "rollback",
        "rollout_timeout": rollout_timeout,
        "heartbeat_timeout": HEARTBEAT_TIMEOUT,
        "max_attempts": 10,
        "restore": "automatic",
    }
    (svc,) = doc["services"]
    svc["checks"] = [c for c in svc["checks"] if c["kind"] == "endpoint"]
    if deploy == "objects":
        svc.pop("helm", None)  # raw objects: the fault lab deploys a bare Deployment (DemoLab deploy="objects")
    return parse_plan(yaml.safe_dump(doc), "fault-plan", base=ROOT / "examples")


@dataclass(frozen=True)
class Disruption:
    """When the worker logs ``when`` of ``step``, stop ``action``'s server and start it again.

    ``hold``: the worker waits at that moment until the server is stopped, so the step runs into the
    outage for certain (a step of a second or two could otherwise finish before the server goes)."""

    step: str
    when: When
    action: Action
    hold: bool = False

    @property
    def point(self) -> KillPoint:
        return KillPoint(self.step, self.when)


@dataclass(frozen=True)
class Case:
    name: str
    inject: Inject | None = None
    kills: tuple[KillPoint, ...] = ()
    disruptions: tuple[Disruption, ...] = ()
    rollout_timeout: str = "2m"
    deploy: Deploy = "objects"  # helm: keystone is the Helm release of the demo, rolled through it


@dataclass
class CaseResult:
    outcome: str
    report: io.UpgradeReport | None
    kube: logs.KubeEffects
    db: logs.DbEffects
    events: list[Event]
    workers: int
    seconds: float
    disrupted: list[str] = field(default_factory=list)
    helm: list[tuple[int, str, str]] = field(default_factory=list)  # helm history: revision, status, description

    @property
    def completed_revisions(self) -> list[str]:
        """The revisions that completed, by what made them: upgrade (stackhop's), or Helm's words."""
        done = [d for _, status, d in self.helm if status in ("deployed", "superseded")]
        # A SIGTERM as helm completes can leave the revision deployed under Helm's failure description
        # (two goroutines record it; activities/helm_release.py ours_by_label): its status says it ran.
        # The same race can instead leave it failed with the revision before it superseded: no
        # revision is deployed, the retry upgrades again, and Helm, upgrading from the failed revision
        # (it has nothing deployed to start from), marks it superseded. That attempt made no second
        # change: an upgrade followed by another of the same change, or by any after Helm's failure
        # description, counts once.
        names = ["upgrade" if d.startswith(("stackhop ", "Upgrade ")) else d for d in done]
        kept = []
        for i, name in enumerate(names):
            later = done[i + 1] if i + 1 < len(done) else ""
            if name == "upgrade" and names[i + 1 : i + 2] == ["upgrade"]:
                change = done[i].split(" ")[1] if done[i].startswith("stackhop ") else ""
                if not change or later.startswith(f"stackhop {change} "):
                    continue
            kept.append(name)
        return kept

    @property
    def duplicated(self) -> int:
        return self.kube.duplicated + self.db.duplicated

    def attempts(self, step: str) -> int:
        return max((e.attempt for e in self.events if e.step == step), default=0)

    def summary(self, case: Case) -> str:
        """One line: what the case did and what the labs' logs counted."""
        kills = sum(1 for e in self.events if e.killed)
        images = [v.rsplit(":", 1)[1] for _, key, v in self.kube.transitions if key == "images"]
        replicas = [v for _, key, v in self.kube.transitions if key == "replicas"]
        retried = sorted({e.step for e in self.events if e.attempt > 1})
        return (
            f"{case.name}: {self.outcome} in {self.seconds:.0f}s; {kills} kills, {self.workers} workers;"
            f" {'; '.join(self.disrupted) or 'no restarts'}; retried {','.join(retried) or '-'};"
            f" k8s writes {self.kube.writes}, images {'>'.join(images) or '-'}, replicas {'>'.join(replicas) or '-'};"
            f" db revisions {dict(self.db.revisions)}, DROP keystone {self.db.drops['keystone']};"
            + (f" helm revisions {', '.join(f'{r} {st}' for r, st, _ in self.helm)};" if self.helm else "")
            + f" duplicated {self.duplicated}"
        )


STARTING_NICENESS = 10  # a replacement imports at low priority (tests/faults/worker.py resets it)


def _child_setup() -> None:
    """A worker dies with the harness and starts niced: its seconds of imports must not starve the
    worker running the retried step under a 3 s heartbeat timeout."""
    die_with_parent()
    os.nice(STARTING_NICENESS)


class TemporalServer:
    """A dev server on a fixed port with its database file, so it can be stopped and started again
    with the upgrades it holds."""

    def __init__(self, port: int, db: Path) -> None:
        self.port, self.db = port, db
        self.env: WorkflowEnvironment | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def client(self) -> Client:
        assert self.env is not None, "the dev server is up"
        return self.env.client

    async def start(self) -> None:
        self.env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=temporal_binary(),
            data_converter=data_converter(),
            search_attributes=visibility.ALL,
            dev_server_log_level="error",
            port=self.port,
            dev_server_extra_args=["--db-filename", str(self.db)],
        )

    async def stop(self) -> None:
        if self.env is not None:
            await self.env.shutdown()
            self.env = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()


@dataclass
class Faults:
    """The session's labs, server and worker identity."""

    lab: DemoLab
    temporal: TemporalServer
    worker_kubeconfig: Path
    workdir: Path

    def worker_env(self, plan_file: Path) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
        return {
            **inherited,
            **self.lab.openstack.worker_env(),
            "KUBECONFIG": str(self.worker_kubeconfig),
            "TEMPORAL_ADDRESS": self.temporal.address,
            "TEMPORAL_NAMESPACE": "default",
            "STACKHOP_TASK_QUEUE": TASK_QUEUE,
            PLAN_ENV: str(plan_file),
        }

    async def start_worker(self, plan_file: Path, log: Path) -> asyncio.subprocess.Process:
        with log.open("ab") as fh:
            return await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.faults.worker",
                cwd=ROOT,
                env=self.worker_env(plan_file),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=fh,
                stderr=fh,
                preexec_fn=_child_setup,
            )

    async def disrupt(self, action: Action, stopped: Callable[[], None] = lambda: None) -> None:
        """Stop ``action``'s server, call ``stopped``, start the server again."""
        if action == "temporal":
            await self.temporal.stop()
            stopped()
            await self.temporal.start()
        elif action == "apiserver":
            await asyncio.to_thread(self.lab.kube.stop_apiserver)
            stopped()
            await asyncio.to_thread(self.lab.kube.start_apiserver)
        else:
            mariadb = self.lab.openstack.mariadb
            assert mariadb is not None
            logging = mariadb.general_log_on()
            await asyncio.to_thread(mariadb.stop)
            stopped()
            await asyncio.to_thread(mariadb.start, general_log=logging)
            self.lab.openstack.save()

    async def run(self, case: Case) -> CaseResult:
        started = time.monotonic()
        mariadb = self.lab.openstack.mariadb
        assert mariadb is not None
        # The audit log from before the lab (re)creates the Deployment (its initial state), the
        # general log from after the lab reset the database (its own DROP DATABASE).
        audit_from = logs.size(self.lab.kube.audit_log)
        self.lab.deploy = case.deploy
        await asyncio.to_thread(self.lab.prepare, case.inject)
        general_from = logs.size(mariadb.general_log_path)
        workdir = self.workdir / case.name
        workdir.mkdir(parents=True, exist_ok=True)
        events_file, plan_file, worker_log = workdir / "events.jsonl", workdir / "plan.json", workdir / "worker.log"
        events_file.unlink(missing_ok=True)
        write_plan(plan_file, events_file, case.kills, [d.point for d in case.disruptions if d.hold])
        plan = fault_plan(case.rollout_timeout, case.deploy)
        await self.temporal.client.start_workflow(
            UpgradeWorkflow.run,
            io.UpgradeInput(plan=plan, requested_by="fault suite"),
            id=plan.workflow_id,
            task_queue=TASK_QUEUE,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
        disrupted: list[str] = []
        disruptions = [asyncio.create_task(self._disrupt_at(events_file, d, disrupted)) for d in case.disruptions]
        # Several workers: while a killed one's replacement starts (imports take seconds on a busy
        # machine) another takes the retry, so a kill costs about the heartbeat timeout. A
        # replacement gets the same plan: points that fired are logged.
        procs = [await self.start_worker(plan_file, worker_log) for _ in range(WORKERS)]
        workers = len(procs)
        ended = asyncio.create_task(self._ended(plan.workflow_id))
        try:
            while not ended.done():
                exits = {asyncio.create_task(p.wait()): p for p in procs}
                await asyncio.wait({ended, *exits}, timeout=CASE_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
                for task in exits:
                    task.cancel()
                if ended.done():
                    break
                dead = [p for p in procs if p.returncode is not None]
                if not dead:
                    raise AssertionError(f"{case.name}: no end within {CASE_TIMEOUT:.0f}s; worker log {worker_log}")
                for p in dead:
                    if p.returncode != -signal.SIGKILL:
                        raise AssertionError(f"{case.name}: a worker exited {p.returncode}; log {worker_log}")
                    procs.remove(p)
                    procs.append(await self.start_worker(plan_file, worker_log))  # the upgrade goes on
                    workers += 1
            ended.result()
            await asyncio.gather(*disruptions)
        finally:
            ended.cancel()
            for pending in disruptions:
                pending.cancel()
            for p in procs:
                if p.returncode is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    await asyncio.wait_for(p.wait(), 40)
                except TimeoutError:
                    p.kill()
                    await p.wait()
        outcome, report = await self._outcome(plan.workflow_id)
        events = read_events(events_file)
        missing = set(case.kills) - set(fired(list(case.kills), events))
        assert not missing, f"{case.name}: kill points never reached: {sorted(map(str, missing))}"
        assert len(disrupted) == len(case.disruptions), f"{case.name}: disruptions done: {disrupted}"
        return CaseResult(
            outcome=outcome,
            report=report,
            kube=logs.kube_effects(logs.tail(self.lab.kube.audit_log, audit_from), WORKER_USER),
            db=logs.db_effects(logs.tail(mariadb.general_log_path, general_from), "keystone"),
            events=events,
            workers=workers,
            seconds=time.monotonic() - started,
            disrupted=disrupted,
            helm=[(r["revision"], r["status"], r["description"]) for r in self.lab.helm().history(RELEASE)]
            if case.deploy == "helm"
            else [],
        )

    async def _disrupt_at(self, events_file: Path, d: Disruption, done: list[str]) -> None:
        await eventually(
            lambda: any((e.step, e.when) == (d.step, d.when) for e in read_events(events_file)),
            within=CASE_TIMEOUT,
            what=f"{d.step} {d.when}",
        )

        def release() -> None:
            if d.hold:
                release_file(events_file, d.point).touch()

        await self.disrupt(d.action, release)
        done.append(f"{d.action} restarted at {d.step} {d.when}")

    async def _ended(self, wf_id: str) -> None:
        """Until the upgrade is closed (the server may be away for a while: a disruption)."""

        async def closed() -> bool:
            if self.temporal.env is None:
                return False
            desc = await self.temporal.client.get_workflow_handle(wf_id).describe()
            return desc.status != WorkflowExecutionStatus.RUNNING

        await eventually(closed, within=CASE_TIMEOUT * 2, what=f"{wf_id} to end", ignore=(RPCError,))

    async def _outcome(self, wf_id: str) -> tuple[str, io.UpgradeReport | None]:
        from cliapp.render import outcome_of

        handle = self.temporal.client.get_workflow_handle(wf_id, result_type=io.UpgradeReport)
        outcome, report, _ = await outcome_of(handle)
        return outcome, report
