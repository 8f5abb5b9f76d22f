"""Issue 5: what does the engine cost? The demo upgrade through Temporal, and the same operations
without it, in one process against the same labs.

Why this shape: the only honest baseline is the *same* work done the *same* way. The raw run calls
the very activity functions the worker registers, as plain Python functions, in the workflow's
order (they need no activity context: their heartbeat and cancellation helpers are no-ops outside
one), so the difference between the two wall times is what Temporal adds — scheduling, history,
task dispatch, data conversion — and nothing else. Both runs start from the same 28.1.0 baseline
(``DemoLab.prepare()``) with a warm worker and warm imports.

The rollout latency is measured against an independent witness: a separate Kubernetes watch that
timestamps the moment the Deployment's rollout to the target image is complete, compared with the
server's own event times (same clock, same machine) for ``k8s.wait_rollout`` completing and for the
next activity being scheduled.

Run: ``.venv/bin/python -m bench.overhead [--rounds N]``. Figures only, no thresholds.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
PLAN = ROOT / "examples" / "lab-keystone.yaml"
TASK_QUEUE = "stackhop-bench"
In = TypeVar("In")
Out = TypeVar("Out")


@dataclass
class Run:
    wall: float
    spans: list[tuple[str, float, float]]  # (activity, started, closed) in wall-clock seconds
    rollout_done: float | None = None  # independent witness
    noticed: float | None = None  # wait_rollout completed (engine: history event; raw: returned)
    next_scheduled: float | None = None  # engine only: the activity after wait_rollout scheduled
    extra: dict[str, Any] = field(default_factory=dict)


class RolloutWitness:
    """Timestamps when keystone-api is fully rolled out to ``image`` (kubectl's definition)."""

    def __init__(self, kubeconfig: Path, context: str, namespace: str, image: str) -> None:
        from kubernetes import client, config

        api = config.new_client_from_config(config_file=str(kubeconfig), context=context)
        self.apps = client.AppsV1Api(api)
        self.namespace, self.image = namespace, image
        self.done_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rollout-witness", daemon=True)

    def start(self) -> RolloutWitness:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def complete(self, d: Any) -> bool:
        s, spec = d.status, d.spec
        return bool(
            spec.template.spec.containers[0].image == self.image
            and (s.observed_generation or 0) >= d.metadata.generation
            and (s.updated_replicas or 0) == (s.available_replicas or 0) == (s.replicas or 0) == spec.replicas
        )

    def _loop(self) -> None:
        from kubernetes import watch

        while not self._stop.is_set() and self.done_at is None:
            try:
                w = watch.Watch()
                for ev in w.stream(
                    self.apps.list_namespaced_deployment,
                    self.namespace,
                    field_selector="metadata.name=keystone-api",
                    timeout_seconds=5,
                ):
                    if self.complete(ev["object"]):
                        self.done_at = time.time()
                    if self.done_at is not None or self._stop.is_set():
                        w.stop()
                        break
            except Exception:
                self._stop.wait(0.2)


def spans_from_history(history: Any) -> list[tuple[str, float, float, float]]:
    """(activity type, scheduled, started, closed) per activity, from the server's event times."""
    from temporalio.api.enums.v1 import EventType

    seen: dict[int, list[Any]] = {}
    for ev in history.events:
        t = ev.event_time.ToMicroseconds() / 1e6
        if ev.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            seen[ev.event_id] = [ev.activity_task_scheduled_event_attributes.activity_type.name, t, None, None]
        elif ev.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            seen[ev.activity_task_started_event_attributes.scheduled_event_id][2] = t
        elif ev.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            seen[ev.activity_task_completed_event_attributes.scheduled_event_id][3] = t
    return [tuple(v) for _, v in sorted(seen.items())]


async def engine_run(client: Any, lab: Any, plan: Any) -> Run:
    from temporalio.common import SearchAttributePair, TypedSearchAttributes

    from model import io, visibility
    from workflows.upgrade import UpgradeWorkflow

    w = plan.services[0].workloads[0]
    witness = RolloutWitness(lab.kubeconfig, lab.context, lab.namespace, w.image).start()
    try:
        t0 = time.time()
        handle = await client.start_workflow(
            UpgradeWorkflow.run,
            io.UpgradeInput(plan=plan, plan_file=str(PLAN), requested_by="bench"),
            id=plan.workflow_id,
            task_queue=TASK_QUEUE,
            result_type=io.UpgradeReport,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(visibility.CLOUD, plan.cloud.name),
                    SearchAttributePair(visibility.RELEASE, f"{plan.release.from_}->{plan.release.to}"),
                ]
            ),
        )
        report = await handle.result()
        wall = time.time() - t0
    finally:
        witness.stop()
    if report.outcome != "succeeded":
        raise RuntimeError(f"engine run did not succeed: {report.outcome}: {report.message}")
    child = client.get_workflow_handle(f"{plan.workflow_id}/{plan.services[0].name}")
    spans = spans_from_history(await child.fetch_history())
    names = [s[0] for s in spans]
    i = names.index("k8s.wait_rollout")
    run = Run(
        wall,
        [(n, st, c) for n, _, st, c in spans],
        witness.done_at,
        spans[i][3],
        spans[i + 1][1] if i + 1 < len(spans) else None,
    )
    run.extra["dispatch"] = sum(st - sch for _, sch, st, _ in spans)  # scheduled -> picked up
    return run


