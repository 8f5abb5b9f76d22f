"""Steering a running upgrade: `pause`, `resume`, `approve`, `abort` (workflow updates).

Updates, not signals: the workflow's validators refuse what makes no sense now (resuming what is
not paused, an unknown gate) and the operator gets that reason back at once, exit 2, with nothing
written to the upgrade's history.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)

from cliapp.common import BAD_INPUT, OK, UNREACHABLE, Fail, connect, say
from cliapp.render import run_status_name
from cliapp.upgrades import upgrade_handle

UPDATE_TIMEOUT = timedelta(seconds=30)


async def control(wf_id: str, update: str, request: Any) -> int:
    from model import io

    client = await connect()
    handle, desc = await upgrade_handle(client, wf_id)
    if desc.status != WorkflowExecutionStatus.RUNNING:
        raise Fail(
            BAD_INPUT,
            f"{update} refused: the upgrade {wf_id} has ended ({run_status_name(desc.status)}); see `stackhop status {wf_id}`",
        )
    try:
        ack = await handle.execute_update(update, request, result_type=io.ControlAck, rpc_timeout=UPDATE_TIMEOUT)
    except WorkflowUpdateFailedError as e:
        reason = getattr(e.cause, "message", None) or str(e.cause)
        raise Fail(BAD_INPUT, f"{update} refused: {reason}") from None
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        raise Fail(
            UNREACHABLE,
            f"no worker took the {update} within {UPDATE_TIMEOUT.seconds}s: is `stackhop worker` running on task queue {desc.task_queue}?",
        ) from None
    say(f"{wf_id}: {ack.message or update + ' accepted'}")
    return OK
