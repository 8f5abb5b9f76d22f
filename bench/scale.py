"""Issue 15: how many concurrent cloud upgrades one worker carries — N = 1, 10, 50 in one run.

One worker process (``python worker.py``, the real worker with every activity, its own process so its
CPU and memory are its own) drives N concurrent ``Upgrade`` workflows, one per cloud; each cloud is a
namespace of the Kubernetes lab with a Deployment whose rollout takes a fixed time (bench/scale_lab.py
says what a cloud is and what it leaves out: no database steps). A fresh worker per N, the same
Temporal dev server (encrypted payloads, as the tests run) and the same kube-apiserver throughout.

Measured per N, in the same run: wall time per upgrade against N = 1; CPU seconds and peak RSS of the
worker, the Temporal server and the kube-apiserver over the phase; history events per service
workflow; kube-apiserver requests per rollout from its own /metrics (apiserver_request_total before
and after); activity attempts beyond the first (from the histories).

Run: ``.venv/bin/python -m bench.scale [--n 1,10,50]``. Its own lab dir (.lab/scale-bench) and
cluster (stackhop-scale); it stops everything it started. Figures only: the targets are printed
beside them, nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from bench.scale_report import PARTS, Phase, history_figures, report, workflow_task_times

ROOT = Path(__file__).resolve().parent.parent


async def poller_ready(client: Any, queue: str) -> bool:
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
        desc = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(namespace=client.namespace, task_queue=TaskQueue(name=queue), task_queue_type=kind)
        )
        if not desc.pollers:
            return False
    return True


def start_worker(address: str, queue: str, lab: Any, slots: int, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        TEMPORAL_ADDRESS=address,
        TEMPORAL_NAMESPACE="default",
        STACKHOP_TASK_QUEUE=queue,
        STACKHOP_ACTIVITY_SLOTS=str(slots),
        STACKHOP_LOG_LEVEL="WARNING",
        KUBECONFIG=str(lab.kubeconfig),  # its directory is then a credential root (model/trust.py)
    )
    # as deployed (pip byte-compiles the image's packages): without bytecode caches the workflow sandbox
    # recompiles the workflow modules for every new workflow run
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, str(ROOT / "worker.py")], cwd=ROOT, env=env, stdout=out, stderr=out)


async def one_upgrade(client: Any, plan: Any, queue: str) -> tuple[float, float, str]:
    """(started, finished) in epoch seconds (the server's event times are on the same clock) and
    the outcome."""
    from temporalio.common import SearchAttributePair, TypedSearchAttributes

    from model import io, visibility
    from workflows.upgrade import UpgradeWorkflow

    t0 = time.time()
    handle = await client.start_workflow(
        UpgradeWorkflow.run,
        io.UpgradeInput(plan=plan, plan_file=f"{plan.metadata.name}.yaml", requested_by="bench"),
        id=plan.workflow_id,
        task_queue=queue,
        result_type=io.UpgradeReport,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(visibility.CLOUD, plan.cloud.name),
                SearchAttributePair(visibility.RELEASE, f"{plan.release.from_}->{plan.release.to}"),
            ]
        ),
    )
    report = await handle.result()
    return t0, time.time(), f"{report.outcome}{'' if report.outcome == 'succeeded' else ': ' + report.message}"


async def phase(env: Any, lab: Any, context: str, n: int, pids: dict[str, int], slots: int) -> Phase:
    from bench.scale_lab import (
        SERVICE,
        Sampler,
        cloud_plan,
        create_clouds,
        deployments_complete,
        namespace,
        new_pods_ready,
        request_counts,
    )
    from model import io

    run = f"n{n}-{uuid.uuid4().hex[:4]}"
    workdir = ROOT / ".lab" / "scale-bench"
    workdir.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(create_clouds, lab, run, n, workdir)
    plans = [cloud_plan(lab, context, run, i) for i in range(n)]
    queue = f"scale-{run}"
    proc = start_worker(env.client.service_client.config.target_host, queue, lab, slots, workdir / "worker.log")
    try:
        deadline = time.monotonic() + 120
        while not await poller_ready(env.client, queue):  # the worker has connected and polls both kinds
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start polling {queue}: see {workdir / 'worker.log'}")
            await asyncio.sleep(0.2)
        before = await asyncio.to_thread(request_counts, lab)
        sampler = Sampler({**pids, "worker": proc.pid}).start()
        t0 = time.monotonic()
        done = await asyncio.gather(*(one_upgrade(env.client, p, queue) for p in plans))
        span = time.monotonic() - t0
        sampler.stop()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 60)  # graceful shutdown: at most 30 s (worker.py)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 10)
    after = await asyncio.to_thread(request_counts, lab)
    ready = await asyncio.to_thread(new_pods_ready, lab, run)
    complete = await asyncio.to_thread(deployments_complete, lab, run)
    service_events: list[int] = []
    upgrade_events: list[int] = []
    parts: dict[str, list[float]] = {k: [] for k in PARTS}
    retries = 0
    for i, p in enumerate(plans):
        spans: dict[str, list[float]] = {}
        every: list[list[Any]] = []
        wait = wft_wait = wft_run = 0.0
        for wid, into in ((f"{p.workflow_id}/{SERVICE}", service_events), (p.workflow_id, upgrade_events)):
            history = await env.client.get_workflow_handle(wid).fetch_history()
            events, extra, found = history_figures(history)
            w, r = workflow_task_times(history)
            wft_wait, wft_run = wft_wait + w, wft_run + r
            into.append(events)
            retries += extra
            spans.update({name: times for name, *times in found})
            every += found
            wait += sum(st - sch for _, sch, st, _ in found)
        ns = namespace(run, i)
        start, end, _ = done[i]
        patched, noticed = spans[io.K8S_SET_IMAGES][2], spans[io.K8S_WAIT_ROLLOUT][2]
        for key, value in (
            ("preflight", spans[io.K8S_SET_IMAGES][0] - start),
            ("rollout", noticed - spans[io.K8S_WAIT_ROLLOUT][1]),
            ("pods", ready[ns] - patched),
            ("complete", complete[ns] - patched),
            ("notice", noticed - complete[ns]),
            ("after", end - noticed),
            ("dispatch", wait),
            ("wft_wait", wft_wait),
            ("wft_run", wft_run),
            ("pre_acts", sum(c - st for _, sch, st, c in every if sch < spans[io.K8S_SET_IMAGES][0])),
        ):
            parts[key].append(value)
    return Phase(
        n=n,
        walls=[end - start for start, end, _ in done],
        span=span,
        cpu=sampler.cpu,
        peak=sampler.peak,
        busiest=sampler.busiest,
        requests=after - before,
        service_events=service_events,
        upgrade_events=upgrade_events,
        retries=retries,
        parts=parts,
        outcomes=Counter(o for _, _, o in done),
    )


async def main(ns: list[int], slots: int, lab_defaults: bool) -> None:
    from temporalio.testing import WorkflowEnvironment

    from bench.scale_lab import ScaleLab, child_named
    from model import visibility
    from model.codec import KEYS_ENV, KEYS_FILE_ENV, data_converter, new_key_line

    if not (os.environ.get(KEYS_ENV) or os.environ.get(KEYS_FILE_ENV)):
        os.environ[KEYS_ENV] = new_key_line("bench-scale").strip()
    started = time.monotonic()
    lab = ScaleLab(name="stackhop-scale", nodes=3)
    if lab_defaults:
        lab.controller_args = {}
    env = None
    phases: list[Phase] = []
    try:
        await asyncio.to_thread(lab.up)
        import yaml

        context = yaml.safe_load(lab.kubeconfig.read_text())["current-context"]
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=str(Path(sys.executable).parent / "temporal"),
            data_converter=data_converter(),
            search_attributes=visibility.ALL,
            dev_server_log_level="error",
        )
        pids = {"temporal": child_named("temporal"), "kube-apiserver": lab._pid("kube-apiserver")}
        print(f"lab and Temporal up in {time.monotonic() - started:.0f}s", flush=True)
        for n in ns:
            t = time.monotonic()
            phases.append(await phase(env, lab, context, n, pids, slots))
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            print(f"N={n} done in {time.monotonic() - t:.0f}s (set-up included; load {load})", flush=True)
    finally:
        if env is not None:
            await env.shutdown()
        await asyncio.to_thread(lab.down)
    report(phases, slots, lab.controller_args)
    print(f"\nbenchmark finished in {time.monotonic() - started:.0f}s on {os.cpu_count()} cores")


def cli() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", default="1,10,50", help="concurrent upgrades per phase (default 1,10,50)")
    parser.add_argument("--slots", type=int, default=64, help="the worker's STACKHOP_ACTIVITY_SLOTS (default 64)")
    parser.add_argument(
        "--lab-defaults",
        action="store_true",
        help="keep kube-controller-manager's default client rate and syncs (bench/scale_lab.py CONTROLLER_ARGS)",
    )
    args = parser.parse_args()
    os.environ["STACKHOP_LAB_DIR"] = str(ROOT / ".lab" / "scale-bench")
    asyncio.run(main([int(x) for x in args.n.split(",")], args.slots, args.lab_defaults))


if __name__ == "__main__":
    cli()
