"""A worker process with stand-in activities, for the kill-and-restart test.

    python -m tests.standin_worker ADDRESS TASK_QUEUE JOURNAL [--block KEY]

Every activity appends ``start KEY`` and ``done KEY`` lines to JOURNAL; ``--block KEY`` makes that
stand-in heartbeat forever, so the test can kill this process in the middle of it.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import threading
from pathlib import Path

from temporalio import activity
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

import worker as stackhop_worker
from tests.standins import Script


def journaled(fn, journal: Path):
    defn = activity._Definition.from_callable(fn)

    @functools.wraps(fn)
    def wrapper(*args):
        with journal.open("a") as f:
            f.write(f"start {defn.name}\n")
        out = fn(*args)
        with journal.open("a") as f:
            f.write(f"done {defn.name}\n")
        return out

    del wrapper.__temporal_activity_definition
    return activity.defn(name=defn.name)(wrapper)


async def main(address: str, task_queue: str, journal: str, block: str | None) -> None:
    script = Script()
    if block:
        script.block[block] = threading.Event()
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    acts = [journaled(a, Path(journal)) for a in script.activities()]
    async with stackhop_worker.build_worker(client, acts, task_queue=task_queue):
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    args = sys.argv[1:]
    blk = args[args.index("--block") + 1] if "--block" in args else None
    asyncio.run(main(args[0], args[1], args[2], blk))
