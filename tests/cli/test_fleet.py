"""`stackhop fleet ...` and `stackhop canary create` of a fleet plan, against the Fleet workflow with
stand-in Upgrade children (tests/fleet_standins.py)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml
from temporalio.client import Client

from tests.cli.conftest import Cli
from tests.fleet_standins import fleet_worker
from tests.standins import Script
from tests.waiting import eventually
from tests.workflows.helpers import blocked, running


def write_fleet(tmp_path: Path, hold: str = "", approval: bool = False, bad_image: bool = False) -> tuple[Path, str]:
    """A fleet of three clouds (canary a, then b, then c) in ``tmp_path``; (file, fleet name)."""
    name = f"f{uuid.uuid4().hex[:8]}"
    clouds = []
    for c in ("a", "b", "c"):
        image = "registry/keystone:29.1.1" if bad_image and c == "c" else "registry/keystone:29.1.0"
        plan = {
            "apiVersion": "stackhop/v1alpha1",
            "kind": "UpgradePlan",
            "metadata": {"name": c, "labels": {"hold": "yes"} if hold == c else {}},
            "cloud": {"name": f"{c}-{name}", "kubernetes": {"context": "lab"}, "openstack": {"cloud": "lab"}},
            "release": {"from": "2025.2", "to": "2026.1"},
            "services": [
                {
                    "name": "keystone",
                    "database": {"name": "keystone"},
                    "migration": {"mode": "expand-contract"},
                    "workloads": [
                        {"kind": "Deployment", "name": "keystone-api", "container": "keystone-api", "image": image}
                    ],
                }
            ],
        }
        (tmp_path / f"{c}-{name}.yaml").write_text(yaml.safe_dump(plan))
        clouds.append({"name": c, "plan": f"{c}-{name}.yaml"})
    fleet: dict[str, Any] = {
        "apiVersion": "stackhop/v1alpha1",
        "kind": "FleetPlan",
        "metadata": {"name": name},
        "clouds": clouds,
        "canary": ["a"],
        "waves": [{"name": "one", "clouds": ["b"]}, {"name": "two", "clouds": ["c"], "approval": approval}],
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(fleet, sort_keys=False))
    return path, name


async def test_start_status_approve_watch_report(client: Client, cli: Cli, tmp_path: Path) -> None:
    path, name = write_fleet(tmp_path, approval=True, bad_image=True)
    async with fleet_worker(client) as tq:
        res = await cli("fleet", "start", str(path), tq=tq)
        assert res.exit_code == 0 and f"started fleet {name}: 3 clouds, 2025.2 → 2026.1" in res.stdout, res.output
        res = await cli("fleet", "start", str(path), tq=tq)
        assert res.exit_code == 2 and f"fleet {name} is already running" in res.stderr

        async def waiting() -> dict[str, Any] | None:
            r = await cli("fleet", "status", name, "--json")
            doc: dict[str, Any] = json.loads(r.stdout)
            return doc if doc["status"] and doc["status"]["decision"] == "fleet/wave#2" else None

        doc = await eventually(waiting, within=20, what="the fleet waiting for fleet/wave#2")
        assert [c["state"] for c in doc["status"]["clouds"]] == ["succeeded", "succeeded", "pending"]
        res = await cli("fleet", "status", name)
        assert res.exit_code == 0 and f"stackhop fleet approve {name} fleet/wave#2" in res.stdout
        res = await cli("fleet", "approve", name, "fleet/wave#3")
        assert res.exit_code == 2 and "approve refused: 'fleet/wave#3' is not the decision waiting" in res.stderr
        res = await cli("fleet", "resume", name)
        assert res.exit_code == 2 and "nothing to resume: the fleet is not paused" in res.stderr
        res = await cli("fleet", "approve", name, "fleet/wave#2")
        assert res.exit_code == 0 and "fleet/wave#2 approved: wave two starts" in res.stdout
        res = await cli("fleet", "watch", name)
        assert res.exit_code == 1, res.output  # c's images are not the canary's: refused, a failure
        assert "refused" in res.stdout and "registry/keystone:29.1.1" in res.stdout
    res = await cli("fleet", "report", name)
    assert res.exit_code == 1 and "failed — wave two stopped: 1 of its clouds failed, 0 may" in res.stdout
    res = await cli("fleet", "abort", name, "--reason", "late")
    assert res.exit_code == 2 and "has ended" in res.stderr


async def test_pause_and_abort(client: Client, cli: Cli, tmp_path: Path) -> None:
    path, name = write_fleet(tmp_path, hold="a")
    async with fleet_worker(client) as tq:
        assert (await cli("fleet", "start", str(path), tq=tq)).exit_code == 0

        async def listed() -> bool:  # visibility lags the start a little
            fleets = json.loads((await cli("fleet", "list", "--json")).stdout)
            ups = json.loads((await cli("list", "--fleet", name, "--json")).stdout)
            mine = [f for f in fleets if f["workflow_id"] == f"fleet/{name}"]
            return [(f["fleet"], f["status"]) for f in mine] == [(name, "running")] and [
                (u["workflow_id"], u["fleet"]) for u in ups
            ] == [(f"upgrade/a-{name}", name)]

        await eventually(listed, within=20, what="the fleet in `fleet list`, its held canary in `list --fleet`")
        res = await cli("list", "--fleet", f"other-{name}")
        assert res.exit_code == 0 and f"no running upgrades of fleet other-{name}" in res.stdout
        res = await cli("fleet", "pause", name, "--reason", "freeze")
        assert res.exit_code == 0 and "paused" in res.stdout
        res = await cli("fleet", "abort", name, "--reason", "wrong release")
        assert res.exit_code == 0 and "aborting" in res.stdout
        res = await cli("fleet", "watch", name)
        assert res.exit_code == 1 and "aborted" in res.stdout and "wrong release" in res.stdout


async def test_an_invalid_fleet_is_refused_before_anything_starts(offline_cli: Cli) -> None:
    bad = Path(__file__).parent.parent / "plans" / "fleet" / "bad-two-waves.yaml"
    res = await offline_cli("fleet", "start", str(bad))
    assert res.exit_code == 2
    assert "bad-two-waves.yaml:13: waves[1].clouds[0]: b is already upgraded in wave first" in res.stderr


async def test_canary_schedules_a_fleet_plan(client: Client, cli: Cli, tmp_path: Path) -> None:
    path, name = write_fleet(tmp_path)
    canary = f"cn-{uuid.uuid4().hex[:8]}"
    async with fleet_worker(client) as tq:
        res = await cli("canary", "create", canary, "--plan", str(path), "--cron", "0 3 1 1 *", tq=tq)
        assert res.exit_code == 0 and f"runs start workflow Fleet as fleet/{name}-<time>" in res.stdout, res.output
        res = await cli("canary", "trigger", canary, "--wait", tq=tq)
        assert res.exit_code == 0 and "passed" in res.stdout and "fleet succeeded" in res.stdout, res.output
        assert (await cli("canary", "delete", canary)).exit_code == 0


async def test_plan_validate_reads_fleet_files(offline_cli: Cli) -> None:
    here = Path(__file__).parent.parent / "plans" / "fleet"
    res = await offline_cli("plan", "validate", str(here / "good.yaml"), str(here / "bad-invalid-plan.yaml"))
    assert res.exit_code == 2
    assert "good.yaml: fleet fleet-test: 4 clouds, 2025.2 → 2026.1, canary a → eu (b) → us (c, d)" in res.stdout
    assert "bad-missing-field.yaml:7: cloud.kubernetes.context: Field required" in res.stderr
    assert "bad-invalid-plan.yaml:7: clouds[1].plan: the plan " in res.stderr


async def test_status_and_watch_show_a_running_clouds_own_progress(client: Client, cli: Cli, tmp_path: Path) -> None:
    """The real Upgrade under the fleet (stand-in activities): status and watch ask the cloud's own
    workflow. The watch runs as the operator runs it, a process whose lines are read as they come."""
    path, name = write_fleet(tmp_path)
    script = Script()
    release = blocked(script, "k8s.wait_rollout")
    async with running(client, script) as tq:
        assert (await cli("fleet", "start", str(path), tq=tq)).exit_code == 0

        async def rolling() -> str:
            res = await cli("fleet", "status", name)
            return res.stdout if "upgrading: keystone running" in res.stdout else ""

        await eventually(rolling, within=30, what="the canary's progress in fleet status")
        env = {k: v for k, v in {**os.environ, **cli.env(tq)}.items() if v is not None}
        watch = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "stackhop"), "fleet", "watch", name,
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        stdout = watch.stdout
        assert stdout is not None
        lines: list[str] = []

        async def line_with(text: str) -> None:
            while text not in (lines or [""])[-1]:
                line = (await stdout.readline()).decode()
                assert line, f"the watch ended before printing {text!r}: {lines}"
                lines.append(line)

        try:
            await asyncio.wait_for(line_with("  a: upgrading: keystone running"), timeout=30)
            release.set()  # the rollouts end: the canary's keystone succeeds, then b's and c's
            rest = await asyncio.wait_for(watch.communicate(), timeout=60)
        finally:
            if watch.returncode is None:
                watch.kill()
                await watch.wait()
    output = "".join(lines) + rest[0].decode()
    assert watch.returncode == 0, output
    assert output.count("succeeded") >= 3
