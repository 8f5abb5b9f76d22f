"""A scheduled canary on the labs: `stackhop canary trigger --wait` upgrades Keystone for real,
validates it, and puts the canary back on its 28.1.0 baseline — so the next run is a real upgrade
again, with a real expand migration."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
import yaml
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

import worker as stackhop_worker
from activities import migration
from lab.demo import DemoLab
from lab.k8s.cluster import KubeLab
from lab.openstack.manager import OpenStackLab
from model import io
from model.plan import Migration
from tests.cli.conftest import Cli
from tests.conftest import ROOT


def sync_check(version: str) -> str:
    from temporalio.testing import ActivityEnvironment

    inp = io.MigrateInput(
        service="keystone", phase="check", version=version, migration=Migration(mode="expand-contract")
    )
    return ActivityEnvironment().run(migration.db_sync, inp).state


async def test_canary_trigger_upgrades_then_returns_to_baseline(
    client: Client,
    temporal_env: WorkflowEnvironment,
    k8s_lab: KubeLab,
    openstack_lab: OpenStackLab,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    lab = DemoLab(k8s_lab, openstack_lab, namespace=f"canary-{uuid.uuid4().hex[:6]}", deploy="objects")
    await asyncio.to_thread(lab.prepare)
    try:
        for key, value in lab.worker_env().items():
            monkeypatch.setenv(key, value)
        doc = yaml.safe_load((ROOT / "examples" / "lab-keystone.yaml").read_text())
        doc["cloud"]["name"] = f"canary{uuid.uuid4().hex[:6]}"
        doc["cloud"]["kubernetes"]["namespace"] = lab.namespace
        doc["services"][0].pop("helm", None)  # raw objects, as the lab deployed them
        # the smallest plan for what this test is about (a schedule's run, then the reset): no tempest
        # (the demo's tests run it); the endpoint and status checks still decide each run
        checks = doc["services"][0]["checks"]
        doc["services"][0]["checks"] = [c for c in checks if c["kind"] != "tempest"]
        plan = tmp_path / "canary.yaml"
        plan.write_text(yaml.safe_dump(doc))
        name, tq = f"k{uuid.uuid4().hex[:6]}", f"canary-{uuid.uuid4().hex[:6]}"
        cli = Cli(temporal_env.client.service_client.config.target_host)
        async with stackhop_worker.build_worker(client, task_queue=tq):
            created = await cli("canary", "create", name, "--plan", str(plan), "--cron", "0 3 * * *", tq=tq)
            assert created.exit_code == 0, created.output
            for run in (1, 2):
                res = await cli("canary", "trigger", name, "--wait", tq=tq)
                assert res.exit_code == 0, f"run {run}: {res.output}"
                assert "passed" in res.output
                # back on the baseline: old image, old release serving, schema before the expand
                assert lab.deployed_image() == "registry.lab/keystone:28.1.0"
                assert await asyncio.to_thread(lab.served_release) == "28.1.0"
                assert await asyncio.to_thread(lab.token_works)
                assert await asyncio.to_thread(sync_check, "29.1.0") == "expand-needed"
            history = await cli("canary", "history", name, tq=tq)
            assert history.exit_code == 0 and history.output.count("passed") >= 2, history.output
            await cli("canary", "delete", name, tq=tq)
    finally:
        lab.close()
        k8s_lab.kubectl_run("delete", "namespace", lab.namespace, "--wait=false", check=False)
