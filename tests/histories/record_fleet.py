"""Record the Fleet workflow's history that tests/workflows/test_fleet_replay.py replays.

    .venv/bin/python -m tests.histories.record_fleet

One scenario covers the fleet's paths in one history: a canary, a wave with a busy cloud, a cloud
refused for its images and a failure within the threshold, a wave that waits for its approval
(approved), and a last wave stopped by its threshold. The children are the stand-in Upgrade
(tests/fleet_standins.py): only the fleet's own history is written (tests/histories/fleet/), plain
(no codec keys), as tests/histories/record.py writes the upgrades'. When to re-record is the
versioning policy in workflows/__init__.py.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from pathlib import Path

from temporalio.client import Client, WorkflowFailureError

from model import io
from tests.conftest import start_dev_server
from tests.fleet_standins import StandInUpgrade, cloud_plan, fleet_worker, make_fleet, start_fleet
from tests.waiting import eventually

HERE = Path(__file__).parent / "fleet"


async def record(client: Client) -> Path:
    plans = {
        "a": cloud_plan("a"),
        "b": cloud_plan("b", hold="yes"),
        "c": cloud_plan("c", image="registry/keystone:29.1.1"),
        "d": cloud_plan("d", outcome="rolled-back"),
        "e": cloud_plan("e"),
        "f": cloud_plan("f", outcome="failed"),
        "g": cloud_plan("g"),
    }
    waves = [
        {"name": "one", "clouds": ["b", "c", "d", "e"], "max_failed": 2},
        {"name": "two", "clouds": ["f", "g"], "approval": True},
    ]
    fleet = make_fleet(plans, waves, ["a"], max_parallel=2)
    async with fleet_worker(client) as tq:
        busy = await client.start_workflow(
            StandInUpgrade.run, io.UpgradeInput(plan=plans["b"]), id=plans["b"].workflow_id, task_queue=tq
        )
        handle = await start_fleet(client, fleet, tq)

        async def waiting() -> bool:
            st = await handle.query("status")
            return bool(st["decision"])

        await eventually(waiting, within=30, what="wave two waiting")
        await handle.execute_update("approve", io.ApproveRequest(gate="fleet/wave#2", by="recorder"))
        with suppress(WorkflowFailureError):
            await handle.result()
        await busy.signal("finish")
        await busy.result()
    HERE.mkdir(exist_ok=True)
    out = HERE / "fleet--fleet.json"
    out.write_text((await handle.fetch_history()).to_json())
    return out


async def main() -> None:
    env = await start_dev_server(encrypted=False)
    try:
        print(await record(env.client))
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
