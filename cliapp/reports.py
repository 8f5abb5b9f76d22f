"""An upgrade's report as a document: Markdown for people, JSON for tools, JUnit XML for CI.

Pure functions of an ``io.UpgradeReport`` (no Temporal, no I/O) so the CLI (`stackhop report`),
the canary commands and the demo render a report the same way, and share one exit-code mapping.
JUnit: each service is a testsuite and each step a testcase, because every CI system already knows
how to show failed/skipped testcases; tempest's failing tests become failed testcases of their own
so the test id a developer must look at is in the CI summary, not buried in a detail string.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime

from model import io

FORMATS = ("md", "json", "junit")
SUCCEEDED, NOT_SUCCEEDED = 0, 1
STATUS_MARK = {
    "done": "✅ done",
    "failed": "❌ failed",
    "skipped": "⏭ skipped",
    "compensated": "↩ compensated",
    "running": "… running",
}
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def exit_code(report: io.UpgradeReport | None) -> int:
    """0 for a succeeded upgrade, 1 for rolled-back / failed / aborted (or no report at all)."""
    return SUCCEEDED if report is not None and report.outcome == "succeeded" else NOT_SUCCEEDED


def render(report: io.UpgradeReport, fmt: str) -> str:
    if fmt == "md":
        return render_markdown(report)
    if fmt == "json":
        return render_json(report)
    if fmt == "junit":
        return render_junit(report)
    raise ValueError(f"unknown report format {fmt!r} (one of {', '.join(FORMATS)})")


def render_json(report: io.UpgradeReport) -> str:
    return report.model_dump_json(indent=2) + "\n"


def duration(report: io.UpgradeReport) -> float | None:
    try:
        return (datetime.fromisoformat(report.ended_at) - datetime.fromisoformat(report.started_at)).total_seconds()
    except ValueError:
        return None


def check_label(c: io.CheckResult) -> str:
    """Checks carry no name; their details say what they were (endpoint type, tempest regex)."""
    if "service_type" in c.details:
        stage = f" ({c.details['stage']})" if c.details.get("stage") else ""
        return f"endpoint {c.details['service_type']}{stage}"
    if "regex" in c.details or "exit_code" in c.details:
        return f"tempest {c.details.get('regex', '')}".strip()
    return "check"


def summary_lines(report: io.UpgradeReport) -> list[str]:
    """A few plain lines: outcome, release, one line per service (for `canary trigger --wait`)."""
    took = duration(report)
    lines = [
        f"{report.outcome}: {report.message}",
        f"plan {report.plan} on {report.cloud}: {report.release_from} → {report.release_to}"
        + (f" in {took:.1f}s" if took is not None else ""),
    ]
    for r in report.preflight:
        if r.status == "failed":
            lines.append(f"pre-flight failed: {r.detail}")
    lines += [f"ledger: {line}" for line in report.ledger if "the cloud wins" in line or line.startswith("recorded")]
    for s in report.services:
        line = f"  {s.service}: {s.outcome}" + (f" ({s.message})" if s.message else "")
        if s.tempest:
            t = s.tempest
            line += f"; tempest {t.status} {t.passed} passed, {t.failed} failed"
            if t.failing_tests:
                line += ": " + ", ".join(t.failing_tests[:5]) + (" …" if len(t.failing_tests) > 5 else "")
        lines.append(line)
        if s.availability:
            lines.append(f"    {availability_line(s.availability)}")
        if s.data_plane:
            up = sum(1 for n in s.data_plane if n.outcome == "upgraded")
            fenced = [n.node for n in s.data_plane if n.fenced]
            lines.append(
                f"    data plane: {up} of {len(s.data_plane)} nodes upgraded"
                + (f"; fenced: {', '.join(fenced)}" if fenced else "")
            )
        if s.rollback and s.rollback.kind != "none":
            lines += [f"    {line}" for line in rollback_lines(s.rollback)]
    return lines


AVAILABILITY_COLUMNS = ("service", "API", "requests", "errors", "longest outage", "outages", "note")


def availability_rows(report: io.UpgradeReport) -> list[tuple[str, ...]]:
    """Per probed service (activities/probe.py): the API, requests, errors, longest outage, outages
    and a note; one row each, in the report's order (the Markdown, the terminal and the demo's table)."""
    rows: list[tuple[str, ...]] = []
    for s in report.services:
        a = s.availability
        if a is None:
            continue
        note = a.note
        if a.attempts > 1:
            note = f"{a.attempts} attempts (counters carried over)" + (f"; {note}" if note else "")
        if a.errors and a.last_error:
            note = (f"{note}; " if note else "") + f"last error: {a.last_error}"
        rows.append(
            (s.service, a.api, str(a.requests), str(a.errors), f"{a.longest_outage_s:.1f}s", str(a.outages), note)
        )
    return rows


DATA_PLANE_COLUMNS = ("node", "batch", "zone", "release", "servers moved", "seconds", "outcome", "message")


def data_plane_rows(s: io.ServiceResult) -> list[tuple[str, ...]]:
    """One row per data plane node of a service (ServiceResult.data_plane), in batch order: where its
    pods ended (before → after), the servers moved off it, how long it took, and how it ended (a
    failed node says it is fenced: its service disabled, left out of the later batches)."""
    rows: list[tuple[str, ...]] = []
    for n in sorted(s.data_plane, key=lambda n: (n.batch, n.node)):
        release = n.release_after if n.release_before == n.release_after else f"{n.release_before} → {n.release_after}"
        outcome = f"{n.outcome}, fenced" if n.fenced else n.outcome
        rows.append(
            (
                n.node,
                str(n.batch) if n.batch else "-",
                n.zone or "-",
                release or "-",
                str(n.servers_moved),
                f"{n.seconds:.1f}",
                outcome,
                n.message,
            )
        )
    return rows


def availability_line(a: io.Availability) -> str:
    """One line: what the users of the API saw."""
    return (
        f"availability: {a.api}: {a.requests} requests, {a.errors} errors, longest outage {a.longest_outage_s:.1f}s"
        + (f" ({a.outages} outages)" if a.outages else "")
        + (f"; {a.note}" if a.note else "")
    )


def rollback_lines(rb: io.RollbackReport) -> list[str]:
    """The rollback in plain lines: its kind and why, the schema it leaves, the data-loss window and
    what was lost, and what the restore undid per table (Markdown, the terminal and JUnit share them)."""
    lines = [f"rollback: {rb.kind}" + (f" ({rb.reason})" if rb.reason else "")]
    if rb.schema_state:
        lines.append(f"schema: {rb.schema_state}")
    if rb.loss_from or rb.loss_to:
        lines.append(f"data-loss window: {rb.loss_from or '?'} → {rb.loss_to or '?'}")
    if rb.lost:
        lines.append(f"lost: {rb.lost}")
    if rb.table_changes:
        by_kind: dict[str, list[str]] = {}
        for c in rb.table_changes:
            by_kind.setdefault(c.change, []).append(c.table)
        lines.append(
            "tables the restore undid: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(by_kind.items()))
        )
    return lines


# --- Markdown --------------------------------------------------------------------------------------
def _cell(text: str) -> str:
    """A table cell: one line, pipes escaped (details can be multi-line log tails)."""
    return " ".join(text.split()).replace("|", "\\|") or " "


def _steps_table(records: list[io.StepRecord]) -> list[str]:
    lines = ["| # | step | status | duration | detail |", "|---|---|---|---:|---|"]
    for i, r in enumerate(records, 1):
        lines.append(
            f"| {i} | {_cell(r.step)} | {STATUS_MARK.get(r.status, r.status)} | {r.seconds:.1f}s | {_cell(r.detail)} |"
        )
    return lines


def render_markdown(report: io.UpgradeReport) -> str:
    took = duration(report)
    icon = "✅" if report.outcome == "succeeded" else "❌"
    md = [
        f"# Upgrade report: {report.plan} on {report.cloud}",
        "",
        f"- **Outcome:** {icon} {report.outcome}" + (f" — {_cell(report.message)}" if report.message else ""),
        f"- **Release:** {report.release_from} → {report.release_to}",
        f"- **Started:** {report.started_at or '-'}",
        f"- **Ended:** {report.ended_at or '-'}" + (f" ({took:.1f}s)" if took is not None else ""),
        "- **Services:** " + (", ".join(f"{s.service} ({s.outcome})" for s in report.services) or "none ran"),
    ]
    if report.preflight:
        md += ["", "## Pre-flight", "", *_steps_table(report.preflight)]
    if rows := availability_rows(report):
        md += [
            "",
            "## API availability during the upgrade",
            "",
            "Each service's API called every second from its first changing step to its end (rollback included).",
            "",
            "| " + " | ".join(AVAILABILITY_COLUMNS) + " |",
            "|---|---|---:|---:|---:|---:|---|",
            *("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows),
        ]
    if report.ledger:  # what the ledger and the cloud said (the cloud wins), and what was recorded
        md += ["", "## Ledger", "", *(f"- {_cell(line)}" for line in report.ledger)]
    for s in report.services:
        md += ["", f"## {s.service}: {s.outcome}", ""]
        if s.message:
            md += [_cell(s.message), ""]
        md += ["### Steps", "", *_steps_table(s.steps)] if s.steps else ["No steps ran."]
        if rows := data_plane_rows(s):
            md += [
                "",
                "### Data plane",
                "",
                "| " + " | ".join(DATA_PLANE_COLUMNS) + " |",
                "|---|---:|---|---|---:|---:|---|---|",
                *("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows),
            ]
        if s.snapshot:
            snap = s.snapshot
            md += [
                "",
                "### Database snapshot",
                "",
                f"- database `{snap.database}` at `{snap.location}`",
                f"- sha256 `{snap.sha256}`, {snap.size_bytes} bytes"
                + (f", taken {snap.created_at}" if snap.created_at else ""),
            ]
        if s.rollback:
            md += ["", "### Rollback", "", *(f"- {_cell(line)}" for line in rollback_lines(s.rollback))]
            if s.rollback.table_changes:
                md += ["", "| table | changed by |", "|---|---|"]
                md += [f"| `{c.table}` | {c.change} |" for c in s.rollback.table_changes]
        if s.tempest:
            t = s.tempest
            md += [
                "",
                "### Tempest",
                "",
                f"- status **{t.status}**: {t.passed} passed, {t.failed} failed, {t.skipped} skipped"
                + (f" ({t.seconds:.1f}s)" if t.seconds else ""),
            ]
            if t.message:
                md.append(f"- {_cell(t.message)}")
            if t.failing_tests:
                md += ["- failing tests:", *(f"  - `{name}`" for name in t.failing_tests)]
        if s.checks:
            md += ["", "### Checks", "", "| check | status | duration | message |", "|---|---|---:|---|"]
            for c in s.checks:
                md.append(f"| {_cell(check_label(c))} | {c.status} | {c.seconds:.1f}s | {_cell(c.message)} |")
        if s.previous_images:
            md += ["", "### Previous images", ""]
            md += [
                f"- {w.kind}/{w.name} (container {w.container}): `{w.image or 'not found'}`" for w in s.previous_images
            ]
    return "\n".join(md) + "\n"


# --- JUnit XML -------------------------------------------------------------------------------------
def _x(text: str) -> str:
    """Characters XML 1.0 cannot carry (terminal escapes in log tails) are dropped."""
    return _XML_BAD.sub("", text)


def _testcase(suite: ET.Element, classname: str, r: io.StepRecord, counts: dict[str, int]) -> None:
    # A step can repeat (one validate per check, a retried step): CI tools merge equal names.
    seen = counts.setdefault(f"step:{r.step}", 0) + 1
    counts[f"step:{r.step}"] = seen
    name = r.step if seen == 1 else f"{r.step} #{seen}"
    case = ET.SubElement(suite, "testcase", classname=_x(classname), name=_x(name), time=f"{r.seconds:.3f}")
    counts["tests"] += 1
    if r.status == "failed":
        counts["failures"] += 1
        ET.SubElement(case, "failure", message=_x(r.detail or "failed"), type="failed").text = _x(r.detail)
    elif r.status == "running":
        counts["errors"] += 1
        ET.SubElement(case, "error", message="the step did not finish", type="running")
    elif r.status == "skipped":
        counts["skipped"] += 1
        ET.SubElement(case, "skipped", message=_x(r.detail or "skipped"))
    elif r.status == "compensated":
        ET.SubElement(case, "system-out").text = _x(f"compensated (rolled back): {r.detail}".strip())
    elif r.detail:
        ET.SubElement(case, "system-out").text = _x(r.detail)


def _suite(root: ET.Element, name: str, timestamp: str) -> tuple[ET.Element, dict[str, int]]:
    suite = ET.SubElement(root, "testsuite", name=_x(name))
    if timestamp:
        suite.set("timestamp", timestamp)
    return suite, {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}


def _close(suite: ET.Element, counts: dict[str, int], seconds: float, totals: dict[str, float]) -> None:
    for k, v in counts.items():
        if k.startswith("step:"):
            continue
        suite.set(k, str(v))
        totals[k] = totals.get(k, 0) + v
    suite.set("time", f"{seconds:.3f}")


def render_junit(report: io.UpgradeReport) -> str:
    root = ET.Element(
        "testsuites", name=_x(f"stackhop {report.plan} on {report.cloud}: {report.release_from} -> {report.release_to}")
    )
    totals: dict[str, float] = {}
    if report.preflight:
        suite, counts = _suite(root, "preflight", report.started_at)
        for r in report.preflight:
            _testcase(suite, "preflight", r, counts)
        _close(suite, counts, sum(r.seconds for r in report.preflight), totals)
    for s in report.services:
        suite, counts = _suite(root, s.service, s.steps[0].started_at if s.steps else "")
        props = ET.SubElement(suite, "properties")
        for key, value in [("outcome", s.outcome), ("message", s.message), *_properties(s)]:
            ET.SubElement(props, "property", name=key, value=_x(value))
        for r in s.steps:
            _testcase(suite, s.service, r, counts)
        for test_id in s.tempest.failing_tests if s.tempest else []:
            case = ET.SubElement(suite, "testcase", classname=_x(f"{s.service}.tempest"), name=_x(test_id), time="0")
            ET.SubElement(case, "failure", message="tempest test failed", type="tempest").text = _x(test_id)
            counts["tests"] += 1
            counts["failures"] += 1
        if s.outcome != "succeeded" and not any(r.status == "failed" for r in s.steps):
            # e.g. an aborted service or a service workflow that failed before recording a step
            case = ET.SubElement(suite, "testcase", classname=_x(s.service), name="outcome", time="0")
            ET.SubElement(case, "failure", message=_x(f"{s.outcome}: {s.message}"), type=s.outcome)
            counts["tests"] += 1
            counts["failures"] += 1
        _close(suite, counts, sum(r.seconds for r in s.steps), totals)
    for k, v in totals.items():
        root.set(k, str(int(v)))
    took = duration(report)
    root.set("time", f"{took if took is not None else 0:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _properties(s: io.ServiceResult) -> list[tuple[str, str]]:
    props: list[tuple[str, str]] = []
    if s.snapshot:
        props += [
            ("snapshot.location", s.snapshot.location),
            ("snapshot.sha256", s.snapshot.sha256),
            ("snapshot.size_bytes", str(s.snapshot.size_bytes)),
        ]
    if s.rollback:
        rb = s.rollback
        props += [("rollback.kind", rb.kind), ("rollback.schema", rb.schema_state), ("rollback.lost", rb.lost)]
        if rb.loss_from or rb.loss_to:
            props.append(("rollback.data_loss_window", f"{rb.loss_from} → {rb.loss_to}"))
        props += [(f"rollback.table.{c.table}", c.change) for c in rb.table_changes]
    if s.availability:
        a = s.availability
        props += [
            ("availability.api", a.api),
            ("availability.requests", str(a.requests)),
            ("availability.errors", str(a.errors)),
            ("availability.longest_outage_s", f"{a.longest_outage_s:.1f}"),
            ("availability.outages", str(a.outages)),
        ]
    if s.tempest:
        t = s.tempest
        props.append(("tempest", f"{t.status}: {t.passed} passed, {t.failed} failed, {t.skipped} skipped"))
    for w in s.previous_images:
        props.append((f"previous_image.{w.kind}/{w.name}/{w.container}", w.image or ""))
    return props
