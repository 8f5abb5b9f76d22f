"""The main job: `stackhop demo` and its --inject variants, run as an operator runs them.

Each run is the real CLI in a subprocess against the session's Temporal dev server (so the runs
share it, as an operator's `stackhop dev` would be shared); the labs live in their own directory
and stay up between runs (--keep), and every run starts again from the 28.1.0 baseline. After each
run the test looks at the labs itself: which image is deployed, which Keystone serves, whether it
issues tokens, and what the workflow's report says.
"""

from __future__ import annotations

import asyncio
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
from tests.e2e.writes import token_status, user_exists, write_during
from tests.plaintext import assert_no_plaintext

LAB_DIR = ROOT / ".lab" / "e2e"
DEMO_TIMEOUT = 600


@pytest.fixture(scope="module")
def demo_env(temporal_env: WorkflowEnvironment) -> Iterator[dict[str, str]]:
    env = {**os.environ, "STACKHOP_LAB_DIR": str(LAB_DIR), "STACKHOP_DEMO_CLUSTER": "stackhop-e2e"}
    yield env
    subprocess.run(
        [str(Path(sys.executable).parent / "stackhop"), "lab", "down"], env=env, check=False, capture_output=True
    )


async def run_demo(env: dict[str, str], temporal_env: WorkflowEnvironment, *args: str) -> tuple[int, str]:
    """`stackhop demo` as a subprocess; async, so a test can act on the labs while it runs."""
    port = temporal_env.client.service_client.config.target_host.rsplit(":", 1)[1]
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "stackhop"),
        "demo",
        "--port",
        port,
        "--keep",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), DEMO_TIMEOUT)
    except TimeoutError:
        proc.kill()
        output, _ = await proc.communicate()
        raise AssertionError(f"the demo did not end within {DEMO_TIMEOUT}s:\n{output.decode()}") from None
    return proc.returncode or 0, output.decode()


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


IMAGE_VALUES = {"images.tags.keystone_api", "images.tags.keystone_db_sync"}


def helm_story(lab: DemoLab) -> list[tuple[str, str, str]]:
    """The keystone release's history as (chart, status, description), oldest first."""
    return [(r["chart"], r["status"], r["description"]) for r in lab.helm().history("keystone")]


