"""A worker process with stand-in activities, for the kill-and-restart test.

    python -m tests.standin_worker ADDRESS TASK_QUEUE JOURNAL [--block KEY]

Every activity appends ``start NAME`` and ``done NAME`` lines to JOURNAL (``Script.journal``);
``--block KEY`` makes that stand-in heartbeat forever, so the test can kill this process in the
middle of it.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

from temporalio.client import Client

import worker as stackhop_worker
from model.codec import data_converter
from tests.standins import QUICK_HEARTBEATS, Script


async def main(address: str, task_queue: str, journal: str, block: str | None) -> None:
    script = Script()
    script.journal = Path(journal)
    if block:
        script.block[block] = threading.Event()
    client = await Client.connect(address, data_converter=data_converter())
    async with stackhop_worker.build_worker(client, script.activities(), task_queue=task_queue, **QUICK_HEARTBEATS):
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    args = sys.argv[1:]
    blk = args[args.index("--block") + 1] if "--block" in args else None
    asyncio.run(main(args[0], args[1], args[2], blk))