def raw_run(lab: Any, plan: Any, tag: str) -> Run:
    """The workflow's activity sequence (workflows/service.py), called directly, no Temporal."""
    from activities import database, kube_rollout, migration, tempest, validation
    from model import io

    svc, target = plan.services[0], plan.cloud.kubernetes
    w = svc.workloads[0]
    refs = [io.WorkloadRef(kind=x.kind, name=x.name, container=x.container) for x in svc.workloads]
    spans: list[tuple[str, float, float]] = []

    def timed(name: str, fn: Callable[[In], Out], arg: In) -> Out:
        t = time.time()
        out = fn(arg)
        spans.append((name, t, time.time()))
        return out

    def sync(phase: str) -> io.MigrateResult:
        return timed(
            f"db_sync {phase}",
            migration.db_sync,
            io.MigrateInput(
                service=svc.name,
                phase=phase,
                migration=svc.migration,
                database=svc.database,
                version=w.tag,
                image=w.image,
                target=target,
            ),
        )

    def check(c: Any) -> None:
        fn = tempest.run_tempest if c.kind == "tempest" else validation.run_check
        arg = io.CheckInput(service=svc.name, cloud=plan.cloud.openstack.cloud, check=c, target=target, version=w.tag)
        res = timed(f"{c.kind} check", fn, arg)
        if res.status != "pass":
            raise RuntimeError(f"raw run: {c.kind} check {res.status}: {res.message}")

    witness = RolloutWitness(lab.kubeconfig, lab.context, lab.namespace, w.image).start()
    try:
        t0 = time.time()
        snap = timed(
            "snapshot (mariadb-dump)",
            database.snapshot,
            io.SnapshotInput(upgrade_id=f"bench-raw-{tag}", service=svc.name, database=svc.database, target=target),
        )
        ok = timed(
            "verify (scratch load)",
            database.verify_snapshot,
            io.VerifyInput(snapshot=snap, database=svc.database, target=target),
        )
        if not ok.ok:
            raise RuntimeError(f"raw run: snapshot did not verify: {ok.message}")
        if sync("check").state != "up-to-date":
            sync("expand")
            sync("migrate")
        timed("read_images", kube_rollout.read_images, io.ReadImagesInput(target=target, workloads=refs))
        images = [
            io.WorkloadImage(kind=x.kind, name=x.name, container=x.container, image=x.image) for x in svc.workloads
        ]
        timed("set_images (patch)", kube_rollout.set_images, io.SetImagesInput(target=target, images=images))
        timed(
            "wait_rollout (watch)",
            kube_rollout.wait_rollout,
            io.WaitRolloutInput(target=target, workloads=refs, timeout_seconds=plan.policy.rollout_timeout),
        )
        noticed = time.time()
        for c in svc.checks:
            check(c)
        sync("contract")
        for c in svc.checks:
            if c.kind == "endpoint":
                check(c)
        wall = time.time() - t0
    finally:
        witness.stop()
    return Run(wall, spans, witness.done_at, noticed)


def ms(a: float | None, b: float | None) -> str:
    return f"{(b - a) * 1000:8.0f} ms" if a is not None and b is not None else "     n/a"


