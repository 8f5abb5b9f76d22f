"""A rollback with the Kubernetes Job runner, on both labs: every database and migration step runs as
a Job on the k8s lab, whose pods the lab's Job executor runs for real (the MariaDB client tools, the
target release's keystone-manage), with the credentials and the config from Secrets and the
snapshots on a claim. The demo's schema drift makes the expand fail part-way, so the restore runs as
a Job: once (one generation), leaving the schema equal to the snapshot, and Keystone 28.1.0 serves.
The keystone-api Deployment itself is the lab's gunicorn, played by LabBridge.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import yaml
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

import worker as stackhop_worker
from activities.kube_jobs import GENERATION_LABEL
from lab.demo import DRIFT_SQL
from lab.jobs import JobExecutor
from lab.k8s.cluster import KubeLab
from lab.k8s.pytest_plugin import kube_context
from lab.openstack.manager import OpenStackLab
from model import errors, io
from model.loading import parse_plan
from model.plan import KubeTarget
from tests.openstack.helpers import RELEASE_MID, RELEASE_OLD, KeystoneAt, issue_token, table_checksums, validate_token
from tests.openstack.test_upgrade_lab import REAL, LabBridge
from workflows.upgrade import UpgradeWorkflow

pytestmark = [pytest.mark.openstack, pytest.mark.k8s]

OPERATION = "stackhop.io/operation"


def job_plan(target: KubeTarget) -> Any:
    doc = {
        "apiVersion": "stackhop/v1alpha1",
        "kind": "UpgradePlan",
        "metadata": {"name": "lab-keystone-jobs"},
        "cloud": {
            "name": f"lab{uuid.uuid4().hex[:8]}",
            "kubernetes": target.model_dump(),
            "openstack": {"cloud": "lab-admin"},
        },
        "release": {"from": "2025.2", "to": "2026.1"},
        "policy": {"on_failure": "rollback", "max_attempts": 2, "heartbeat_timeout": "30s", "restore": "automatic"},
        "services": [
            {
                "name": "keystone",
                "database": {
                    "name": "keystone",
                    "runner": "job",
                    "credentials_secret": "keystone-db",
                    "snapshot_pvc": "keystone-snapshots",
                    "snapshot_storage": "shared",
                },
                "migration": {
                    "mode": "expand-contract",
                    "runner": "job",
                    "config_secret": "keystone-etc",
                    "command": ["keystone-manage", "--config-file", "/etc/keystone/keystone.conf"],
                },
                "workloads": [
                    {
                        "kind": "Deployment",
                        "name": "keystone-api",
                        "container": "keystone-api",
                        "image": f"registry.lab/keystone:{RELEASE_MID}",
                    }
                ],
                "checks": [{"kind": "endpoint", "service_type": "identity"}],
            }
        ],
    }
    return parse_plan(yaml.safe_dump(doc), "lab-keystone-jobs.yaml")


def secrets(k8s: KubeLab, ns: str, lab: OpenStackLab) -> None:
    """What an operator creates beside the plan: the DB credentials and the service config."""
    assert lab.mariadb and lab.keystone
    k8s.kubectl_run(
        "create", "secret", "generic", "keystone-db", f"--from-file=my.cnf={lab.mariadb.defaults_file}", "-n", ns
    )
    k8s.kubectl_run(
        "create", "secret", "generic", "keystone-etc", f"--from-file=keystone.conf={lab.keystone.conf}", "-n", ns
    )


async def test_expand_fails_part_way_and_the_restore_runs_once_as_a_job(
    client: Client,
    keystone_at: KeystoneAt,
    k8s_lab: KubeLab,
    job_executor: JobExecutor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lab = keystone_at(RELEASE_OLD)
    # the recipe's status check with the target release runs on the worker, even for a plan whose
    # database steps run as Jobs: this worker has keystone-status, as the plan's operator would give it
    monkeypatch.setenv("STACKHOP_KEYSTONE_STATUS", lab.worker_env()["STACKHOP_KEYSTONE_STATUS"])
    token = issue_token(lab)
    ns = f"jobs-{uuid.uuid4().hex[:8]}"
    k8s_lab.kubectl_run("create", "namespace", ns)
    target = KubeTarget(context=kube_context(k8s_lab), namespace=ns, kubeconfig=str(k8s_lab.kubeconfig))
    secrets(k8s_lab, ns, lab)
    job_executor.create_claim(ns, "keystone-snapshots")
    assert lab.mariadb
    lab.mariadb.sql(DRIFT_SQL, database="keystone")  # a DBA's hot fix: the expand fails half-way
    plan = job_plan(target)
    bridge = LabBridge(lab)
    tq = f"jobs-{uuid.uuid4().hex[:8]}"
    try:
        async with stackhop_worker.build_worker(client, [*REAL, *bridge.activities()], task_queue=tq):
            handle = await client.start_workflow(
                UpgradeWorkflow.run, io.UpgradeInput(plan=plan), id=plan.workflow_id, task_queue=tq
            )
            with pytest.raises(WorkflowFailureError) as failed:
                await handle.result()
    finally:
        k8s_lab.kubectl_run("delete", "namespace", ns, "--wait=false", check=False)
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == errors.UPGRADE_ROLLED_BACK, cause
    report = io.UpgradeReport.model_validate(cause.details[0])
    (svc,) = report.services
    steps = [(s.step, s.status) for s in svc.steps]
    assert ("expand", "failed") in steps and ("restore", "done") in steps, steps

    # every step ran as a Job the lab executed; the restore once, in its first generation
    ran = [
        (r.labels.get(OPERATION), r.labels.get(GENERATION_LABEL), r.exit_code)
        for r in job_executor.runs
        if r.namespace == ns
    ]
    operations = [op for op, _, _ in ran]
    assert {"db-snapshot", "db-verify", "db-check", "db-expand", "db-restore"} <= set(operations), ran
    assert [(g, code) for op, g, code in ran if op == "db-restore"] == [("1", 0)]
    assert svc.snapshot and table_checksums(lab) == svc.snapshot.table_checksums  # the schema is the snapshot
    assert lab.keystone and lab.keystone.release == RELEASE_OLD and lab.keystone.ready()
    assert validate_token(lab, token) == 200
