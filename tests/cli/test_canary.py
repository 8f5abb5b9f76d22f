"""`stackhop canary ...`: Temporal Schedules that run the Canary workflow, against stand-in activities."""

from __future__ import annotations

import asyncio
import re
import threading
import uuid
from pathlib import Path

from temporalio.client import Client, ScheduleActionStartWorkflow

from model import errors
from tests.cli.conftest import Cli, WritePlan
from tests.standins import Script
from tests.waiting import NotYet, eventually
from tests.workflows.helpers import running

NEVER = "0 3 1 1 *"  # 03:00 on January 1st: never fires during a test
RESET = ["k8s.scale:down", "db.restore", "k8s.set_images", "k8s.scale:up", "k8s.wait_rollout"]


def name() -> str:
    return f"cn-{uuid.uuid4().hex[:8]}"


async def until_listed(cli: Cli, canary: str, pattern: str, within: float = 15) -> str:
    """`canary list` reads the (eventually consistent) schedule listing: wait until the row shows."""
    listing: list[str] = []

    async def row() -> str:
        res = await cli("canary", "list")
        assert res.exit_code == 0, res.output
        listing[:] = [res.stdout]
        line = next((line for line in res.stdout.splitlines() if f" {canary} " in line), "")
        return line if re.search(pattern, line) else ""

    try:
        return await eventually(row, within=within, what=f"{canary} listed as {pattern!r}")
    except NotYet as e:
        raise NotYet(f"{e}:\n{''.join(listing)}") from None


async def schedule_paused(client: Client, canary: str) -> bool:
    return (await client.get_schedule_handle(f"canary/{canary}").describe()).schedule.state.paused


async def schedule_idle(client: Client, canary: str) -> bool:
    return not (await client.get_schedule_handle(f"canary/{canary}").describe()).info.running_actions


async def test_create_list_trigger_wait_passes_and_resets_to_baseline(
    client: Client, cli: Cli, write_plan: WritePlan
) -> None:
    plan, wf_id = write_plan()
    canary = name()
    script = Script()
    async with running(client, script) as tq:
        res = await cli(
            "canary", "create", canary, "--plan", str(plan), "--cron", NEVER, "--note", "nightly canary", tq=tq
        )
        assert res.exit_code == 0, res.output
        assert f"created canary {canary}: schedule canary/{canary}, cron '{NEVER}'" in res.stdout

        desc = await client.get_schedule_handle(f"canary/{canary}").describe()
        action = desc.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert action.workflow == "Canary" and action.id == f"canary/{canary}" and action.task_queue == tq
        assert desc.schedule.policy.pause_on_failure and desc.schedule.policy.overlap.name == "SKIP"
        assert desc.schedule.state.note == "nightly canary"
        assert (await desc.memo())["plan_file"] == str(plan.resolve())

        row = await until_listed(cli, canary, r"never ran")
        assert NEVER in row and " no " in row and "nightly canary" in row
        assert re.search(r"\d{4}-01-01 03:00:00Z", row)  # next run

        res = await cli("canary", "trigger", canary, "--wait", tq=tq)
        assert res.exit_code == 0, res.output
        out = res.stdout
        assert f"triggered canary {canary}: workflow canary/{canary}-" in out
        assert (
            f"canary {canary}: passed" in out
            and "succeeded: " in out
            and "  keystone: succeeded (keystone upgraded to 2026.1); tempest pass 14 passed, 0 failed" in out
        )
        assert "reset keystone: done back to registry/keystone-api:old" in out
        assert f"full report: stackhop report {wf_id}" in out
        assert script.calls[-5:] == RESET  # the upgrade, then the reset to baseline

        await until_listed(cli, canary, r"passed \(succeeded\) at ")
        res = await cli("canary", "history", canary)
        assert res.exit_code == 0, res.output
        assert f"canary {canary}: 1 run(s), active (nightly canary)" in res.stdout
        assert re.search(rf"canary/{canary}-\S+\s+│ passed\s+│ succeeded", res.stdout)
        res = await cli("report", wf_id)  # the canary's upgrade has its report like any other
        assert res.exit_code == 0 and "## keystone: succeeded" in res.stdout
        started = re.search(rf"workflow (canary/{canary}-\S+) ", out)
        assert started, out
        run_id = started.group(1)
        res = await cli("report", run_id, "-f", "json")  # and so has the canary run
        assert res.exit_code == 0 and '"outcome": "succeeded"' in res.stdout
    res = await cli("canary", "delete", canary)
    assert res.exit_code == 0 and f"deleted canary {canary}" in res.stdout


async def test_failing_canary_exits_1_and_pauses_its_schedule(client: Client, cli: Cli, write_plan: WritePlan) -> None:
    plan, wf_id = write_plan()
    canary = name()
    script = Script()
    script.fail["tempest.run"] = errors.CHECK_FAILED
    async with running(client, script) as tq:
        assert (await cli("canary", "create", canary, "--plan", str(plan), "--cron", NEVER, tq=tq)).exit_code == 0
        res = await cli("canary", "trigger", canary, "--wait", tq=tq)
        assert res.exit_code == 1, res.output
        assert f"canary {canary}: failed — keystone: validate: tempest.run: " in res.stdout
        # an images-only rollback keeps the expanded schema: the canary reset restores its snapshot
        assert "rolled-back: " in res.stdout and "reset keystone: done back to registry/keystone-api:old" in res.stdout
        assert script.calls[-6:] == [
            "k8s.undo_images",
            "k8s.scale:down",
            "db.restore",
            "k8s.set_images",
            "k8s.scale:up",
            "k8s.wait_rollout",
        ]

        handle = client.get_schedule_handle(f"canary/{canary}")
        # the schedule learns of the failure asynchronously
        await eventually(lambda: schedule_paused(client, canary), within=10, what="pause_on_failure pausing it")
        row = await until_listed(cli, canary, r" yes ")
        assert "failed (rolled-back)" in row
        res = await cli("canary", "history", canary)
        assert res.exit_code == 0 and ", paused" in res.stdout
        assert re.search(rf"canary/{canary}-\S+\s+│ failed\s+│ rolled-back\s+│ keystone: validate:", res.stdout)

        res = await cli("canary", "unpause", canary, "--note", "tempest fixed")
        assert res.exit_code == 0 and f"unpaused canary {canary}" in res.stdout
        assert not (await handle.describe()).schedule.state.paused
        res = await cli("report", wf_id, "--format", "junit")
        assert res.exit_code == 1 and "<failure" in res.stdout
    assert (await cli("canary", "delete", canary)).exit_code == 0


