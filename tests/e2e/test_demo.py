"""The main job: `stackhop demo` and its --inject variants, run as an operator runs them.

Each run is the real CLI in a subprocess against the session's Temporal dev server (so the runs
share it, as an operator's `stackhop dev` would be shared); the labs live in their own directory
and stay up between runs (--keep), and every run starts again from the 28.1.0 baseline. After each
run the test looks at the labs itself: which image is deployed, which Keystone serves, whether it
issues tokens, and what the workflow's report says.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from lab.demo import DemoLab, demo_kube_lab
from lab.openstack.manager import OpenStackLab
from model import io
from tests.conftest import ROOT

LAB_DIR = ROOT / ".lab" / "e2e"


@pytest.fixture(scope="module")
def demo_env(temporal_env: WorkflowEnvironment) -> Iterator[dict[str, str]]:
    env = {**os.environ, "STACKHOP_LAB_DIR": str(LAB_DIR), "STACKHOP_DEMO_CLUSTER": "stackhop-e2e"}
    yield env
    subprocess.run(
        [str(Path(sys.executable).parent / "stackhop"), "lab", "down"], env=env, check=False, capture_output=True
    )


def run_demo(env: dict[str, str], temporal_env: WorkflowEnvironment, *args: str) -> tuple[int, str]:
    port = temporal_env.client.service_client.config.target_host.rsplit(":", 1)[1]
    done = subprocess.run(
        [str(Path(sys.executable).parent / "stackhop"), "demo", "--port", port, "--keep", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return done.returncode, done.stdout + done.stderr


def lab_state(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> DemoLab:
    monkeypatch.setenv("STACKHOP_LAB_DIR", env["STACKHOP_LAB_DIR"])
    monkeypatch.setenv("STACKHOP_DEMO_CLUSTER", env["STACKHOP_DEMO_CLUSTER"])
    return DemoLab(demo_kube_lab(), OpenStackLab.load())


async def report_of(temporal_env: WorkflowEnvironment) -> io.UpgradeReport:
    from cliapp.render import outcome_of

    handle = temporal_env.client.get_workflow_handle("upgrade/lab", result_type=io.UpgradeReport)
    _, report, _ = await outcome_of(handle)
    assert report is not None
    return report


async def test_demo_upgrades_keystone_to_2026_1(
    demo_env: dict[str, str], temporal_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, output = run_demo(demo_env, temporal_env)
    assert code == 0, output
    lab = lab_state(demo_env, monkeypatch)
    assert lab.deployed_image() == "registry.lab/keystone:29.1.0"
    assert lab.served_release() == "29.1.0" and lab.token_works()
    report = await report_of(temporal_env)
    (svc,) = report.services
    assert report.outcome == "succeeded" and svc.snapshot and len(svc.snapshot.sha256) == 64
    assert svc.tempest and svc.tempest.status == "pass" and svc.tempest.passed >= 14
    done = [s.step for s in svc.steps if s.status == "done"]
    assert done == [
        "snapshot",
        "verify",
        "check",
        "expand",
        "migrate",
        "roll",
        "rollout",
        "validate",
        "validate",
        "contract",
        "postcheck",
    ]
    assert "Temporal UI: http://127.0.0.1:" in output and "upgraded to 2026.1" in output


@pytest.mark.parametrize(
    ("inject", "failed_step", "why"),
    [
        ("migration", "expand", "Duplicate key name"),
        ("rollout", "rollout", "progress deadline"),
        ("tempest", "validate", "DomainsTestJSON"),
    ],
)
async def test_injected_failure_rolls_back_to_28_1_0(
    demo_env: dict[str, str],
    temporal_env: WorkflowEnvironment,
    monkeypatch: pytest.MonkeyPatch,
    inject: str,
    failed_step: str,
    why: str,
) -> None:
    code, output = run_demo(demo_env, temporal_env, "--inject", inject)
    assert code == 1, output
    lab = lab_state(demo_env, monkeypatch)
    assert lab.deployed_image() == "registry.lab/keystone:28.1.0"
    assert lab.served_release() == "28.1.0" and lab.token_works()
    report = await report_of(temporal_env)
    (svc,) = report.services
    assert report.outcome == "rolled-back" and svc.outcome == "rolled-back"
    assert [s.step for s in svc.steps if s.status == "failed"] == [failed_step]
    assert why in next(s.detail for s in svc.steps if s.status == "failed")
    assert svc.restore and svc.snapshot and svc.restore.table_checksums == svc.snapshot.table_checksums
    assert "table checksums EQUAL to the snapshot's" in output
