"""The Helm adapter (helm.status, helm.upgrade, helm.rollback) on the real lab with the real helm.

A tiny chart of our own (tests/k8s/charts/tiny-0.1.0, tiny-0.2.0: chart versions 0.1.0 and 0.2.0; one
Deployment whose image is images.tags.api and replicas pod.replicas.api; a switchable post-upgrade
hook Job that never completes, so a helm process can be caught mid-upgrade). One namespace for the
module, one release per test.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from temporalio.exceptions import ApplicationError, CancelledError

from activities.helm import rollback, status, upgrade
from activities.helm_cli import HELM_ENV, Helm
from activities.helm_release import LABEL, label_value
from activities.kube import wait_rollout
from activities.preview import helm_preview
from cliapp.plans import helm_table
from lab.k8s.cluster import KubeLab
from lab.k8s.pytest_plugin import kube_context
from lab.k8s.versions import helm_bin
from model import errors
from model.io import (
    HelmChange,
    HelmRollbackInput,
    HelmStatus,
    HelmStatusInput,
    HelmUpgradeInput,
    WaitRolloutInput,
    WorkloadImage,
)
from model.plan import HelmRelease, KubeTarget, UpgradePlan
from tests.k8s.helpers import Background, Recorder, images_of, list_pods, read, ref
from tests.waiting import eventually_sync

pytestmark = pytest.mark.k8s

CHARTS = Path(__file__).resolve().parent / "charts"
# The operator's own values: nested maps, a list, a value equal to the chart's default (mode), the
# image equal to the default too. Everything but the image must survive every change exactly.
OPERATOR: dict[str, Any] = {
    "images": {"tags": {"api": "registry.lab/tiny:1"}},
    "conf": {"nested": {"a": {"b": 2, "c": [1, 2]}}, "list": ["x", "y"], "mode": "standard"},
    "extra": {"keep": True, "empty_list": []},
}
NEW_IMAGE = "registry.lab/tiny:2"


@pytest.fixture(scope="module")
def target(k8s_lab: KubeLab) -> Iterator[KubeTarget]:
    assert os.environ[HELM_ENV] == str(helm_bin()), "the k8s lab fixture provides the lab's helm"
    ns = f"helm-{uuid.uuid4().hex[:8]}"
    k8s_lab.kubectl_run("create", "namespace", ns)
    yield KubeTarget(context=kube_context(k8s_lab), namespace=ns, kubeconfig=str(k8s_lab.kubeconfig))
    k8s_lab.kubectl_run("delete", "namespace", ns, "--wait=false", check=False)


def release(name: str, chart: str = "tiny-0.2.0", version: str = "0.2.0", timeout: int = 30) -> HelmRelease:
    return HelmRelease(
        release=name,
        chart=str(CHARTS / chart),
        version=version,
        image_values={"images.tags.api": NEW_IMAGE},
        replica_values={f"{name}-api": "pod.replicas.api"},
        timeout=timeout,
    )


def cli(target: KubeTarget, name: str) -> Helm:
    return Helm(target=target, release=name, namespace=target.namespace, timeout=30)


def install(target: KubeTarget, name: str, values: dict[str, Any] | None = None, tmp: Path | None = None) -> None:
    """helm install of tiny 0.1.0 with the operator's values, as an operator would."""
    path = (tmp or Path("/tmp")) / f"{name}-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(values if values is not None else OPERATOR))
    try:
        cli(target, name).run("install", name, str(CHARTS / "tiny-0.1.0"), "-f", str(path), "--description", "operator")
    finally:
        path.unlink()


def history(target: KubeTarget, name: str) -> list[dict[str, Any]]:
    return cli(target, name).history()


def values(target: KubeTarget, name: str) -> dict[str, Any]:
    return cli(target, name).values(history(target, name)[-1]["revision"])


def with_image(image: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(OPERATOR))
    out["images"]["tags"]["api"] = image
    return out


def roll(target: KubeTarget, name: str, change: str, **kw: Any) -> HelmUpgradeInput:
    args: dict[str, Any] = {
        "target": target,
        "helm": release(name),
        "purpose": "roll",
        "chart_version": "0.2.0",
        "set_values": {"images.tags.api": NEW_IMAGE},
        "change_id": change,
        "wait": "rollout",
        "workloads": [ref("Deployment", f"{name}-api", "api")],
        "timeout_seconds": 60,
    }
    args.update(kw)
    return HelmUpgradeInput(**args)


