"""Steering a running upgrade: `pause`, `resume`, `approve`, `abort`, `abandon` (workflow updates).

Updates, not signals: the workflows' validators refuse what makes no sense now (resuming what is
not paused, an unknown gate) and the operator gets that reason back at once, exit 2, with nothing
written to the upgrade's history.

The operator always names the upgrade (``upgrade/<cloud>``); each command goes where its decision
belongs. `pause`, `abort` and resuming a paused upgrade are upgrade-wide: the Upgrade workflow takes
them and forwards them to its running services. Approving, resuming a failed step and abandoning a
stuck rollback answer one service's decision: they go to that service's own workflow, found by
reading the upgrade (cliapp.progress). A decision is named ``<service>/<step>#<n>`` (status shows
the one waiting, with the commands that answer it); `approve` names it, so an approval applies to
that one decision only. A gate may also be named by its plan name, as `start --approve` names it.
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

from cliapp.common import BAD_INPUT, OK, UNREACHABLE, Fail, connect, say, update_failure
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
    rolling_back = await _rolling_back(client, handle) if update == "abort" else []
    targets = await route(client, handle, update, request)
    for target in targets:
        try:
            ack = await target.execute_update(update, request, result_type=io.ControlAck, rpc_timeout=UPDATE_TIMEOUT)
        except WorkflowUpdateFailedError as e:
            raise update_failure(update, e, target.id) from None
        except WorkflowUpdateRPCTimeoutOrCancelledError:
            raise Fail(
                UNREACHABLE,
                f"no worker took the {update} within {UPDATE_TIMEOUT.seconds}s: "
                f"is `stackhop worker` running on task queue {desc.task_queue}?",
            ) from None
        say(f"{target.id}: {ack.message or update + ' accepted'}")
    for p in rolling_back:
        say(
            f"{p.service}: its rollback is in progress and runs to its end (a compensation is never cancelled);"
            " the abort waits for it"
            + (f" — it waits for {p.decision}: resume retries it, abandon ends it" if p.decision else "")
        )
    return OK


async def _rolling_back(client: Client, handle: WorkflowHandle[Any, Any]) -> list[io.ServiceProgress]:
    """The services already rolling back when the abort is sent: the abort cannot hurry them."""
    st = await read_status(client, handle)
    return [p for p in st.services if p.state == "rolling-back" or io.ABANDON in p.answers]


async def route(
    client: Client, handle: WorkflowHandle[Any, Any], update: str, request: Any
) -> list[WorkflowHandle[Any, Any]]:
    """The workflows that take this command: the upgrade's, or the services' it belongs to."""
    if update in ("pause", "abort"):
        return [handle]
    st = await read_status(client, handle)
    if update == "resume":  # the paused upgrade, and every service waiting for a decision that resume answers
        deciding = [p.service for p in st.services if io.RESUME in p.answers]
        if st.paused:
            return [handle, *(service_handle(client, handle.id, name) for name in deciding)]
        if not deciding:
            raise Fail(
                BAD_INPUT, "resume refused: nothing to resume: the upgrade is neither paused nor waiting for a decision"
            )
        return [service_handle(client, handle.id, name) for name in deciding]
    if update == "abandon":
        stuck = [p.service for p in st.services if io.ABANDON in p.answers]
        if not stuck:
            raise Fail(
                BAD_INPUT,
                "abandon refused: no rollback waits for a decision (abandon ends a rollback whose step failed"
                " and waits; to stop an upgrade going forward, abort it)",
            )
        return [service_handle(client, handle.id, name) for name in stuck]
    return [service_handle(client, handle.id, _decision_owner(handle.id, st, request.gate))]


def _decision_owner(wf_id: str, st: io.UpgradeStatus, decision: str) -> str:
    """The service whose workflow answers ``decision``: the one waiting for it, the owner of a gate
    so named, or the service the id names (its workflow says why it cannot take it)."""
    gates = {name: service for service, name in st.gates.items()}
    waiting = {p.decision: p.service for p in st.services if p.decision}
    named = io.decision_service(decision)
    owner = waiting.get(decision) or gates.get(decision) or (named if named in {p.service for p in st.services} else "")
    if not owner:
        now = ", ".join(sorted(waiting)) or "none"
        known = ", ".join(sorted(gates)) or "none"
        raise Fail(
            BAD_INPUT,
            f"approve refused: unknown decision {decision!r} (a decision is SERVICE/STEP#N); waiting now: {now};"
            f" gates of this upgrade: {known}",
        )
    state = next(p.state for p in st.services if p.service == owner)
    if state == "pending":
        raise Fail(
            BAD_INPUT,
            f"approve refused: {owner} has not started yet; approve {decision} when `stackhop status {wf_id}` "
            f"shows it waiting (or pre-approve its gate: `stackhop start PLAN --approve GATE`)",
        )
    if state in FINAL:
        raise Fail(BAD_INPUT, f"approve refused: {owner} has ended ({state})")
    return owner
