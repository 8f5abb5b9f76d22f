"""Snapshot locality with two real workers, separate snapshot directories, one main task queue:
verify and restore go to the host that holds the file; with that host gone the restore is refused
before anything is dropped, naming its task queue, and it succeeds once the host is back."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from lab.openstack.manager import OpenStackLab
from model import errors
from model.plan import Database
from tests.conftest import ROOT
from tests.openstack.helpers import KeystoneAt, table_checksums
from tests.openstack.locality_workflow import LocalityInput, LocalityProbe, LocalityResult

pytestmark = pytest.mark.openstack

HOSTS = ("host-a", "host-b")


@asynccontextmanager
async def stackhop_worker(
    env: WorkflowEnvironment, lab: OpenStackLab, task_queue: str, host: str, snapshots: Path
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """A worker process as host ``host`` with its own snapshot directory; killed (SIGKILL) on exit."""
    assert lab.mariadb
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "STACKHOP_WORKER_HOST": host,
        "STACKHOP_SNAPSHOT_DIR": str(snapshots),
        "STACKHOP_DB_DEFAULTS_FILE": str(lab.mariadb.defaults_file),
    }
    address = env.client.service_client.config.target_host
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, "-m", "tests.openstack.locality_worker", address, task_queue],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env=environment,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.to_thread(proc.stdout.readline)
        assert line.split() == [b"ready", f"{task_queue}@{host}".encode()], line
        yield proc
    finally:
        proc.kill()
        await asyncio.to_thread(proc.wait)
        if proc.stdout:
            proc.stdout.close()


async def test_restore_runs_only_where_the_snapshot_is(
    temporal_env: WorkflowEnvironment, client: Client, keystone_at: KeystoneAt, tmp_path: Path
) -> None:
    lab = keystone_at("28.1.0")
    assert lab.mariadb
    main = f"locality-{uuid.uuid4().hex[:8]}"
    probe_queue = f"{main}-probe"
    db = Database(name="keystone")  # each worker's environment: the defaults file, its own directory

    async def probe(inp: LocalityInput) -> LocalityResult:
        result: LocalityResult = await client.execute_workflow(
            LocalityProbe.run, inp, id=f"{probe_queue}-{uuid.uuid4().hex[:6]}", task_queue=probe_queue
        )
        return result

    def worker_of(host: str) -> AbstractAsyncContextManager[subprocess.Popen[bytes]]:
        return stackhop_worker(temporal_env, lab, main, host, tmp_path / host)

    async with AsyncExitStack() as workers, Worker(client, task_queue=probe_queue, workflows=[LocalityProbe]):
        running = {host: await workers.enter_async_context(worker_of(host)) for host in HOSTS}
        snapped = await probe(LocalityInput(action="snapshot", main_queue=main, database=db))
        assert snapped.snapshot and snapped.verify, snapped.failure
        snap = snapped.snapshot
        assert snap.host in HOSTS and snap.task_queue == f"{main}@{snap.host}"
        assert Path(snap.location).parent == tmp_path / snap.host  # on that host's disk only
        (other,) = set(HOSTS) - {snap.host}
        assert not (tmp_path / other).exists() or not any((tmp_path / other).iterdir())
        assert snapped.verify.ok, snapped.verify.message  # verify ran where the file is

        lab.stop_keystone()  # what the workflow's quiesce does before a restore
        lab.mariadb.sql("INSERT INTO region (id, description, extra) VALUES ('AfterSnap', '', '{}')", "keystone")
        changed = table_checksums(lab)

        holder = running.pop(snap.host)
        holder.kill()  # the host that holds the file is gone; the other worker still polls
        await asyncio.to_thread(holder.wait)
        refused = await probe(
            LocalityInput(action="restore", main_queue=main, database=db, snapshot=snap, schedule_to_start=5)
        )
        assert refused.restore is None and refused.kind == errors.TIMEOUT
        assert snap.task_queue in refused.failure and "nothing was done" in refused.failure
        assert table_checksums(lab) == changed  # nothing was dropped

        await workers.enter_async_context(worker_of(snap.host))  # the host is back
        restored = await probe(LocalityInput(action="restore", main_queue=main, database=db, snapshot=snap))
        assert restored.restore and restored.restore.ok, restored.failure
        assert table_checksums(lab) == snap.table_checksums
