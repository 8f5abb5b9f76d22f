"""The Job runner's generations on the real lab: a retry re-attaches to a running Job, a new generation
comes only after a failure whose pods are gone, a busy or finished Job of another run is never
taken for this run's, and cancelling deletes the Job and its pods (the command is killed).

Jobs built by dbtools.job_manifest (labelled managed-by=stackhop) run their commands for real
through the lab's Job executor; the others are completed by kwok's stages (job-fail, slow-job)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from temporalio.exceptions import ApplicationError, CancelledError

from activities import dbtools
from activities.kube import RunJobInput, run_job
from activities.kube_client import MERGE, api_client, call
from activities.kube_jobs import job_name
from lab.jobs import JobExecutor
from model import errors
from model.plan import KubeTarget
from tests.k8s.helpers import Background, Recorder, job, list_jobs, list_pods
from tests.waiting import eventually_sync

pytestmark = pytest.mark.k8s

HOLD = "test.stackhop.io/hold"


def managed(target: KubeTarget, script: str, **extra: Any) -> dict[str, Any]:
    """A Job as the database and migration activities build it (run by the lab's executor)."""
    return dbtools.job_manifest(
        namespace=target.namespace,
        image="registry.lab/tools:1",
        script=script,
        labels={"stackhop.io/service": "test"},
        timeout_seconds=300,
        **{"volumes": [], "mounts": [], **extra},
    )


def in_activity(step: str, manifest: dict[str, Any], target: KubeTarget) -> dbtools.Ran:
    """dbtools.run_job as an activity runs it (its workflow run: the test environment's)."""
    ran: dbtools.Ran = Recorder().run(lambda _: dbtools.run_job(target, step, manifest, 60, "test"), None)
    return ran


def names(target: KubeTarget) -> list[str]:
    return sorted(j["metadata"]["name"] for j in list_jobs(target))


def patch_pod(target: KubeTarget, name: str, body: dict[str, Any]) -> None:
    with api_client(target) as api:
        call(client.CoreV1Api(api).patch_namespaced_pod, name, target.namespace, body, _content_type=MERGE)


def delete_pod(target: KubeTarget, name: str) -> None:
    with api_client(target) as api:
        call(client.CoreV1Api(api).delete_namespaced_pod, name, target.namespace)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_the_lab_runs_a_jobs_command_with_its_volumes(
    kube_target: KubeTarget, k8s_lab: Any, job_executor: JobExecutor
) -> None:
    """Secret keys become files, the claim a directory that outlives the pod, markers come back."""
    k8s_lab.kubectl_run(
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=my.cnf=[client]\nuser=lab\n",
        "-n",
        kube_target.namespace,
    )
    job_executor.create_claim(kube_target.namespace, "snaps")
    script = (
        "set -e; grep -q user=lab /etc/stackhop/db/my.cnf; echo hello > /var/lib/stackhop/snapshots/out.txt\n"
        f'echo noise; echo "{dbtools.MARKER} seen=yes path=/var/lib/stackhop/snapshots/out.txt"\n'
    )
    manifest = managed(
        kube_target,
        script,
        volumes=[
            {"name": "c", "secret": {"secretName": "creds", "items": [{"key": "my.cnf", "path": "my.cnf"}]}},
            {"name": "s", "persistentVolumeClaim": {"claimName": "snaps"}},
        ],
        mounts=[
            {"name": "c", "mountPath": "/etc/stackhop/db"},
            {"name": "s", "mountPath": "/var/lib/stackhop/snapshots"},
        ],
    )
    ran = in_activity("snapshot-x", manifest, kube_target)
    assert ran.exit_code == 0 and ran.markers["seen"] == "yes", ran.output
    assert (job_executor.claim_dir(kube_target.namespace, "snaps") / "out.txt").read_text() == "hello\n"


def test_a_failed_script_comes_back_with_its_exit_code_and_output(
    kube_target: KubeTarget, job_executor: JobExecutor
) -> None:
    manifest = managed(kube_target, f'echo "{dbtools.MARKER} error=missing"; echo "ERROR 1205 lock"; exit 3')
    ran = in_activity("verify-x", manifest, kube_target)
    assert ran.exit_code == 3 and ran.markers == {"error": "missing"} and "ERROR 1205" in ran.output


def test_a_retry_reattaches_to_the_running_job(
    kube_target: KubeTarget, job_executor: JobExecutor, tmp_path: Path
) -> None:
    """A worker killed mid-restore: the retry waits for the same Job; the command ran once."""
    count, go = tmp_path / "count", tmp_path / "go"
    script = f'echo x >> {count}; while [ ! -e {go} ]; do sleep 0.1; done; echo "{dbtools.MARKER} done=1"'
    inp = RunJobInput(target=kube_target, step="restore-x", run_id="run-1", manifest=managed(kube_target, script))
    first_rec = Recorder()
    first = Background(first_rec, run_job, inp)
    eventually_sync(count.exists, within=30, what="the Job's command started")
    retry_rec = Recorder()
    retry = Background(retry_rec, run_job, inp)  # the retry of the same step, same run
    retry_rec.wait_for_step("run_job")
    assert any(b.get("reattached") for b in retry_rec.beats if isinstance(b, dict))
    go.touch()
    first.join(30)
    retry.join(30)
    assert first.error is None and retry.error is None, (first.error, retry.error)
    assert retry.result.reattached and retry.result.name == first.result.name == job_name("restore-x", "run-1", 1)
    assert "done=1" in retry.result.logs_tail
    assert count.read_text() == "x\n"  # the command ran once
    assert names(kube_target) == [job_name("restore-x", "run-1", 1)]


def test_a_new_generation_only_after_a_failure_whose_pods_are_gone(kube_target: KubeTarget) -> None:
    inp = RunJobInput(
        target=kube_target, step="expand-x", run_id="run-1", timeout_seconds=60, manifest=job("registry.lab/x:job-fail")
    )
    with pytest.raises(ApplicationError) as first:
        Recorder().run(run_job, inp)
    g1 = job_name("expand-x", "run-1", 1)
    assert first.value.type == errors.JOB_FAILED and first.value.details[0]["generation"] == 1
    # the failed pod is still terminating (held by a finalizer): its container may still act
    (pod,) = list_pods(kube_target, f"job-name={g1}")
    patch_pod(kube_target, pod["metadata"]["name"], {"metadata": {"finalizers": [HOLD]}})
    delete_pod(kube_target, pod["metadata"]["name"])
    rec = Recorder()
    retry = Background(rec, run_job, inp)
    eventually_sync(
        lambda: any(isinstance(b, dict) and "waiting_for" in b for b in rec.beats),
        within=20,
        what="the retry waiting for the failed Job's pods",
    )
    assert names(kube_target) == [g1]  # no second Job while a pod of the first is left
    patch_pod(kube_target, pod["metadata"]["name"], {"metadata": {"finalizers": None}})
    retry.join(30)
    assert isinstance(retry.error, ApplicationError) and retry.error.details[0]["generation"] == 2
    assert names(kube_target) == sorted([g1, job_name("expand-x", "run-1", 2)])


def test_another_runs_jobs_are_never_reused(kube_target: KubeTarget) -> None:
    def inp(run: str, image: str = "registry.lab/x:1") -> RunJobInput:
        return RunJobInput(target=kube_target, step="snapshot-y", run_id=run, timeout_seconds=60, manifest=job(image))

    done = Recorder().run(run_job, inp("run-a"))
    again = Recorder().run(run_job, inp("run-b"))  # a re-run of the cloud: runs its own Job
    assert not again.reattached and again.name != done.name and again.generation == 1
    assert names(kube_target) == sorted([done.name, again.name])
    # while another run's Job of the step is still busy, this run's is not started
    Background(Recorder(), run_job, inp("run-c", "registry.lab/x:slow-job"))
    eventually_sync(lambda: len(list_jobs(kube_target)) == 3, within=20, what="run-c's Job")
    with pytest.raises(ApplicationError) as ei:
        Recorder().run(run_job, inp("run-d"))
    assert ei.value.type in errors.TEMPORARY and not ei.value.non_retryable and "run-c" in str(ei.value)
    assert len(list_jobs(kube_target)) == 3


def test_cancel_deletes_the_job_and_its_pods(
    kube_target: KubeTarget, job_executor: JobExecutor, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    script = f"echo $$ > {pidfile}.tmp; mv {pidfile}.tmp {pidfile}; exec sleep 300"
    rec = Recorder()
    inp = RunJobInput(target=kube_target, step="restore-z", run_id="run-1", manifest=managed(kube_target, script))
    bg = Background(rec, run_job, inp)
    eventually_sync(pidfile.exists, within=30, what="the Job's command running")
    pid = int(pidfile.read_text())
    assert alive(pid)
    rec.env.cancel()
    bg.join(60)
    assert isinstance(bg.error, CancelledError), bg.error
    # when the activity reports cancelled, the pods are gone (and the lab's kubelet killed the command)
    assert list_pods(kube_target, f"job-name={job_name('restore-z', 'run-1', 1)}") == []
    eventually_sync(lambda: not alive(pid), within=10, what="the command killed")
    eventually_sync(lambda: names(kube_target) == [], within=30, what="the Job deleted")
