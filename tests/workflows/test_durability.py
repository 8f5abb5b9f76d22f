"""A worker killed mid-upgrade: another worker finishes it, and no completed step runs twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from tests.conftest import ROOT
from tests.waiting import eventually
from tests.workflows.helpers import make_plan, outcome_of, start


async def spawn(env: WorkflowEnvironment, tq: str, journal: Path, *extra: str) -> subprocess.Popen[bytes]:
    address = env.client.service_client.config.target_host
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "tests.standin_worker", address, tq, str(journal), *extra],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout is not None
    line = await asyncio.to_thread(proc.stdout.readline)
    assert line.strip() == b"ready", line
    return proc


async def test_killed_worker_is_replaced_without_repeating_steps(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    tq = f"kill-{uuid.uuid4().hex[:8]}"
    first = await spawn(temporal_env, tq, journal, "--block", "k8s.wait_rollout")
    second = None
    try:
        handle = await start(temporal_env.client, make_plan(), tq)
        await eventually(
            lambda: "start k8s.wait_rollout" in (journal.read_text() if journal.exists() else ""),
            within=30,
            what="the first worker reaches k8s.wait_rollout",
        )
        first.send_signal(signal.SIGKILL)
        first.wait()
        second = await spawn(temporal_env, tq, journal)
        async with asyncio.timeout(60):
            kind, _ = await outcome_of(handle)
    finally:
        for p in (first, second):
            if p and p.poll() is None:
                p.kill()
            if p:
                p.wait()
                if p.stdout:
                    p.stdout.close()
    assert kind == "succeeded"
    lines = journal.read_text().splitlines()
    done = Counter(line.split()[1] for line in lines if line.startswith("done "))
    started = Counter(line.split()[1] for line in lines if line.startswith("start "))
    assert started["k8s.wait_rollout"] == 2 and done["k8s.wait_rollout"] == 1
    before_kill = lines[: lines.index("start k8s.wait_rollout")]
    for line in before_kill:
        if line.startswith("done "):
            name = line.split()[1]
            assert done[name] == started[name], f"{name} ran again after the restart"
    assert done == Counter(
        {
            "k8s.read_images": 2,
            "checks.run": 4,  # endpoint pre, status (target release), endpoint post, postcheck
            "db.snapshot": 1,
            "db.verify_snapshot": 1,
            "migration.db_sync": 3,  # check, expand, contract
            "k8s.set_images": 1,
            "k8s.wait_rollout": 1,
            "tempest.run": 1,
            "ledger.check_cloud": 1,  # the pre-flight checks the cloud (record and read: not journaled)
        }
    ), "every step completed exactly once"