async def test_pause_unpause_delete_and_refusals(
    client: Client, cli: Cli, write_plan: WritePlan, tmp_path: Path
) -> None:
    plan, _ = write_plan()
    canary = name()
    assert (await cli("canary", "create", canary, "--plan", str(plan), "--cron", "*/30 * * * *")).exit_code == 0
    res = await cli("canary", "create", canary, "--plan", str(plan), "--cron", NEVER)
    assert res.exit_code == 2 and f"canary '{canary}' already exists" in res.stderr

    res = await cli("canary", "pause", canary, "--note", "change freeze")
    assert res.exit_code == 0 and f"paused canary {canary}" in res.stdout
    desc = await client.get_schedule_handle(f"canary/{canary}").describe()
    assert desc.schedule.state.paused and desc.schedule.state.note == "change freeze"
    res = await cli("canary", "pause", canary)
    assert res.exit_code == 2 and "already paused (change freeze)" in res.stderr
    row = await until_listed(cli, canary, r" yes ")
    assert "*/30 * * * *" in row and "change freeze" in row
    assert (await cli("canary", "unpause", canary)).exit_code == 0
    res = await cli("canary", "unpause", canary)
    assert res.exit_code == 2 and "is not paused" in res.stderr
    res = await cli("canary", "history", canary)
    assert res.exit_code == 0 and "no runs yet" in res.stdout

    assert (await cli("canary", "delete", canary)).exit_code == 0
    for cmd in (["pause"], ["unpause"], ["trigger", "--wait"], ["delete"], ["history"]):
        res = await cli("canary", cmd[0], canary, *cmd[1:])
        assert res.exit_code == 2, cmd
        assert f"no canary '{canary}' (schedule canary/{canary})" in res.stderr and "stackhop canary list" in res.stderr

    res = await cli("canary", "create", name(), "--plan", str(plan), "--cron", "61 * * * *")
    assert res.exit_code == 2 and "--cron '61 * * * *'" in res.stderr
    res = await cli("canary", "create", "bad name!", "--plan", str(plan), "--cron", NEVER)
    assert res.exit_code == 2 and "canary name 'bad name!'" in res.stderr


async def test_bad_plan_and_unreachable(offline_cli: Cli, write_plan: WritePlan) -> None:
    plan, _ = write_plan()
    bad = plan.with_name("bad.yaml")
    bad.write_text(plan.read_text().replace("2025.2", "2027.1"))
    res = await offline_cli("canary", "create", name(), "--plan", str(bad), "--cron", NEVER)
    assert (
        res.exit_code == 2 and "invalid plan" in res.stderr and "downgrade" in res.stderr
    )  # checked before connecting
    res = await offline_cli("canary", "create", name(), "--plan", str(plan), "--cron", NEVER)
    assert res.exit_code == 3 and "cannot reach Temporal" in res.stderr
    for cmd in (["list"], ["history", "x"], ["trigger", "x"]):
        assert (await offline_cli("canary", *cmd)).exit_code == 3, cmd


async def test_trigger_while_running_is_refused_and_a_paused_canary_can_still_be_triggered(
    client: Client, cli: Cli, write_plan: WritePlan
) -> None:
    plan, _ = write_plan()
    canary = name()
    script = Script()
    script.block["db.snapshot"] = release = threading.Event()
    async with running(client, script) as tq:
        assert (await cli("canary", "create", canary, "--plan", str(plan), "--cron", NEVER, tq=tq)).exit_code == 0
        res = await cli("canary", "trigger", canary, tq=tq)
        assert res.exit_code == 0 and f"stackhop canary history {canary}" in res.stdout
        assert await asyncio.to_thread(script.key_started("db.snapshot").wait, 15)
        res = await cli("canary", "trigger", canary, "--wait", tq=tq)
        assert res.exit_code == 2 and f"canary {canary} is already running (canary/{canary}-" in res.stderr
        res = await cli("canary", "history", canary)
        assert re.search(rf"canary/{canary}-\S+\s+│ running", res.stdout), res.stdout
        await until_listed(cli, canary, r" running ")
        release.set()

        # a manual trigger runs even while the schedule is paused (scheduled runs stay paused)
        await eventually(lambda: schedule_idle(client, canary), within=10, what="the first run finished")
        assert (await cli("canary", "pause", canary)).exit_code == 0
        res = await cli("canary", "trigger", canary, "--wait", tq=tq)
        assert res.exit_code == 0, res.output
        assert (
            f"canary {canary} is paused; this manual run goes ahead" in res.stdout
            and f"canary {canary}: passed" in res.stdout
        )
        res = await cli("canary", "history", canary)
        assert res.stdout.count("│ passed") == 2 and f"canary {canary}: 2 run(s), paused" in res.stdout
    assert (await cli("canary", "delete", canary)).exit_code == 0
