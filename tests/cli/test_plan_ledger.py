"""`stackhop plan show PLAN --live` shows the cloud's ledger (workflows/ledger.py): what earlier
upgrades left each service, and a plan whose services have unfinished online data migrations is
flagged as the pre-flight would refuse it. The cluster's part of --live is stubbed (no Kubernetes
here: tests/cli/test_live.py covers it); the ledger is a real Ledger workflow."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import yaml
from temporalio.client import Client

import activities.preview
from model import io
from tests.cli.conftest import Cli, plan_doc
from tests.standins import Script
from tests.waiting import eventually
from tests.workflows.helpers import running


async def test_show_live_prints_the_ledger_and_flags_unfinished_online_migrations(
    cli: Cli, client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(activities.preview, "live_preview", lambda plan: [])
    cloud = f"t{uuid.uuid4().hex[:10]}"
    doc = plan_doc()
    doc["cloud"]["name"] = cloud
    doc["services"] = [{**doc["services"][0], "name": "placement", "database": {"name": "placement"}}]
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(doc))

    res = await cli("plan", "show", "--live", str(path))
    assert res.exit_code == 0, res.output
    assert f"ledger ledger/{cloud}: none yet (no upgrade of {cloud} recorded)" in res.stdout

    entry = io.LedgerEntry(
        service="placement",
        release="2026.1",
        version="15.0.0",
        online_pending=True,
        online_command="placement-manage db online_data_migrations --max-count 1000",
        outcome="failed",
        upgrade_id=f"upgrade/{cloud}",
        recorded_at="2026-01-01T00:00:00+00:00",
    )
    rec = io.LedgerRecord(cloud=cloud, upgrade_id=f"upgrade/{cloud}", run_id="r1", outcome="failed", entries=[entry])
    async with running(client, Script()) as tq:
        await client.start_workflow(
            "Ledger",
            io.LedgerInput(cloud=cloud),
            id=io.ledger_workflow_id(cloud),
            task_queue=tq,
            start_signal="record",
            start_signal_args=[rec],
        )
        handle = client.get_workflow_handle(io.ledger_workflow_id(cloud))

        async def recorded() -> bool:
            state: io.LedgerState = await handle.query("state", result_type=io.LedgerState)
            return state.records == 1

        await eventually(recorded, within=20, what="the record")
        res = await cli("plan", "show", "--live", str(path))
        await handle.terminate("test over")
    assert res.exit_code == 2, res.output
    assert f"Ledger of {cloud} (1 record(s), run 1)" in res.stdout
    assert "UNFINISHED: run `placement-manage db online_data_migrations --max-count 1000`" in res.stdout
    assert f"upgrade/{cloud} failed 2026-01-01T00:00:00" in res.stdout
    assert "unfinished online data migrations (placement): the upgrade's pre-flight would stop" in res.stderr
