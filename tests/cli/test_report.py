"""`stackhop report`: Markdown, JSON and JUnit reports of ended upgrades, from Temporal alone."""

from __future__ import annotations

import json
import re
import threading
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

from temporalio.client import Client

from cliapp import reports
from model import io
from tests.cli.conftest import Cli, WritePlan
from tests.standins import Script
from tests.workflows.helpers import running

SHA = "ab" * 32


async def test_reports_of_a_succeeded_upgrade(client: Client, cli: Cli, write_plan: WritePlan, tmp_path: Path) -> None:
    plan, wf_id = write_plan()
    async with running(client, Script()) as tq:
        started = await cli("start", str(plan), "--wait", tq=tq)
    assert started.exit_code == 0
    # `start --wait` (and the demo, which watches the same way) prints the availability table
    assert "API availability during the upgrade" in started.stdout and "token issue" in started.stdout
    cloud = wf_id.split("/")[1]

    res = await cli("report", cloud)  # md by default, the cloud name alone is enough
    assert res.exit_code == 0, res.output
    md = res.stdout
    assert md.startswith(f"# Upgrade report: cli-test on {cloud}\n")
    assert "- **Outcome:** ✅ succeeded" in md and "- **Release:** 2025.2 → 2026.1" in md
    assert "## keystone: succeeded" in md
    for step in ("status", "snapshot", "verify", "expand", "roll", "rollout", "validate", "contract", "postcheck"):
        assert f"| {step} | ✅ done | " in md, step
    assert f"sha256 `{SHA}`, 1234 bytes" in md
    assert "status **pass**: 14 passed, 0 failed, 0 skipped" in md
    assert "| check | pass |" in md  # the stand-in checks carry no details
    assert "- Deployment/keystone-api (container keystone-api): `registry/keystone-api:old`" in md
    assert "## API availability during the upgrade" in md
    assert re.search(r"\| keystone \| token issue \| [1-9]\d* \| 0 \| 0\.0s \| 0 \|", md), md

    res = await cli("report", wf_id, "--format", "json")
    assert res.exit_code == 0
    report = io.UpgradeReport.model_validate_json(res.stdout)
    snapshot = report.services[0].snapshot
    assert report.outcome == "succeeded" and snapshot is not None and snapshot.sha256 == SHA
    assert reports.render_markdown(report) == md  # the demo renders the same document

    out = tmp_path / "junit.xml"
    res = await cli("report", wf_id, "-f", "junit", "--output", str(out))
    assert res.exit_code == 0 and f"junit report written to {out}" in res.stdout
    root = ET.parse(out).getroot()
    assert root.tag == "testsuites" and root.get("failures") == "0"
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {"preflight", "keystone"}
    ks = suites["keystone"]
    cases = [c.get("name") for c in ks.iter("testcase")]
    assert cases[:3] == ["status", "snapshot", "verify"] and {"expand", "contract", "postcheck"} <= set(cases)
    assert ks.get("tests") == str(len(cases)) and ks.get("failures") == "0"
    props = {p.get("name"): p.get("value") for p in ks.iter("property")}
    assert props["outcome"] == "succeeded" and props["snapshot.sha256"] == SHA
    assert not list(root.iter("failure"))


async def test_reports_of_a_rolled_back_upgrade(client: Client, cli: Cli, write_plan: WritePlan) -> None:
    plan, wf_id = write_plan()
    script = Script()
    script.answers["tempest.run"] = io.TempestResult(
        status="fail",
        message="2 tests failed",
        passed=12,
        failed=2,
        failing_tests=[
            "tempest.api.identity.v3.test_users.UsersV3Test.test_update_user",
            "tempest.api.identity.v3.test_tokens.TokensV3Test.test_rescope",
        ],
    )
    async with running(client, script) as tq:
        assert (await cli("start", str(plan), "--wait", tq=tq)).exit_code == 1

    res = await cli("report", wf_id)
    assert res.exit_code == 1, res.output  # the report is there; the upgrade did not succeed
    md = res.stdout
    assert "- **Outcome:** ❌ rolled-back — keystone: " in md and "## keystone: rolled-back" in md
    assert "| validate | ❌ failed | " in md and "| undo-roll | ✅ done | " in md
    assert "status **fail**: 12 passed, 2 failed" in md
    assert "  - `tempest.api.identity.v3.test_tokens.TokensV3Test.test_rescope`" in md

    res = await cli("report", wf_id, "--format", "json")
    assert res.exit_code == 1
    doc = json.loads(res.stdout)
    assert doc["outcome"] == "rolled-back" and doc["services"][0]["tempest"]["failed"] == 2

    res = await cli("report", wf_id, "--format", "junit")
    assert res.exit_code == 1
    root = ET.fromstring(res.stdout)
    ks = next(s for s in root.iter("testsuite") if s.get("name") == "keystone")
    failed = {c.get("name"): c for c in ks.iter("testcase") if c.find("failure") is not None}
    assert set(failed) == {
        "validate #2",
        "tempest.api.identity.v3.test_users.UsersV3Test.test_update_user",
        "tempest.api.identity.v3.test_tokens.TokensV3Test.test_rescope",
    }
    assert (
        failed["test_rescope" and "tempest.api.identity.v3.test_tokens.TokensV3Test.test_rescope"].get("classname")
        == "keystone.tempest"
    )
    assert ks.get("failures") == "3" and root.get("failures") == "3"
    undo = next(c for c in ks.iter("testcase") if c.get("name") == "undo-roll")
    assert undo.find("failure") is None and undo.find("skipped") is None
    assert {p.get("name"): p.get("value") for p in ks.iter("property")}["outcome"] == "rolled-back"


