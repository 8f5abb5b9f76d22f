"""Validation activity `tempest.run`: run a tempest selection and judge it from the subunit stream.

The verdict comes from the subunit v2 stream (`stestr last --subunit`), not from tempest's console
text or exit code: counts and failing test ids are read per test, and exported as JUnit XML for CI
and humans.  pass: something ran and nothing failed; fail: at least one test (or a class fixture)
failed; inconclusive: nothing ran (the regex matched no test, or tempest died before running any) —
the workflow then pauses instead of guessing.
"""

from __future__ import annotations

import fcntl
import io as _io
import os
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from temporalio import activity
from temporalio.exceptions import CancelledError

from activities import dbtools
from activities.dbtools import q
from model import errors, redact
from model.io import TEMPEST_RUN, CheckInput, TempestResult
from model.plan import TempestCheck

if TYPE_CHECKING:
    from testtools.testresult.real import TestDict

log = structlog.get_logger(__name__)

PASSED = {"success", "xfail"}
FAILED = {"fail", "uxsuccess"}
SKIPPED = {"skip"}


@dataclass
class TestCase:
    id: str
    status: str
    seconds: float = 0.0
    message: str = ""


@dataclass
class Summary:
    tests: list[TestCase] = field(default_factory=list)

    def ids(self, statuses: set[str]) -> list[str]:
        return [t.id for t in self.tests if t.status in statuses]

    @property
    def passed(self) -> int:
        return len(self.ids(PASSED))

    @property
    def failed(self) -> int:
        return len(self.ids(FAILED))

    @property
    def skipped(self) -> int:
        return len(self.ids(SKIPPED))


def parse_subunit(stream: bytes) -> Summary:
    """Per-test results of a subunit v2 stream (python-subunit + testtools' StreamToDict)."""
    import subunit
    import testtools

    summary = Summary()

    def on_test(test: TestDict) -> None:
        if test["status"] in ("exists", "inprogress", None):
            return
        start, stop = [*(test.get("timestamps") or []), None, None][:2]
        seconds = (stop - start).total_seconds() if start and stop else 0.0
        message = ""
        for name, content in (test.get("details") or {}).items():
            if name in ("traceback", "reason"):
                message = b"".join(bytes(part) for part in content.iter_bytes()).decode(errors="replace")[-4000:]
        summary.tests.append(TestCase(test["id"], test["status"], seconds, message))

    result = testtools.StreamToDict(on_test)
    result.startTestRun()
    try:
        subunit.ByteStreamToStreamResult(_io.BytesIO(stream), non_subunit_name="stdout").run(result)
    finally:
        result.stopTestRun()
    return summary


def junit_xml(summary: Summary, suite: str = "tempest") -> bytes:
    """JUnit XML (the schema Jenkins/GitLab read) for the parsed results."""
    root = ET.Element(
        "testsuite",
        name=suite,
        tests=str(len(summary.tests)),
        failures=str(summary.failed),
        skipped=str(summary.skipped),
        errors="0",
        time=f"{sum(t.seconds for t in summary.tests):.3f}",
    )
    for test in summary.tests:
        fixture = re.fullmatch(r"(\w+) \((.+)\)", test.id)  # "setUpClass (tempest...TestJSON)"
        if fixture:
            name, classname = fixture.groups()
        else:
            base = re.sub(r"\[.*\]$", "", test.id)
            classname, _, name = base.rpartition(".")
        case = ET.SubElement(root, "testcase", classname=classname, name=name or test.id, time=f"{test.seconds:.3f}")
        case.set("id", test.id)
        if test.status in FAILED:
            ET.SubElement(case, "failure", message=test.status).text = test.message
        elif test.status in SKIPPED:
            ET.SubElement(case, "skipped", message=test.message[:500])
    xml: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return xml


def verdict(summary: Summary) -> tuple[str, str]:
    """(status, message) from the counts. Pure."""
    counts = f"{summary.passed} passed, {summary.failed} failed, {summary.skipped} skipped"
    if summary.failed:
        return "fail", f"{counts}; failing: {', '.join(summary.ids(FAILED)[:5])}"
    if summary.passed == 0:
        return "inconclusive", f"no test passed ({counts}): the selection ran nothing"
    return "pass", counts