def report(n: int, eng: Run, raw: Run, first: str) -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n=== round {n} ({first} ran first; load average {load} on {os.cpu_count()} cores) ===")
    print(f"{'step':<26}{'engine activity':>16}{'raw call':>12}")
    same = len(eng.spans) == len(raw.spans)
    for (name, st, c), (label, rs, rc) in zip(eng.spans, raw.spans, strict=False):
        print(f"{label if same else name:<26}{c - st:>15.2f}s{rc - rs:>11.2f}s")
    busy = sum(c - st for _, st, c in eng.spans)
    glue = eng.wall - busy
    print(
        f"engine wall time        {eng.wall:8.2f} s   (activities executing {busy:.2f} s, "
        f"waiting for a worker {eng.extra['dispatch']:.2f} s)"
    )
    print(
        f"engine outside activities {glue:6.2f} s   ({glue / len(eng.spans) * 1000:.0f} ms per activity:"
        " start, workflow tasks, history, conversion)"
    )
    print(f"raw wall time           {raw.wall:8.2f} s   (calls {sum(c - s for _, s, c in raw.spans):.2f} s)")
    print(f"overhead ratio          {eng.wall / raw.wall:8.3f}     (engine / raw)")
    print(f"absolute overhead       {eng.wall - raw.wall:8.2f} s")
    print(
        f"rollout done -> engine: wait_rollout completed {ms(eng.rollout_done, eng.noticed)}, "
        f"next activity scheduled {ms(eng.rollout_done, eng.next_scheduled)}"
    )
    print(f"rollout done -> raw:    wait_rollout returned  {ms(raw.rollout_done, raw.noticed)}")


def bring_up() -> Any:
    """Both labs in .lab/bench (as lab/demo_cli.py's _labs, with a freshly bootstrapped baseline)."""
    from lab.demo import DemoLab, demo_kube_lab
    from lab.k8s import build
    from lab.openstack.manager import OpenStackLab

    build.build()  # a no-op when the cache is warm
    kube = demo_kube_lab()
    t = time.monotonic()
    kube.up()
    osl = OpenStackLab.load()
    if not osl.baseline_file.exists():
        osl.down(purge=True)
        osl = OpenStackLab.load()
    osl.up("28.1.0")
    if not osl.baseline_file.exists():
        osl.save_baseline()
    print(f"labs up in {time.monotonic() - t:.1f}s", flush=True)
    return DemoLab(kube, osl)


async def main(rounds: int) -> None:
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    import worker
    from model import visibility
    from model.loading import load_plan
    from model.logs import configure

    configure("WARNING")
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)
    started = time.monotonic()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
        data_converter=pydantic_data_converter,
        search_attributes=visibility.ALL,
        dev_server_log_level="error",
    )
    lab = None
    pairs: list[tuple[Run, Run]] = []
    try:
        lab = await asyncio.to_thread(bring_up)
        os.environ.update(lab.worker_env())
        base = load_plan(PLAN)
        async with worker.build_worker(env.client, task_queue=TASK_QUEUE):
            for n in range(1, rounds + 1):
                plan = base.model_copy(update={"cloud": base.cloud.model_copy(update={"name": f"bench-{n}"})})
                first = "engine" if n % 2 else "raw"  # alternate, so neither always runs on a warmer lab
                for which in (first, "raw" if first == "engine" else "engine"):
                    await asyncio.to_thread(lab.prepare)
                    if which == "engine":
                        eng = await engine_run(env.client, lab, plan)
                    else:
                        raw = await asyncio.to_thread(raw_run, lab, plan, str(n))
                report(n, eng, raw, first)
                pairs.append((eng, raw))
    finally:
        if lab:
            lab.close()
            await asyncio.to_thread(lab.kube.down)
            await asyncio.to_thread(lab.openstack.down)
        await env.shutdown()
    if len(pairs) > 1:
        ratios = sorted(e.wall / r.wall for e, r in pairs)
        glue = sorted(e.wall - sum(c - s for _, s, c in e.spans) for e, _ in pairs)
        lat = sorted((e.noticed - e.rollout_done) * 1000 for e, _ in pairs if e.rollout_done and e.noticed)
        med = statistics.median
        print(
            f"\nover {len(pairs)} rounds: ratio median {med(ratios):.3f} (min {ratios[0]:.3f}, max {ratios[-1]:.3f});"
            f" engine outside activities median {med(glue):.2f} s"
            + (f"; rollout done -> wait_rollout completed median {med(lat):.0f} ms" if lat else "")
        )
    print(f"\nbenchmark finished in {time.monotonic() - started:.0f}s")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="engine+raw pairs to run (default 1)")
    args = parser.parse_args()
    os.environ["STACKHOP_LAB_DIR"] = str(ROOT / ".lab" / "bench")
    os.environ.setdefault("STACKHOP_DEMO_CLUSTER", "stackhop-bench")
    asyncio.run(main(args.rounds))


if __name__ == "__main__":
    cli()
