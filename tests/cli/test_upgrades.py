"""start / status / watch / list against a worker running the stand-in activities."""

from __future__ import annotations

import json
import re
import threading
import uuid
from pathlib import Path

from temporalio.client import Client

from model import errors
from tests.cli.conftest import UI, Cli, WritePlan
from tests.standins import Script
from tests.waiting import eventually
from tests.workflows.helpers import running


async def test_start_wait_runs_to_success_and_reports(client: Client, cli: Cli, write_plan: WritePlan) -> None:
    plan, wf_id = write_plan()
    async with running(client, Script()) as tq:
        res = await cli("start", str(plan), "--wait", tq=tq)
        assert res.exit_code == 0, res.output
        out = res.stdout
        assert f"started {wf_id}" in out
        assert f"UI: {UI}/namespaces/default/workflows/upgrade%2F{wf_id.split('/')[1]}" in out
        assert "succeeded" in out and "upgraded to 2026.1" in out
        assert f"sha256 {'ab' * 32}" in out and "tempest: pass, passed 14, failed 0" in out
        for step in ("status", "snapshot", "verify", "expand", "roll", "rollout", "validate", "contract", "postcheck"):
            assert re.search(rf"^{step}\s+│ done\s+│ \d+\.\d", out, re.M), step

        res = await cli("status", wf_id)
        assert res.exit_code == 0 and "succeeded" in res.stdout
        assert res.stdout.startswith(f"keystone: 2025.2 → 2026.1 on {wf_id.split('/')[1]}\n")  # the static summary
        doc = await cli.status(wf_id.split("/")[1])  # the cloud name alone works too
        assert doc["outcome"] == "succeeded" and doc["run_status"] == "completed"
        assert doc["report"]["services"][0]["snapshot"]["sha256"] == "ab" * 32

    desc = await client.get_workflow_handle(wf_id).describe()
    assert await desc.static_summary() == f"keystone: 2025.2 → 2026.1 on {wf_id.split('/')[1]}"
    details = await desc.static_details()
    assert details is not None
    assert (
        "**Plan** `cli-test`" in details
        and "1. keystone (expand-contract" in details
        and "on failure: rollback" in details
    )
    assert str(plan) in details


async def test_failure_rolls_back_and_exits_1(client: Client, cli: Cli, write_plan: WritePlan) -> None:
    plan, wf_id = write_plan()
    script = Script()
    script.fail["k8s.wait_rollout"] = errors.ROLLOUT_FAILED
    async with running(client, script) as tq:
        res = await cli("start", str(plan), tq=tq)
        assert res.exit_code == 0, res.output
        assert f"stackhop watch {wf_id}" in res.stdout
        res = await cli("watch", wf_id, tq=tq)
        assert res.exit_code == 1, res.output
        assert "rolled-back" in res.stdout and "keystone: rollout: " in res.stdout
        # a failed rollout after a complete expand: previous images only, nothing restored
        for step in ("rollout", "undo-roll"):
            assert re.search(rf"^{step}\s+│ (done|failed)", res.stdout, re.M), step
        assert not re.search(r"^(quiesce|restore)\s+│", res.stdout, re.M)
        assert "rollback: images" in res.stdout and "the contract did not run" in res.stdout
    res = await cli("status", wf_id)  # no worker needed once it has ended
    assert res.exit_code == 1 and "rolled-back" in res.stdout
    doc = await cli.status(wf_id)
    assert doc["outcome"] == "rolled-back" and doc["run_status"] == "failed"
    assert doc["report"]["services"][0]["outcome"] == "rolled-back"