def test_upgrade_retry_and_rollback(target: KubeTarget) -> None:
    install(target, "up")
    rec = Recorder()
    change: HelmChange = rec.run(upgrade, roll(target, "up", "c1"))
    assert (change.revision_before, change.revision, change.already) == (1, 2, False)
    assert (change.chart_before, change.chart_after) == ("tiny-0.1.0", "tiny-0.2.0")
    assert change.values_diff == [f"images.tags.api: registry.lab/tiny:1 -> {NEW_IMAGE}"]
    assert change.workloads and change.workloads[0].ready
    assert values(target, "up") == with_image(NEW_IMAGE)  # every other user value kept exactly
    dep = read(target, "Deployment", "up-api")
    assert images_of(dep) == {"api": NEW_IMAGE} and dep["metadata"]["labels"]["chart-version"] == "0.2.0"
    assert history(target, "up")[-1]["description"] == "stackhop c1 from 1"

    again: HelmChange = rec.run(upgrade, roll(target, "up", "c1"))  # a retry of the same change
    assert (again.revision_before, again.revision, again.already) == (1, 2, True)
    assert len(history(target, "up")) == 2

    undo = HelmRollbackInput(
        target=target,
        helm=release("up"),
        to_revision=change.revision_before,
        after_revision=change.revision,
        workloads=[ref("Deployment", "up-api", "api")],
        timeout_seconds=60,
    )
    back: HelmChange = rec.run(rollback, undo)
    assert (back.revision_before, back.revision, back.already) == (2, 3, False)
    assert back.chart_after == "tiny-0.1.0" and back.workloads[0].ready
    assert values(target, "up") == OPERATOR
    assert images_of(read(target, "Deployment", "up-api")) == {"api": "registry.lab/tiny:1"}
    retry: HelmChange = rec.run(rollback, undo)
    assert (retry.revision, retry.already) == (3, True)
    assert len(history(target, "up")) == 3


def test_a_retry_recognises_its_revision_by_label_when_helm_mixed_up_its_record(target: KubeTarget) -> None:
    """SIGTERM as helm completes: the revision can end deployed with Helm's failure description (two
    goroutines record it). The release label names the change: the retry makes no second revision."""
    install(target, "mix")
    h = cli(target, "mix")
    h.run(
        "upgrade", "mix", str(CHARTS / "tiny-0.2.0"), "--reuse-values", "--set", f"images.tags.api={NEW_IMAGE}",
        "--labels", f"{LABEL}={label_value('c7', 2)}", "--description", 'Upgrade "mix" failed: context canceled',
    )  # fmt: skip
    again: HelmChange = Recorder().run(upgrade, roll(target, "mix", "c7"))
    assert (again.revision_before, again.revision, again.already) == (1, 2, True)
    assert len(history(target, "mix")) == 2


