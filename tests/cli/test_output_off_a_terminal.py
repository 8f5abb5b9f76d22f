"""Output read by scripts: off a terminal tables are as wide as their content (no cell folds across
lines, whatever COLUMNS says), and `list --json` is a JSON list.

The CLI tests run the commands with a non-terminal stdout (click's CliRunner); here COLUMNS is
unset, so rich would otherwise lay tables out for 80 columns.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from temporalio.client import Client

from tests.cli.conftest import Cli, plan_doc
from tests.standins import Script
from tests.waiting import eventually
from tests.workflows.helpers import running

ROOT = Path(__file__).resolve().parents[2]
LONG = "region-two-with-a-rather-long-cloud-name-for-scripts"  # 52 characters: NAME_RE allows 63


def lines_with(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


def test_plan_show_keeps_every_image_on_one_line(offline_cli: Cli) -> None:
    plan = ROOT / "examples" / "multi-service.yaml"
    res = offline_cli.run("plan", "show", str(plan), COLUMNS=None)
    assert res.exit_code == 0, res.stderr
    images = {w["image"] for s in yaml.safe_load(plan.read_text())["services"] for w in s["workloads"]}
    for image in images:
        assert lines_with(res.stdout, image), f"{image} is broken across lines:\n{res.stdout}"
    assert res.stdout.splitlines()[0].startswith("prod-2026.1: cloud prod-east")


async def test_list_keeps_a_long_workflow_id_on_one_line_and_json_parses(
    client: Client, cli: Cli, tmp_path: Path
) -> None:
    doc: dict[str, Any] = plan_doc()
    doc["cloud"]["name"] = cloud = f"{LONG}-{doc['cloud']['name'][:8]}"
    plan = tmp_path / "long.yaml"
    plan.write_text(yaml.safe_dump(doc, sort_keys=False))
    wf_id = f"upgrade/{cloud}"
    async with running(client, Script()) as tq:
        res = await cli("start", str(plan), "--wait", tq=tq)
        assert res.exit_code == 0, res.output

    async def listed() -> list[dict[str, Any]]:
        res = await cli("list", "--all", "--cloud", cloud, "--json", COLUMNS=None)
        assert res.exit_code == 0, res.stderr
        rows: list[dict[str, Any]] = json.loads(res.stdout)
        return rows if rows and rows[0]["status"] == "completed" else []

    (row,) = await eventually(listed, within=30, what=f"{wf_id} listed as completed")  # visibility lags
    assert row["workflow_id"] == wf_id and row["cloud"] == cloud and row["release"] == "2025.2->2026.1"
    assert datetime.fromisoformat(row["started"]) <= datetime.fromisoformat(row["closed"])

    res = await cli("list", "--all", "--cloud", cloud, COLUMNS=None)
    assert res.exit_code == 0, res.stderr
    (line,) = lines_with(res.stdout, wf_id)
    assert re.search(rf"│ {re.escape(wf_id)} +│ completed +│ {re.escape(cloud)} +│ 2025\.2->2026\.1 ", line), line

    res = await cli("list", "--cloud", cloud, "--json")  # nothing running: an empty list, no prose
    assert res.exit_code == 0 and json.loads(res.stdout) == []
