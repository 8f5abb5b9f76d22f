"""No Temporal at the configured address: exit 3, naming the address and how to start one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import Cli, WritePlan

STACKHOP = str(Path(sys.executable).parent / "stackhop")


@pytest.mark.parametrize(
    "args",
    [
        ["status", "upgrade/lab"],
        ["watch", "lab"],
        ["list"],
        ["pause", "lab"],
        ["approve", "lab", "g"],
        ["abort", "lab", "--reason", "x"],
        ["resume", "lab"],
        ["worker"],
        ["start", "{plan}"],
    ],
    ids=lambda a: a[0],
)
async def test_unreachable_exits_3(offline_cli: Cli, write_plan: WritePlan, args: list[str]) -> None:
    plan, _ = write_plan()
    res = await offline_cli(*(a.replace("{plan}", str(plan)) for a in args))
    assert res.exit_code == 3, res.output
    assert "cannot reach Temporal at 127.0.0.1:1" in res.stderr and "stackhop dev" in res.stderr


def test_unreachable_console_script_exits_3() -> None:
    """The installed entry point, as an operator runs it (several times: no crash at exit)."""
    env = {**os.environ, "TEMPORAL_ADDRESS": "127.0.0.1:1"}
    for _ in range(3):
        proc = subprocess.run([STACKHOP, "status", "lab"], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 3, proc.stderr
        assert "cannot reach Temporal at 127.0.0.1:1 (Connection refused)" in proc.stderr


def test_address_option_wins_over_the_environment(offline_cli: Cli) -> None:
    res = offline_cli.run("--address", "127.0.0.1:2", "list")
    assert res.exit_code == 3 and "127.0.0.1:2" in res.stderr
