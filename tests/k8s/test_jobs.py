"""Jobs on the real lab: success, injected failure, idempotency across retries."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError

from activities.kube import RunJobInput, run_job
from activities.kube_jobs import GENERATION_LABEL, RUN_LABEL, STEP_LABEL, job_name
from model import errors
from model.plan import KubeTarget
from tests.k8s.helpers import Background, Recorder, job, list_jobs, list_pods, read
from tests.waiting import eventually_sync

pytestmark = pytest.mark.k8s


def test_job_success(kube_target: KubeTarget) -> None:
    rec = Recorder()
    res = rec.run(
        run_job,
        RunJobInput(
            target=kube_target,
            step="keystone-db-sync",
            run_id="run-1",
            manifest=job("registry.lab/keystone:29.1.0"),
            timeout_seconds=60,
        ),
    )
    name = job_name("keystone-db-sync", "run-1", 1)
    assert res.succeeded and res.name == name and res.generation == 1 and not res.reattached
    assert len(name) <= 63 and name.startswith("keystone-db-sync-") and name.endswith("-g1")
    labels = read(kube_target, "Job", name)["metadata"]["labels"]
    assert labels[STEP_LABEL] == "keystone-db-sync" and labels[RUN_LABEL] == "run-1" and labels[GENERATION_LABEL] == "1"
    # kwok has no kubelet: no real logs, but the tail still says what happened
    assert "exit code 0" in res.logs_tail
    assert any(isinstance(b, dict) and b.get("job") == name for b in rec.beats)


def test_job_failure_is_permanent_with_logs(kube_target: KubeTarget) -> None:
    with pytest.raises(ApplicationError) as ei:
        Recorder().run(
            run_job,
            RunJobInput(
                target=kube_target,
                step="glance-db-sync",
                run_id="run-1",
                manifest=job("registry.lab/glance:job-fail"),
                timeout_seconds=60,
            ),
        )
    err = ei.value
    assert err.type == errors.JOB_FAILED and err.non_retryable
    assert "glance-db-sync" in str(err) and "BackoffLimitExceeded" in str(err)
    details = err.details[0]
    assert "exit code 1" in details["logs_tail"]
    assert "injected failure" in details["logs_tail"]
    assert details["generation"] == 1 and not details["timed_out"]


def test_job_creation_idempotent_across_retries(kube_target: KubeTarget) -> None:
    """A retry while the first attempt still waits, and a retry after success, re-attach to the Job."""
    inp = RunJobInput(
        target=kube_target,
        step="nova-db-sync",
        run_id="run-1",
        timeout_seconds=60,
        manifest=job("registry.lab/nova:slow-job", delay="4s"),
    )
    first = Background(Recorder(), run_job, inp)
    eventually_sync(lambda: list_jobs(kube_target), within=20, what="attempt 1 created the Job")
    retry = Recorder().run(run_job, inp)  # attempt 2, concurrently with attempt 1
    first.join(30)
    assert first.error is None and first.result.succeeded and not first.result.reattached
    assert retry.succeeded and retry.reattached
    again = Recorder().run(run_job, inp)  # a resumed workflow after success
    assert again.succeeded and again.reattached and again.name == first.result.name
    name = job_name("nova-db-sync", "run-1", 1)
    assert [j["metadata"]["name"] for j in list_jobs(kube_target)] == [name]
    assert len(list_pods(kube_target, f"job-name={name}")) == 1


def test_job_name_clash_with_other_spec(kube_target: KubeTarget) -> None:
    def backup(image: str) -> RunJobInput:
        return RunJobInput(target=kube_target, step="backup", run_id="run-1", timeout_seconds=60, manifest=job(image))

    Recorder().run(run_job, backup("registry.lab/mariadb:11"))
    with pytest.raises(ApplicationError) as ei:
        Recorder().run(run_job, backup("registry.lab/mariadb:12"))
    assert ei.value.type == errors.PLAN_INVALID and "different spec" in str(ei.value)


def test_job_timeout(kube_target: KubeTarget) -> None:
    with pytest.raises(ApplicationError) as ei:
        Recorder().run(
            run_job,
            RunJobInput(
                target=kube_target,
                step="tempest",
                run_id="run-1",
                timeout_seconds=3,
                manifest=job("registry.lab/tempest:slow-job", delay="60s"),
            ),
        )
    assert ei.value.type == errors.JOB_FAILED and "did not finish within 3s" in str(ei.value)
    assert ei.value.details[0]["timed_out"]