async def test_demo_upgrades_keystone_to_2026_1(
    demo_env: dict[str, str], temporal_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, output = await run_demo(demo_env, temporal_env)
    assert code == 0, output
    lab = lab_state(demo_env, monkeypatch)
    assert lab.deployed_image() == "registry.lab/keystone:29.1.0"
    assert lab.served_release() == "29.1.0" and lab.token_works()
    report = await report_of(temporal_env)
    (svc,) = report.services
    assert report.outcome == "succeeded" and svc.snapshot and len(svc.snapshot.sha256) == 64
    assert svc.tempest and svc.tempest.status == "pass" and svc.tempest.passed >= 14
    done = [s.step for s in svc.steps if s.status == "done"]
    assert done == [  # keystone's recipe: the target release's status check first, no migrate (a no-op)
        "status",
        "snapshot",
        "verify",
        "check",
        "expand",
        "roll",
        "rollout",
        "validate",
        "validate",
        "contract",
        "postcheck",
    ]
    assert "Temporal UI: http://127.0.0.1:" in output and "upgraded to 2026.1" in output
    # through the release: one revision, chart and images changed, every other value the operator's
    (install, upgrade) = helm_story(lab)
    assert install[:2] == ("keystone-2025.2.0", "superseded") and upgrade[:2] == ("keystone-2026.1.0", "deployed")
    assert upgrade[2].startswith("stackhop upgrade/lab/keystone/")
    assert set(lab.values_changes()) == IMAGE_VALUES, lab.values_changes()
    assert [(c.purpose, c.revision_before, c.revision) for c in svc.helm] == [("roll", 1, 2)]
    # the histories as Temporal stores them (the upgrade's and keystone's): the lab's passwords, the
    # image, the snapshot's path and the migration's command never in clear, ids and types in clear
    mariadb, keystone = lab.openstack.mariadb, lab.openstack.keystone
    assert mariadb is not None and keystone is not None
    secrets = [
        mariadb.admin_password,
        keystone.db_password,
        keystone.admin_password,
        "registry.lab/keystone:29.1.0",
        svc.snapshot.location,
        "keystone-manage",
    ]
    ids = ["upgrade/lab", io.service_workflow_id("upgrade/lab", "keystone")]
    found = await assert_no_plaintext(temporal_env.client, ids, secrets, clear=[*ids, "db.snapshot", "helm.upgrade"])
    assert {"registry.lab/keystone:29.1.0", svc.snapshot.location, "keystone-manage"} <= found, found


async def test_a_part_way_expand_is_restored_and_the_report_says_what_the_restore_discards(
    demo_env: dict[str, str], temporal_env: WorkflowEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The expand fails half-way on schema drift: the schema is in an unknown state, so the only way
    back is the snapshot — after proving nothing uses the database, with the window it loses."""
    code, output = await run_demo(demo_env, temporal_env, "--inject", "migration")
    assert code == 1, output
    lab = lab_state(demo_env, monkeypatch)
    assert lab.deployed_image() == "registry.lab/keystone:28.1.0"
    assert lab.served_release() == "28.1.0" and lab.token_works()
    report = await report_of(temporal_env)
    (svc,) = report.services
    assert report.outcome == "rolled-back" and svc.outcome == "rolled-back"
    assert [s.step for s in svc.steps if s.status == "failed"] == ["expand"]
    assert "Duplicate key name" in next(s.detail for s in svc.steps if s.status == "failed")
    assert svc.restore and svc.snapshot and svc.restore.table_checksums == svc.snapshot.table_checksums
    rollback = svc.rollback
    assert rollback is not None and rollback.kind == "restore", rollback
    assert rollback.loss_from == svc.snapshot.created_at and rollback.loss_to >= rollback.loss_from
    # the half-done expand changed table definitions; nobody wrote (the demo makes no writes then)
    assert rollback.table_changes and not [c for c in rollback.table_changes if c.change == "writers"], rollback
    assert "table checksums EQUAL to the snapshot's" in output
    assert "data-loss window" in output
    # quiesced and scaled back through the release, on the deployed chart: the operator's values again
    assert [h[:2] for h in helm_story(lab)] == [("keystone-2025.2.0", "superseded")] * 2 + [
        ("keystone-2025.2.0", "deployed")
    ]
    assert lab.values_changes() == {} and [c.purpose for c in svc.helm] == ["quiesce", "unquiesce"]


@pytest.mark.parametrize(
    ("inject", "during", "failed_step", "why"),
    [
        ("rollout", "rollout", "rollout", "progress deadline"),
        ("tempest", "validate", "validate", "DomainsTestJSON"),
    ],
)
async def test_a_failure_after_the_expand_rolls_back_images_only_and_keeps_every_write(
    demo_env: dict[str, str],
    temporal_env: WorkflowEnvironment,
    monkeypatch: pytest.MonkeyPatch,
    inject: str,
    during: str,
    failed_step: str,
    why: str,
) -> None:
    """After a complete expand the old release runs on the expanded schema: the rollback puts the
    previous images back and restores nothing, so a user created and a token revoked while the
    upgrade ran survive it. After the tempest failure, the next upgrade finds the expand done."""
    lab = lab_state(demo_env, monkeypatch)
    demo = asyncio.create_task(run_demo(demo_env, temporal_env, "--inject", inject))
    try:
        writes = await write_during(temporal_env, during)
    finally:
        code, output = await demo
    assert code == 1, output
    assert writes.served_by == ("28.1.0" if inject == "rollout" else "29.1.0")
    lab = lab_state(demo_env, monkeypatch)
    assert lab.deployed_image() == "registry.lab/keystone:28.1.0"
    assert lab.served_release() == "28.1.0" and lab.token_works()
    assert user_exists(lab.openstack, writes.user)
    assert token_status(lab.openstack, writes.revoked_token) == 401
    report = await report_of(temporal_env)
    (svc,) = report.services
    assert report.outcome == "rolled-back" and svc.outcome == "rolled-back"
    assert [s.step for s in svc.steps if s.status == "failed"] == [failed_step]
    assert why in next(s.detail for s in svc.steps if s.status == "failed")
    assert svc.restore is None and not any(s.step == "restore" for s in svc.steps)
    assert svc.rollback is not None and svc.rollback.kind == "images", svc.rollback
    assert "contract did not run" in output
    # the rollback is a revision of the release, back to the operator's chart and values
    *_, upgrade, back = helm_story(lab)
    assert upgrade[:2] == ("keystone-2026.1.0", "superseded") and back == (
        "keystone-2025.2.0",
        "deployed",
        "Rollback to 1",
    )
    assert lab.values_changes() == {} and [c.purpose for c in svc.helm] == ["roll", "rollback"]

    if inject != "tempest":
        return
    code, output = await run_demo(demo_env, temporal_env, "--no-reset")
    assert code == 0, output
    lab = lab_state(demo_env, monkeypatch)
    assert lab.served_release() == "29.1.0" and user_exists(lab.openstack, writes.user)
    assert token_status(lab.openstack, writes.revoked_token) == 401
    (svc,) = (await report_of(temporal_env)).services
    steps = [(s.step, s.status) for s in svc.steps if s.step in ("expand", "migrate", "contract")]
    assert steps == [("expand", "skipped"), ("contract", "done")], svc.steps
