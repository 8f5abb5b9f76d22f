"""Running the real `stackhop` app in-process against the session's Temporal dev server.

Each invocation runs in a thread (the commands call ``asyncio.run`` and the tests already run in an
event loop, which also runs the stand-in worker). The CLI finds Temporal the way an operator's shell
would: TEMPORAL_ADDRESS and STACKHOP_TASK_QUEUE in the environment.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner, Result

from cli import app
from tests.waiting import NotYet, eventually
from tests.workflows.helpers import service

UI = "http://ui.test:8233"

WritePlan = Callable[..., tuple[Path, str]]  # the write_plan fixture: (plan file, workflow id)


def plan_doc(services: list[dict[str, Any]] | None = None, **policy: Any) -> dict[str, Any]:
    return {
        "apiVersion": "stackhop/v1alpha1",
        "kind": "UpgradePlan",
        "metadata": {"name": "cli-test"},
        "cloud": {"name": f"c{uuid.uuid4().hex[:10]}", "kubernetes": {"context": "lab"}, "openstack": {"cloud": "lab"}},
        "release": {"from": "2025.2", "to": "2026.1"},
        "policy": {"heartbeat_timeout": "5s", "max_attempts": 2, **policy},
        "services": services or [service("keystone")],
    }


class Cli:
    """``await cli("status", "upgrade/x", tq=...)`` -> click Result (exit_code, stdout, stderr)."""

    def __init__(self, address: str):
        self.address = address
        self.runner = CliRunner()

    def env(self, tq: str | None = None, **extra: str | None) -> dict[str, str | None]:
        env: dict[str, str | None] = {
            "TEMPORAL_ADDRESS": self.address,
            "TEMPORAL_NAMESPACE": "default",
            "TEMPORAL_PROFILE": None,
            "STACKHOP_UI_URL": UI,
            "COLUMNS": "200",
            "USER": "tester",
        }
        if tq:
            env["STACKHOP_TASK_QUEUE"] = tq
        env.update(extra)
        return env

    def run(self, *args: str, tq: str | None = None, **env: str | None) -> Result:
        return self.runner.invoke(app, list(args), env=self.env(tq, **env), catch_exceptions=False)

    async def __call__(self, *args: str, tq: str | None = None, **env: str | None) -> Result:
        return await asyncio.to_thread(self.run, *args, tq=tq, **env)

    async def status(self, wf_id: str) -> dict[str, Any]:
        res = await self("status", wf_id, "--json")
        assert res.exit_code in (0, 1), res.stderr
        doc: dict[str, Any] = json.loads(res.stdout)
        return doc

    async def until(self, wf_id: str, pred: Callable[[dict[str, Any]], bool], within: float = 30) -> dict[str, Any]:
        """Wait until ``stackhop status --json`` of ``wf_id`` satisfies ``pred``; return that document."""
        seen: list[dict[str, Any]] = []

        async def matching() -> dict[str, Any]:
            seen[:] = [await self.status(wf_id)]
            return seen[0] if pred(seen[0]) else {}  # empty, so falsy: not yet

        try:
            return await eventually(matching, within=within, what=f"the status of {wf_id} matching")
        except NotYet as e:
            raise NotYet(f"{e}; last status: {seen}") from None


@pytest.fixture
def cli(temporal_env: WorkflowEnvironment) -> Cli:
    return Cli(temporal_env.client.service_client.config.target_host)


@pytest.fixture
def offline_cli() -> Cli:
    """For commands that must not need Temporal: it points at a closed port."""
    return Cli("127.0.0.1:1")


@pytest.fixture
def write_plan(tmp_path: Path) -> WritePlan:
    """write_plan(services=None, **policy) -> (plan file, workflow id)."""

    def write(services: list[dict[str, Any]] | None = None, **policy: Any) -> tuple[Path, str]:
        doc = plan_doc(services, **policy)
        path = tmp_path / f"{doc['cloud']['name']}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path, f"upgrade/{doc['cloud']['name']}"

    return write