async def test_second_start_on_the_same_cloud_is_refused(client: Client, cli: Cli, write_plan: WritePlan) -> None:
    plan, wf_id = write_plan(services=None)
    script = Script()
    script.block["db.snapshot"] = release = threading.Event()
    async with running(client, script) as tq:
        assert (await cli("start", str(plan), tq=tq)).exit_code == 0
        res = await cli("start", str(plan), tq=tq)
        assert res.exit_code == 2
        cloud = wf_id.split("/")[1]
        assert (
            f"an upgrade is already running on cloud {cloud} (workflow {wf_id}): stackhop status {wf_id}" in res.stderr
        )
        running_now = await cli.until(wf_id, lambda d: d["status"] and d["status"]["services"][0]["step"] == "snapshot")
        assert running_now["run_status"] == "running"
        res = await cli("list", "--cloud", cloud)
        assert res.exit_code == 0 and wf_id in res.stdout and "running" in res.stdout
        release.set()
        assert (await cli("watch", wf_id)).exit_code == 0
        # once it has ended, the same plan may run again
        res = await cli("start", str(plan), tq=tq)
        assert res.exit_code == 0, res.output
        assert (await cli("watch", wf_id)).exit_code == 0
    res = await cli("list", "--cloud", cloud)
    assert res.exit_code == 0 and "no running upgrades" in res.stdout

    async def both_listed() -> str:  # visibility is eventually consistent
        res = await cli("list", "--all", "--cloud", cloud)
        return res.stdout if res.stdout.count("completed") == 2 else ""

    listed = await eventually(both_listed, within=10, what="both runs listed as completed")
    assert listed.count(wf_id) == 2 and "2025.2->2026.1" in listed


async def test_status_of_unknown_upgrade_is_bad_input(cli: Cli) -> None:
    res = await cli("status", "upgrade/no-such-cloud")
    assert res.exit_code == 2 and "no upgrade 'upgrade/no-such-cloud'" in res.stderr
    res = await cli("watch", "no-such-cloud")
    assert res.exit_code == 2


async def test_start_refuses_bad_plans_and_unknown_gates_before_contacting_temporal(
    offline_cli: Cli, write_plan: WritePlan
) -> None:
    plan, _ = write_plan()
    res = await offline_cli("start", str(plan), "--approve", "nope")
    assert res.exit_code == 2 and "--approve nope: no such gate in the plan (gates: none)" in res.stderr
    bad = plan.with_name("bad.yaml")
    bad.write_text(plan.read_text().replace("2025.2", "2027.1"))
    res = await offline_cli("start", str(bad))
    assert res.exit_code == 2 and "release.to" in res.stderr and "downgrade" in res.stderr


async def test_status_json_while_running_and_pre_approved_gate(client: Client, cli: Cli, write_plan: WritePlan) -> None:
    from tests.workflows.helpers import service

    plan, wf_id = write_plan([service("keystone", gate={"approval": True, "name": "go"})])
    async with running(client, Script()) as tq:
        res = await cli("start", str(plan), "--approve", "go", "--wait", tq=tq)
        assert res.exit_code == 0, res.output
    doc = json.loads((await cli("status", wf_id, "--json")).stdout)
    gate = [s for s in doc["report"]["services"][0]["steps"] if s["step"] == "gate"]
    assert gate and gate[0]["status"] == "done" and "go" in gate[0]["detail"]


async def test_status_of_a_running_upgrade_without_worker_exits_3(
    client: Client, cli: Cli, write_plan: WritePlan
) -> None:
    plan, wf_id = write_plan()
    tq = f"nobody-polls-{uuid.uuid4().hex[:6]}"
    assert (await cli("start", str(plan), tq=tq)).exit_code == 0
    try:
        res = await cli("status", wf_id)
        assert res.exit_code == 3
        assert f"{wf_id} is running but no worker answered its status query" in res.stderr and tq in res.stderr
    finally:
        await client.get_workflow_handle(wf_id).terminate("test cleanup")
    res = await cli("status", wf_id)  # terminated: no report, still a clear outcome
    assert res.exit_code == 1 and "ended: terminated" in res.stdout and "without a report" in res.stdout


async def test_profiles_from_the_temporal_config_file(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "temporal.toml"
    config.write_text(f'[profile.lab]\naddress = "{cli.address}"\nnamespace = "default"\n')
    env = {"TEMPORAL_CONFIG_FILE": str(config), "TEMPORAL_ADDRESS": None}
    res = await cli("--profile", "lab", "list", "--all", **env)
    assert res.exit_code == 0, res.output
    res = await cli("--profile", "nope", "list", **env)
    assert res.exit_code == 2 and "Profile 'nope' not found" in res.stderr