def _workspace() -> Path:
    """The worker's tempest workspace (STACKHOP_TEMPEST_WORKSPACE, with etc/tempest.conf)."""
    path = os.environ.get("STACKHOP_TEMPEST_WORKSPACE")
    if not path or not (Path(path) / "etc" / "tempest.conf").is_file():
        raise errors.permanent(
            errors.PLAN_INVALID,
            f"no tempest workspace with etc/tempest.conf at {path!r} (set STACKHOP_TEMPEST_WORKSPACE on the worker)",
        )
    redact.register_option_file(str(Path(path) / "etc" / "tempest.conf"))  # admin_password and friends
    return Path(path)


def _tempest() -> list[str]:
    """The worker's tempest command: STACKHOP_TEMPEST_COMMAND, else `tempest` on PATH."""
    env = os.environ.get("STACKHOP_TEMPEST_COMMAND")
    if env:
        return env.split()
    found = shutil.which("tempest")
    if not found:
        raise errors.permanent(errors.PLAN_INVALID, "tempest not found (set STACKHOP_TEMPEST_COMMAND on the worker)")
    return [found]


def _stestr(tempest: list[str]) -> str:
    """stestr from the same venv as tempest (it reads the workspace's .stestr repository)."""
    sibling = Path(tempest[0]).parent / "stestr"
    return str(sibling) if sibling.exists() else (shutil.which("stestr") or "stestr")


@contextmanager
def _workspace_lock(ws: Path) -> Iterator[None]:
    """One tempest run per workspace at a time (services of one wave validate in parallel, and
    stestr's repository is not safe for concurrent runs); heartbeats while waiting."""
    with open(ws / ".stackhop-run.lock", "w") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                dbtools.heartbeat(step="tempest.run", waiting_for="another tempest run in this workspace")
                if dbtools.is_cancelled():
                    raise CancelledError("tempest.run cancelled while waiting for the workspace") from None
                time.sleep(1.0)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@activity.defn(name=TEMPEST_RUN, no_thread_cancel_exception=True)
def run_tempest(inp: CheckInput) -> TempestResult:
    """Run the plan's tempest regex in the worker's workspace and judge it from subunit."""
    check = inp.check
    if not isinstance(check, TempestCheck):
        raise errors.permanent(errors.PLAN_INVALID, f"tempest.run got a {check.kind} check")
    ws, tempest = _workspace(), _tempest()
    with _workspace_lock(ws):
        return _run(inp, check, ws, tempest)


def _run(inp: CheckInput, check: TempestCheck, ws: Path, tempest: list[str]) -> TempestResult:
    started = time.monotonic()
    stestr = _stestr(tempest)
    last_before = subprocess.run([stestr, "last", "--subunit"], cwd=ws, capture_output=True).stdout
    command = [*tempest, "run", "--regex", check.regex, "--concurrency", str(check.concurrency)]
    script = (
        f"cd {q(str(ws))} && "
        + " ".join(q(p) for p in command)
        + f' > tempest-console.log 2>&1; echo "{dbtools.MARKER} exit=$?"\n'
    )
    ran = dbtools.run_local(script, step="tempest.run", timeout=inp.timeout_seconds)
    stream = subprocess.run([stestr, "last", "--subunit"], cwd=ws, capture_output=True).stdout
    if stream == last_before:  # tempest died before it recorded a run: nothing to judge
        stream = b""
    summary = parse_subunit(stream)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    junit_dir = ws / "junit"
    junit_dir.mkdir(exist_ok=True)
    junit_path = junit_dir / f"{inp.service}-{inp.stage}-{stamp}.xml"
    junit_path.write_bytes(junit_xml(summary, suite=f"tempest {inp.service} {inp.stage}"))
    status, message = verdict(summary)
    console = (ws / "tempest-console.log").read_text(errors="replace") if (ws / "tempest-console.log").exists() else ""
    seconds = round(time.monotonic() - started, 3)
    log.info(
        "tempest_run",
        service=inp.service,
        status=status,
        passed=summary.passed,
        failed=summary.failed,
        skipped=summary.skipped,
        seconds=seconds,
        junit=str(junit_path),
    )
    return TempestResult(
        status=status,
        message=message,
        details={
            "exit_code": int(ran.markers.get("exit", "-1")),
            "regex": check.regex,
            "command": command,
            "console_tail": "\n".join(console.splitlines()[-20:]) if status != "pass" else "",
        },
        seconds=seconds,
        passed=summary.passed,
        failed=summary.failed,
        skipped=summary.skipped,
        failing_tests=summary.ids(FAILED),
        junit_path=str(junit_path),
    )
