"""Steering a running upgrade: `pause`, `resume`, `approve`, `abort` (workflow updates).

Updates, not signals: the workflows' validators refuse what makes no sense now (resuming what is
not paused, an unknown gate) and the operator gets that reason back at once, exit 2, with nothing
written to the upgrade's history.

The operator always names the upgrade (``upgrade/<cloud>``); each command goes where its decision
belongs. `pause`, `abort` and resuming a paused upgrade are upgrade-wide: the Upgrade workflow takes
them and forwards them to its running services. Approving a gate or an inconclusive check, and
resuming a failed step, belong to one service: they go to that service's own workflow, found by
reading the upgrade (cliapp.progress) — the service that owns the gate, or the ones waiting for a
decision.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)

from cliapp.common import BAD_INPUT, OK, UNREACHABLE, Fail, connect, say
from cliapp.progress import FINAL, read_status, service_handle
from cliapp.render import run_status_name
from cliapp.upgrades import upgrade_handle
from model import io

UPDATE_TIMEOUT = timedelta(seconds=30)


async def control(wf_id: str, update: str, request: Any) -> int:
    client = await connect()
    handle, desc = await upgrade_handle(client, wf_id)
    if desc.status != WorkflowExecutionStatus.RUNNING:
        raise Fail(
            BAD_INPUT,
            f"{update} refused: the upgrade {wf_id} has ended ({run_status_name(desc.status)}); "
            f"see `stackhop status {wf_id}`",
        )
    targets = await route(client, handle, update, request)
    for target in targets:
        try:
            ack = await target.execute_update(update, request, result_type=io.ControlAck, rpc_timeout=UPDATE_TIMEOUT)
        except WorkflowUpdateFailedError as e:
            reason = getattr(e.cause, "message", None) or str(e.cause)
            raise Fail(BAD_INPUT, f"{update} refused: {reason}") from None
        except WorkflowUpdateRPCTimeoutOrCancelledError:
            raise Fail(
                UNREACHABLE,
                f"no worker took the {update} within {UPDATE_TIMEOUT.seconds}s: "
                f"is `stackhop worker` running on task queue {desc.task_queue}?",
            ) from None
        say(f"{target.id}: {ack.message or update + ' accepted'}")
    return OK


async def route(
    client: Client, handle: WorkflowHandle[Any, Any], update: str, request: Any
) -> list[WorkflowHandle[Any, Any]]:
    """The workflows that take this command: the upgrade's, or the services' it belongs to."""
    if update in ("pause", "abort"):
        return [handle]
    st = await read_status(client, handle)
    if update == "resume":  # the paused upgrade, and every service waiting for a decision
        deciding = [p.service for p in st.services if p.waiting_for == io.DECISION]
        if st.paused:
            return [handle, *(service_handle(client, handle.id, name) for name in deciding)]
        if not deciding:
            raise Fail(
                BAD_INPUT, "resume refused: nothing to resume: the upgrade is neither paused nor waiting for a decision"
            )
        return [service_handle(client, handle.id, name) for name in deciding]
    return [service_handle(client, handle.id, _gate_owner(handle.id, st, request.gate))]


def _gate_owner(wf_id: str, st: io.UpgradeStatus, gate: str) -> str:
    """The service whose workflow approves ``gate``: its own gate, or ``<service>/<step>``."""
    owners = {name: service for service, name in st.gates.items()}
    deciding = {f"{p.service}/{p.step}": p.service for p in st.services if p.waiting_for == io.DECISION}
    owner = owners.get(gate) or deciding.get(gate)
    if owner is None and "/" in gate and gate.split("/", 1)[0] in {p.service for p in st.services}:
        owner = gate.split("/", 1)[0]  # its workflow says why it cannot approve that
    if owner is None:
        known = ", ".join(sorted(owners) + sorted(deciding)) or "none"
        raise Fail(BAD_INPUT, f"approve refused: unknown gate {gate!r}; gates of this upgrade: {known}")
    state = next(p.state for p in st.services if p.service == owner)
    if state == "pending":
        raise Fail(
            BAD_INPUT,
            f"approve refused: {owner} has not started yet; approve {gate} when `stackhop status {wf_id}` "
            f"shows it waiting (or pre-approve it: `stackhop start PLAN --approve {gate}`)",
        )
    if state in FINAL:
        raise Fail(BAD_INPUT, f"approve refused: {owner} has ended ({state})")
    return owner
