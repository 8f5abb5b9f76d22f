"""The timing table every test session ends with: where the time of `make test` went.

`make test` records its set-up phases and static checks in the file named by ``STACKHOP_TIMINGS``
(see .ci/timed); this plugin prints them beside the time of each test directory and the slowest tests (set-up + call +
teardown, so a session fixture that starts a lab shows on the first test that uses it). It prints in pytest's
terminal summary, before pytest's own closing line, so CI still reads that line.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import pytest

SLOWEST = 15
_durations: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _durations[report.nodeid] += report.duration


def _phases() -> list[tuple[str, float, str]]:
    path = os.environ.get("STACKHOP_TIMINGS")
    if not path or not Path(path).is_file():
        return []
    rows = []
    for line in Path(path).read_text().splitlines():
        name, seconds, code = [*line.split("\t"), "", ""][:3]
        rows.append((name, float(seconds or 0), code))
    return rows


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    tr = terminalreporter
    phases = _phases()
    tests = sorted(_durations.items(), key=lambda kv: kv[1], reverse=True)
    if not phases and not tests:
        return
    tr.write_sep("=", "stackhop timings")
    width = max([len(n) for n, _, _ in phases] + [len(n) + 2 for n, _ in tests[:SLOWEST]] + [10])
    for name, seconds, code in phases:
        tr.write_line(f"{name:<{width}}  {seconds:8.1f} s" + ("" if code in ("0", "") else f"  (exit {code})"))
    if phases:
        tr.write_line(f"{'set-up and checks in all':<{width}}  {sum(s for _, s, _ in phases):8.1f} s")
    if tests:
        tr.write_line(f"{'tests in all (' + str(len(tests)) + ')':<{width}}  {sum(_durations.values()):8.1f} s")
        by_dir: dict[str, float] = defaultdict(float)
        for nodeid, seconds in tests:
            by_dir[nodeid.split("::")[0].rsplit("/", 1)[0]] += seconds
        tr.write_line("tests by directory: " + ", ".join(f"{d} {s:.0f} s" for d, s in sorted(by_dir.items())))
        tr.write_line(f"slowest {min(SLOWEST, len(tests))} tests (set-up + call + teardown):")
        for nodeid, seconds in tests[:SLOWEST]:
            tr.write_line(f"  {nodeid:<{width - 2}}  {seconds:8.1f} s")