async def test_report_of_a_running_upgrade_and_bad_ids(client: Client, cli: Cli, write_plan: WritePlan) -> None:
    plan, wf_id = write_plan()
    script = Script()
    script.block["db.snapshot"] = release = threading.Event()
    async with running(client, script) as tq:
        assert (await cli("start", str(plan), tq=tq)).exit_code == 0
        res = await cli("report", wf_id)
        assert res.exit_code == 2 and "still running: it has no report yet" in res.stderr
        assert f"stackhop watch {wf_id}" in res.stderr and res.stdout == ""
        release.set()
        assert (await cli("watch", wf_id)).exit_code == 0
    run_id = (await client.get_workflow_handle(wf_id).describe()).run_id
    res = await cli("report", wf_id, "--run-id", run_id, "-f", "json")
    assert res.exit_code == 0 and json.loads(res.stdout)["outcome"] == "succeeded"
    res = await cli("report", wf_id, "--run-id", str(uuid.uuid4()))
    assert res.exit_code == 2 and f"no upgrade '{wf_id}' run " in res.stderr
    res = await cli("report", "upgrade/nowhere")
    assert res.exit_code == 2 and "no upgrade 'upgrade/nowhere'" in res.stderr
    res = await cli("report", f"{wf_id}/keystone")
    assert res.exit_code == 2 and "is a ServiceUpgrade workflow, not an upgrade" in res.stderr
    res = await cli("report", wf_id, "--format", "pdf")
    assert res.exit_code == 2


async def test_report_of_an_upgrade_without_report_and_unreachable(
    client: Client, cli: Cli, offline_cli: Cli, write_plan: WritePlan
) -> None:
    plan, wf_id = write_plan()
    tq = f"nobody-{uuid.uuid4().hex[:6]}"
    assert (await cli("start", str(plan), tq=tq)).exit_code == 0
    await client.get_workflow_handle(wf_id).terminate("test")
    res = await cli("report", wf_id)
    assert res.exit_code == 1 and "ended without a report" in res.stderr
    res = await offline_cli("report", wf_id)
    assert res.exit_code == 3 and "cannot reach Temporal" in res.stderr


def test_junit_step_statuses_and_control_characters() -> None:
    """Log tails carry terminal escapes; XML 1.0 cannot: they are dropped, the rest escaped."""
    step = io.StepRecord(
        service="nova", step="migrate", status="failed", seconds=1.5, detail="boom \x1b[31m<&>\x00 | x\ny"
    )
    roll = io.StepRecord(service="nova", step="roll", status="compensated", detail="undone")
    skip = io.StepRecord(service="nova", step="contract", status="skipped", detail="nothing to contract")
    svc = io.ServiceResult(service="nova", outcome="failed", message="m", steps=[roll, step, skip])
    rep = io.UpgradeReport(plan="p", cloud="c", release_from="a", release_to="b", outcome="failed", services=[svc])
    root = ET.fromstring(reports.render_junit(rep))
    failure = root.find("testsuite/testcase/failure")
    assert failure is not None and failure.get("message") == "boom [31m<&> | x\ny"
    cases = root.findall("testsuite/testcase")
    assert cases[0].findtext("system-out") == "compensated (rolled back): undone"
    skipped, suite = cases[2].find("skipped"), root.find("testsuite")
    assert skipped is not None and skipped.get("message") == "nothing to contract"
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    md = reports.render_markdown(rep)
    assert "| 1 | roll | ↩ compensated | 0.0s | undone |" in md and "| 3 | contract | ⏭ skipped |" in md
    assert "| 2 | migrate | ❌ failed | 1.5s | boom \x1b[31m<&>\x00 \\| x y |" in md
    assert reports.exit_code(rep) == 1 and reports.exit_code(None) == 1


def test_availability_table_of_each_probed_service() -> None:
    """Requests, errors and the longest outage per service; a service without a probe has no row."""
    report = io.UpgradeReport(
        plan="p",
        cloud="c",
        release_from="2025.2",
        release_to="2026.1",
        outcome="succeeded",
        services=[
            io.ServiceResult(
                service="keystone",
                outcome="succeeded",
                availability=io.Availability(
                    service="keystone",
                    api="token issue",
                    requests=93,
                    errors=4,
                    longest_outage_s=3.04,
                    outages=2,
                    last_error="ConnectFailure: refused",
                    attempts=2,
                ),
            ),
            io.ServiceResult(service="glance", outcome="succeeded"),
        ],
    )
    assert reports.availability_rows(report) == [
        (
            "keystone",
            "token issue",
            "93",
            "4",
            "3.0s",
            "2",
            "2 attempts (counters carried over); last error: ConnectFailure: refused",
        )
    ]
    md = reports.render_markdown(report)
    assert "| keystone | token issue | 93 | 4 | 3.0s | 2 | 2 attempts (counters carried over); last error:" in md
    assert "| glance |" not in md
    lines = reports.summary_lines(report)
    assert "    availability: token issue: 93 requests, 4 errors, longest outage 3.0s (2 outages)" in lines
    props = {p.get("name"): p.get("value") for p in ET.fromstring(reports.render_junit(report)).iter("property")}
    assert props["availability.requests"] == "93" and props["availability.longest_outage_s"] == "3.0"
