"""Payload encryption end to end: an upgrade that writes secrets into every kind of payload (plan,
activity inputs and results, failure messages) leaves none of them in clear in any history, while
the names that stay clear by design do (README, "Payload encryption")."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.client import Client
from typer.testing import CliRunner

from cli import app
from model import errors, io
from model.codec import KEYS_ENV, KEYS_FILE_ENV, load_keys, new_key_line
from tests.plaintext import assert_no_plaintext
from tests.standins import Script
from tests.workflows.helpers import make_plan, outcome_of, running, service, start

PASSWORD = "Fak3-Passw0rd-zq"
IMAGE = "registry.secret.example/keystone:29.1.0-zq"
COMMAND = "keystone-manage-zq"
PATH = "/etc/stackhop/zq/my.cnf"
DATABASE = "keystone_zq_secret"
TOOL_OUTPUT = "DBSync zq output line"
SECRETS = [PASSWORD, IMAGE, COMMAND, PATH, DATABASE, TOOL_OUTPUT]


class LeakyScript(Script):
    """Stand-ins whose results and failure carry the secrets, as a real tool's output would."""

    def _enter(self, key: str) -> None:
        super()._enter(key)
        if key == io.TEMPEST_RUN:
            raise errors.permanent(errors.CHECK_FAILED, f"tempest: {TOOL_OUTPUT}; login with {PASSWORD} refused")


async def test_no_secret_of_an_upgrade_is_stored_in_clear(client: Client) -> None:
    script = LeakyScript()
    script.answers[f"{io.MIGRATION_DB_SYNC}:expand"] = io.MigrateResult(
        phase="expand", output_tail=f"{TOOL_OUTPUT}\npassword={PASSWORD}", command=[COMMAND, "db_sync", "--expand"]
    )
    workload: dict[str, Any] = {"kind": "Deployment", "name": "keystone-api", "container": "keystone-api"}
    plan = make_plan(
        [
            service(
                "keystone",
                database={"name": DATABASE, "defaults_file": PATH},
                workloads=[{**workload, "image": IMAGE}],
            )
        ]
    )
    async with running(client, script) as tq:
        handle = await start(client, plan, tq)
        outcome, report = await outcome_of(handle)
    assert outcome == errors.UPGRADE_ROLLED_BACK, report
    ids = [plan.workflow_id, io.service_workflow_id(plan.workflow_id, "keystone")]
    found = await assert_no_plaintext(
        client, ids, SECRETS, clear=[*ids, plan.cloud.name, io.DB_SNAPSHOT, errors.CHECK_FAILED]
    )
    assert found == set(SECRETS)  # each secret did reach the history, encrypted

    # a CLI without the key says which key it needs and where to put it (exit 2, no traceback)
    env = {
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": "default",
        KEYS_ENV: new_key_line("other").strip(),
        KEYS_FILE_ENV: None,
    }
    res = await asyncio.to_thread(CliRunner().invoke, app, ["status", plan.workflow_id], env=env)
    current = load_keys()
    assert current is not None
    assert res.exit_code == 2 and f"key {current.current!r}" in res.stderr and KEYS_FILE_ENV in res.stderr, res
