"""A real stackhop worker (worker.build_worker, every activity) in its own process, for the
snapshot-locality test: its host identity and snapshot directory come from the environment
(STACKHOP_WORKER_HOST, STACKHOP_SNAPSHOT_DIR), as in a deployment.

    python -m tests.openstack.locality_worker ADDRESS TASK_QUEUE

Prints ``ready <host queue>`` once both of its workers poll.
"""

from __future__ import annotations

import asyncio
import sys

from temporalio.client import Client

import worker as stackhop_worker
from model.codec import data_converter


async def main(address: str, task_queue: str) -> None:
    client = await Client.connect(address, data_converter=data_converter())
    async with stackhop_worker.build_worker(client, task_queue=task_queue) as running:
        print("ready", running.host_queue, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