def _killed_upgrade(target: KubeTarget, name: str, label: str | None) -> None:
    """A helm upgrade caught in its post-upgrade hook and killed with SIGKILL (a dead worker):
    the release stays pending-upgrade."""
    h = cli(target, name)
    args = ["upgrade", name, str(CHARTS / "tiny-0.1.0"), "--reuse-values", "--set", "hooks.stuck=true"]
    args += ["--labels", f"{LABEL}={label}"] if label else []
    proc = subprocess.Popen(h.argv(*args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        eventually_sync(
            lambda: list_pods(target, f"batch.kubernetes.io/job-name={name}-stuck-2"), within=30, what="the hook pod"
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert history(target, name)[-1]["status"] == "pending-upgrade"


def test_recovery_from_pending_upgrade(target: KubeTarget) -> None:
    """Our own attempt killed mid-upgrade: the retry rolls the pending revision back, then upgrades."""
    install(target, "pend")
    _killed_upgrade(target, "pend", label_value("c2", 2))
    change: HelmChange = Recorder().run(upgrade, roll(target, "pend", "c2"))
    assert change.recovered == [
        "revision 2 pending-upgrade (left by an earlier attempt of this change), rolled back to 1"
    ]
    assert (change.revision_before, change.revision) == (3, 4)
    assert [r["status"] for r in history(target, "pend")] == ["superseded", "pending-upgrade", "superseded", "deployed"]
    assert values(target, "pend") == with_image(NEW_IMAGE)


def test_a_killed_rollback_is_finished_by_its_retry_without_going_through_the_new_revision(
    target: KubeTarget,
) -> None:
    """helm rollback killed in its post-rollback hook leaves revision 3 pending-rollback, described
    "Rollback to 1" from its start: the retry recognises it and rolls back to 1 directly — never
    to the last deployed revision (the upgrade's), which would flap the workloads to the new image."""
    install(target, "rb", {**OPERATOR, "hooks": {"stuck": True, "delay": "3s"}})  # hooks of revision 1
    rec = Recorder()
    change: HelmChange = rec.run(
        upgrade, roll(target, "rb", "c5", set_values={"images.tags.api": NEW_IMAGE, "hooks.stuck": False})
    )
    assert change.revision == 2
    proc = subprocess.Popen(
        cli(target, "rb").argv("rollback", "rb", "1"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        eventually_sync(
            lambda: list_pods(target, "batch.kubernetes.io/job-name=rb-stuck-1"), within=30, what="the hook pod"
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert [(r["status"], r["description"]) for r in history(target, "rb")][-1] == ("pending-rollback", "Rollback to 1")
    undo = HelmRollbackInput(
        target=target,
        helm=release("rb"),
        to_revision=1,
        after_revision=2,
        workloads=[ref("Deployment", "rb-api", "api")],
        timeout_seconds=60,
    )
    back: HelmChange = rec.run(rollback, undo)
    assert back.recovered == [
        "revision 3 pending-rollback (left by an earlier attempt of this change), rolled back to 1"
    ]
    assert back.revision == 4 and images_of(read(target, "Deployment", "rb-api")) == {"api": "registry.lab/tiny:1"}
    assert [r["status"] for r in history(target, "rb")] == ["superseded", "superseded", "pending-rollback", "deployed"]
    assert rec.run(rollback, undo).already and len(history(target, "rb")) == 4


def test_recovery_by_the_previous_attempts_heartbeat(target: KubeTarget) -> None:
    """No label (killed before helm stored it): the revision the previous attempt heartbeated it was
    making is ours too."""
    install(target, "hb")
    _killed_upgrade(target, "hb", None)
    rec = Recorder()
    rec.env.info = dataclasses.replace(rec.env.info, heartbeat_details=[{"release": "hb", "making": 2}])
    change: HelmChange = rec.run(upgrade, roll(target, "hb", "c9"))
    assert change.recovered == [
        "revision 2 pending-upgrade (left by an earlier attempt of this change), rolled back to 1"
    ]
    assert (change.revision_before, change.revision) == (3, 4)


def test_foreign_pending_upgrade_is_busy_until_stale(target: KubeTarget) -> None:
    install(target, "busy")
    _killed_upgrade(target, "busy", None)
    with pytest.raises(ApplicationError) as ei:
        Recorder().run(upgrade, roll(target, "busy", "c3"))
    assert ei.value.type == errors.HELM_BUSY and not ei.value.non_retryable
    assert "revision 2 is pending-upgrade" in ei.value.message
    # abandoned: older than 2x helm.timeout (1s here) -> rolled back, then upgraded
    stale = roll(target, "busy", "c3", helm=release("busy", timeout=1))
    change: HelmChange = eventually_sync(
        lambda: _try(stale), within=20, what="the pending revision to become stale", ignore=(ApplicationError,)
    )
    assert change.recovered and "abandoned" in change.recovered[0]
    assert values(target, "busy") == with_image(NEW_IMAGE)


def _try(inp: HelmUpgradeInput) -> HelmChange:
    result: HelmChange = Recorder().run(upgrade, inp)
    return result


def test_quiesce_and_unquiesce(target: KubeTarget) -> None:
    """Quiesce sets the replica value to 0 (pods gone); unquiesce via restore_of brings back what was
    there before — here nothing (the operator never set pod.replicas): the path is deleted again."""
    install(target, "qu")
    refs = [ref("Deployment", "qu-api", "api")]
    # chart_version "" (the deployed one, 0.1.0) while the plan names 0.2.0: the local repository
    # holds both, as a quiesce before the roll (the restore of a part-way expand) needs
    qu = release("qu").model_copy(update={"chart": "tiny", "repo": str(CHARTS)})
    rec = Recorder()
    early = HelmUpgradeInput(
        target=target, helm=qu, purpose="unquiesce", restore_of="q1", change_id="u1", workloads=refs
    )
    nothing: HelmChange = rec.run(upgrade, early)  # registered before the quiesce ran: nothing to do
    assert (nothing.revision_before, nothing.revision) == (1, 1) and len(history(target, "qu")) == 1

    down: HelmChange = rec.run(
        upgrade,
        HelmUpgradeInput(
            target=target,
            helm=qu,
            purpose="quiesce",
            set_values={"pod.replicas.api": 0},
            change_id="q1",
            wait="gone",
            workloads=refs,
            timeout_seconds=60,
        ),
    )
    assert (down.revision_before, down.revision, down.chart_after) == (1, 2, "tiny-0.1.0")
    assert read(target, "Deployment", "qu-api")["spec"]["replicas"] == 0 and not list_pods(target, "app=qu-api")

    up: HelmChange = rec.run(upgrade, early.model_copy(update={"wait": "rollout", "timeout_seconds": 60}))
    assert (up.revision_before, up.revision) == (2, 3)
    assert up.values_diff == ["pod.replicas.api: 0 -> (absent)"]
    assert values(target, "qu") == OPERATOR
    assert read(target, "Deployment", "qu-api")["status"]["availableReplicas"] == 1


def test_cancellation_sends_sigterm(target: KubeTarget) -> None:
    """Cancelled while helm waits on a hook: helm gets SIGTERM, exits, and Helm 4 marks the revision
    failed (not pending): the next upgrade goes through without a recovery."""
    install(target, "cx")
    rec = Recorder()
    stuck = roll(target, "cx", "c5", set_values={"hooks.stuck": True}, wait="none")
    bg = Background(rec, upgrade, stuck)
    beat: dict[str, Any] = eventually_sync(
        lambda: next((b for b in list(rec.beats) if isinstance(b, dict) and b.get("pid")), {}),
        within=30,
        what="a heartbeat of the running helm",
    )
    assert beat["running"] == "helm upgrade" and beat["making"] == 2
    eventually_sync(lambda: list_pods(target, "batch.kubernetes.io/job-name=cx-stuck-2"), within=30, what="hook pod")
    rec.env.cancel()
    bg.join(40)
    assert isinstance(bg.error, CancelledError)
    assert not Path(f"/proc/{beat['pid']}").exists() or "zombie" in Path(f"/proc/{beat['pid']}/status").read_text()
    last = history(target, "cx")[-1]
    assert (last["revision"], last["status"]) == (2, "failed") and "context canceled" in last["description"]
    after: HelmChange = Recorder().run(upgrade, roll(target, "cx", "c6"))
    assert after.recovered == [] and (after.revision_before, after.revision) == (1, 3)


def test_a_killed_worker_takes_helm_down_with_sigterm(target: KubeTarget) -> None:
    """The worker process killed with SIGKILL while helm runs: helm (its own process group) gets
    SIGTERM through PR_SET_PDEATHSIG, records the revision failed and exits — no orphan helm goes on
    to race the retry's recovery. The retry then upgrades from the last deployed revision."""
    install(target, "kw")
    stuck = roll(target, "kw", "c10", set_values={"hooks.stuck": True}, wait="none")
    code = (
        "import sys\n"
        "from activities.helm import upgrade\n"
        "from model.io import HelmUpgradeInput\n"
        "upgrade(HelmUpgradeInput.model_validate_json(sys.stdin.read()))\n"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    assert worker.stdin is not None
    worker.stdin.write(stuck.model_dump_json().encode())
    worker.stdin.close()
    try:
        eventually_sync(lambda: list_pods(target, "batch.kubernetes.io/job-name=kw-stuck-2"), within=30, what="hook")
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    last = eventually_sync(
        lambda: (r := history(target, "kw")[-1])["status"] == "failed" and r, within=30, what="revision 2 failed"
    )
    assert last["revision"] == 2 and "context canceled" in last["description"]
    change: HelmChange = Recorder().run(upgrade, roll(target, "kw", "c10"))
    assert change.recovered == [] and (change.revision_before, change.revision) == (1, 3)
    assert [r["status"] for r in history(target, "kw")] == ["superseded", "failed", "deployed"]


def test_status_and_missing_release(target: KubeTarget) -> None:
    missing: HelmStatus = Recorder().run(status, HelmStatusInput(target=target, helm=release("nope")))
    assert not missing.found and missing.release == "nope"
    install(target, "st")
    st: HelmStatus = Recorder().run(status, HelmStatusInput(target=target, helm=release("st")))
    assert (st.found, st.revision, st.status, st.deployed_revision, st.chart) == (True, 1, "deployed", 1, "tiny-0.1.0")
    assert [r.description for r in st.history] == ["operator"]
    assert "values" not in st.model_dump()  # never into a workflow's history: values hold passwords
    with pytest.raises(ApplicationError) as ei:
        Recorder().run(upgrade, roll(target, "nope", "c7"))
    assert ei.value.type == errors.WORKLOAD_NOT_FOUND and "'nope'" in ei.value.message


def test_path_chart_of_another_version_is_refused(target: KubeTarget) -> None:
    install(target, "pv")
    with pytest.raises(ApplicationError) as ei:
        Recorder().run(upgrade, roll(target, "pv", "c8", chart_version="0.3.0"))
    assert ei.value.type == errors.HELM_FAILED and ei.value.non_retryable
    assert "helm.chart" in ei.value.message and "0.2.0, not 0.3.0" in ei.value.message
    assert len(history(target, "pv")) == 1


def test_wait_rollout_expect_names_the_container(target: KubeTarget) -> None:
    install(target, "ex")
    refs = [ref("Deployment", "ex-api", "api")]
    expect = [WorkloadImage(kind="Deployment", name="ex-api", container="api", image=NEW_IMAGE)]
    with pytest.raises(ApplicationError) as ei:
        Recorder().run(wait_rollout, WaitRolloutInput(target=target, workloads=refs, expect=expect, timeout_seconds=60))
    assert ei.value.type == errors.PLAN_INVALID
    assert f"Deployment ex-api container api runs registry.lab/tiny:1, not {NEW_IMAGE}" in ei.value.message


def test_plan_show_live_helm_section(target: KubeTarget) -> None:
    """`plan show --live`: release, revision and status, chart version now -> plan's, values diff."""
    install(target, "pre")
    svc = {
        "name": "keystone",
        "workloads": [{"kind": "Deployment", "name": "pre-api", "container": "api", "image": NEW_IMAGE}],
    }
    plan = UpgradePlan.model_validate(
        {
            "apiVersion": "stackhop/v1alpha1",
            "kind": "UpgradePlan",
            "metadata": {"name": "preview"},
            "cloud": {"name": "lab", "openstack": {"cloud": "lab-admin"}, "kubernetes": target.model_dump()},
            "release": {"from": "2025.2", "to": "2026.1"},
            "services": [
                {**svc, "helm": release("pre").model_dump(exclude_none=True)},
                {
                    **svc,
                    "name": "glance",
                    "helm": {**release("no-such").model_dump(exclude_none=True), "replica_values": {}},
                },
            ],
        }
    )
    pre, missing = helm_preview(plan)
    assert (pre.found, pre.revision, pre.status, pre.chart_now) == (True, 1, "deployed", "tiny-0.1.0")
    assert (pre.version_now, pre.version_plan) == ("0.1.0", "0.2.0")
    assert pre.values_diff == [f"images.tags.api: registry.lab/tiny:1 -> {NEW_IMAGE}"]
    assert not missing.found and missing.release == "no-such"
    table, n_missing = helm_table([pre, missing])
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    assert n_missing == 1 and "0.1.0 → 0.2.0" in text and "1 deployed" in text and "NOT FOUND" in text
    assert f"images.tags.api: registry.lab/tiny:1 -> {NEW_IMAGE}" in text
    assert len(history(target, "pre")) == 1  # read-only
