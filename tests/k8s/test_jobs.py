"""Jobs on the real lab: success, injected failure, idempotency across retries."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError

from activities.kube import RunJobInput, run_job
from model import errors
from model.plan import KubeTarget
from tests.k8s.helpers import Background, Recorder, job, list_jobs, list_pods
from tests.waiting import eventually_sync

pytestmark = pytest.mark.k8s


def test_job_success(kube_target: KubeTarget) -> None:
    rec = Recorder()
    res = rec.run(
        run_job,
        RunJobInput(
            target=kube_target,
            name="keystone-db-sync-29-1-0",
            manifest=job("registry.lab/keystone:29.1.0"),
            timeout_seconds=60,
        ),
    )
    assert res.succeeded and res.name == "keystone-db-sync-29-1-0"
    # kwok has no kubelet: no real logs, but the tail still says what happened
    assert "exit code 0" in res.logs_tail
    assert any(isinstance(b, dict) and b.get("job") == "keystone-db-sync-29-1-0" for b in rec.beats)


def test_job_failure_is_permanent_with_logs(kube_target: KubeTarget) -> None:
    with pytest.raises(ApplicationError) as ei:
        Recorder().run(
            run_job,
            RunJobInput(
                target=kube_target,
                name="glance-db-sync",
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


def test_job_creation_idempotent_across_retries(kube_target: KubeTarget) -> None:
    """A retry while the first attempt still waits, and a retry after success, reuse the Job."""
    inp = RunJobInput(
        target=kube_target,
        name="nova-db-sync",
        timeout_seconds=60,
        manifest=job("registry.lab/nova:slow-job", delay="4s"),
    )
    first = Background(Recorder(), run_job, inp)
    eventually_sync(lambda: list_jobs(kube_target), within=20, what="attempt 1 created the Job")
    retry = Recorder().run(run_job, inp)  # attempt 2, concurrently with attempt 1
    first.join(30)
    assert first.error is None and first.result.succeeded and retry.succeeded
    again = Recorder().run(run_job, inp)  # a resumed workflow after success
    assert again.succeeded
    jobs = list_jobs(kube_target)
    assert [j["metadata"]["name"] for j in jobs] == ["nova-db-sync"]
    assert len(list_pods(kube_target, "job-name=nova-db-sync")) == 1


def test_job_name_clash_with_other_spec(kube_target: KubeTarget) -> None:
    Recorder().run(
        run_job,
        RunJobInput(target=kube_target, name="backup", timeout_seconds=60, manifest=job("registry.lab/mariadb:11")),
    )
    with pytest.raises(ApplicationError) as ei:
        Recorder().run(
            run_job,
            RunJobInput(target=kube_target, name="backup", timeout_seconds=60, manifest=job("registry.lab/mariadb:12")),
        )
    assert ei.value.type == errors.PLAN_INVALID and "different spec" in str(ei.value)


def test_job_timeout(kube_target: KubeTarget) -> None:
    with pytest.raises(ApplicationError) as ei:
        Recorder().run(
            run_job,
            RunJobInput(
                target=kube_target,
                name="tempest",
                timeout_seconds=3,
                manifest=job("registry.lab/tempest:slow-job", delay="60s"),
            ),
        )
    assert ei.value.type == errors.JOB_FAILED and "did not finish within 3s" in str(ei.value)
