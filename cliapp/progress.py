"""Reading a running upgrade: the Upgrade workflow's ``status``, each running service from its own workflow.

The Upgrade workflow knows the waves, which services started and how the finished ones ended; a
running service's step, state and what it waits for live in its own workflow
(``upgrade/<cloud>/<service>``, see ``io.service_workflow_id``), read here by its ``status`` query.
Nothing is signalled from a service to the upgrade, so reading costs no history event. A service
workflow that has closed is read from its result, never by query (a query on a closed workflow
makes a worker replay its whole history). The same view serves ``status``, ``watch`` and the
routing of ``approve``/``resume`` to the service that waits for them.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowQueryRejectedError
from temporalio.common import QueryRejectCondition

from model import io

QUERY_TIMEOUT = timedelta(seconds=5)
FINAL = ("succeeded", "rolled-back", "failed", "aborted")


async def read_status(client: Client, handle: WorkflowHandle[Any, Any]) -> io.UpgradeStatus:
    """The upgrade's status with every running service as its own workflow reports it."""
    st: io.UpgradeStatus = await handle.query("status", result_type=io.UpgradeStatus, rpc_timeout=QUERY_TIMEOUT)
    services = await asyncio.gather(
        *(service_status(client, handle.id, p) if p.state == "running" else _same(p) for p in st.services)
    )
    return st.model_copy(update={"services": list(services)})


async def _same(p: io.ServiceProgress) -> io.ServiceProgress:
    return p


def service_handle(client: Client, upgrade_id: str, service: str) -> WorkflowHandle[Any, io.ServiceResult]:
    return client.get_workflow_handle(io.service_workflow_id(upgrade_id, service), result_type=io.ServiceResult)


async def service_status(client: Client, upgrade_id: str, known: io.ServiceProgress) -> io.ServiceProgress:
    """A started service: its own ``status`` while it runs, its result once it has closed."""
    child = service_handle(client, upgrade_id, known.service)
    try:
        progress: io.ServiceProgress = await child.query(
            "status",
            result_type=io.ServiceProgress,
            reject_condition=QueryRejectCondition.NOT_OPEN,
            rpc_timeout=QUERY_TIMEOUT,
        )
        return progress
    except WorkflowQueryRejectedError:
        pass  # it closed after the upgrade's own answer: read how it ended
    try:
        result = await child.result(follow_runs=False)
    except WorkflowFailureError as e:
        return known.model_copy(update={"state": "failed", "message": f"service workflow failed: {e.cause or e}"})
    done = known.steps_total if result.outcome == "succeeded" else known.steps_done
    return known.model_copy(update={"state": result.outcome, "message": result.message, "steps_done": done})
