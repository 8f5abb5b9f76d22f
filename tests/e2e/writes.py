"""Writes an operator's users make while an upgrade runs, triggered by the workflow's own state.

The promise of a rollback by phase is that it loses none of them: a rollback after a complete
expand puts the previous images back on the expanded schema, so a user created and a token revoked
while the new release was validated are still there afterwards. These helpers make those writes at
the moment the keystone child reports a given step (read by its ``status`` query, as the CLI reads
it), through Keystone's own API, and check them afterwards with plain HTTP.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import requests
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from lab.openstack.manager import OpenStackLab
from model import io
from tests.openstack.helpers import issue_token
from tests.waiting import eventually

CHILD = io.service_workflow_id("upgrade/lab", "keystone")


@dataclass
class Writes:
    """What was written: a user that must exist afterwards, a token that must stay revoked."""

    user: str
    revoked_token: str
    step: str  # the keystone step that was running when they were written
    served_by: str  # the Keystone release that took the writes


async def step_of_child(temporal_env: WorkflowEnvironment) -> str:
    """The step the keystone child is running ("" before it starts, after it ends)."""
    handle = temporal_env.client.get_workflow_handle(CHILD)
    progress = await handle.query("status", result_type=io.ServiceProgress)
    return progress.step if progress.state == "running" else ""


async def write_during(temporal_env: WorkflowEnvironment, step: str) -> Writes:
    """Once the keystone child runs ``step``: create a user, issue a token and revoke it (in the
    OpenStack lab of STACKHOP_LAB_DIR, read when the step runs: the demo brings the lab up)."""

    async def running_it() -> bool:
        return await step_of_child(temporal_env) == step

    await eventually(
        running_it,
        within=300,
        what=f"the keystone child to run {step}",
        ignore=(RPCError, WorkflowQueryFailedError),
        poll=0.25,  # a query is a workflow task for the worker; the steps it waits for last seconds
    )
    return await asyncio.to_thread(_write, step)


def _write(step: str) -> Writes:
    lab = OpenStackLab.load()
    assert lab.keystone
    admin = issue_token(lab)
    headers = {"X-Auth-Token": admin}
    name = f"written-during-{step}-{uuid.uuid4().hex[:6]}"
    created = requests.post(
        f"{lab.keystone.url}/users", json={"user": {"name": name, "domain_id": "default"}}, headers=headers, timeout=30
    )
    assert created.status_code == 201, created.text
    doomed = issue_token(lab)
    revoked = requests.delete(
        f"{lab.keystone.url}/auth/tokens", headers={**headers, "X-Subject-Token": doomed}, timeout=30
    )
    assert revoked.status_code == 204, revoked.text
    served = lab.keystone.release or ""
    return Writes(user=name, revoked_token=doomed, step=step, served_by=served)


def user_exists(lab: OpenStackLab, name: str) -> bool:
    assert lab.keystone
    found = requests.get(
        f"{lab.keystone.url}/users", params={"name": name}, headers={"X-Auth-Token": issue_token(lab)}, timeout=30
    )
    assert found.status_code == 200, found.text
    return any(u["name"] == name for u in found.json()["users"])


def token_status(lab: OpenStackLab, token: str) -> int:
    """What Keystone answers a request made with ``token``: 401 once it is revoked."""
    assert lab.keystone
    return requests.get(
        f"{lab.keystone.url}/auth/tokens", headers={"X-Auth-Token": token, "X-Subject-Token": token}, timeout=30
    ).status_code
