"""deploy/kustomize against the lab's apiserver: server-side dry-run, RBAC allowed/denied verbs,
and the activities themselves running with nothing but the worker's service account token."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from activities.kube import RunJobInput, read_images, run_job, wait_rollout
from lab.k8s.cluster import KubeLab
from model.io import ReadImagesInput, WaitRolloutInput, WorkloadRef
from model.plan import KubeTarget
from tests.k8s.helpers import Recorder, create, job, set_image, token_kubeconfig, workload

pytestmark = pytest.mark.k8s

KUSTOMIZE = Path(__file__).resolve().parents[2] / "deploy" / "kustomize"
SA = "system:serviceaccount:stackhop:stackhop-worker"

ALLOWED = [
    ("get", "deployments.apps"),
    ("list", "statefulsets.apps"),
    ("watch", "daemonsets.apps"),
    ("patch", "deployments.apps"),
    ("patch", "statefulsets.apps"),
    ("patch", "daemonsets.apps"),
    ("create", "jobs.batch"),
    ("get", "jobs.batch"),
    ("watch", "jobs.batch"),
    ("delete", "jobs.batch"),  # a cancelled step's Job, and
    ("deletecollection", "pods"),  # its pods
    ("list", "pods"),
    ("get", "pods/log"),
]
# The Helm adapter's Role (rbac-helm.yaml): helm upgrade/rollback/history/test in the cloud's namespace
HELM_ALLOWED = [
    ("get", "secrets"),  # release storage: one Secret of type helm.sh/release.v1 per revision
    ("list", "secrets"),
    ("create", "secrets"),
    ("update", "secrets"),
    ("delete", "secrets"),  # history limit
    ("create", "deployments.apps"),  # what a chart version renders, changes or drops
    ("update", "statefulsets.apps"),
    ("delete", "daemonsets.apps"),
    ("patch", "configmaps"),
    ("create", "services"),
    ("patch", "jobs.batch"),
    ("create", "pods"),  # helm test
    ("delete", "pods"),
]
DENIED = [
    ("create", "pods/exec"),
    ("deletecollection", "secrets"),
    ("create", "serviceaccounts/token"),
    ("create", "roles.rbac.authorization.k8s.io"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("escalate", "roles.rbac.authorization.k8s.io"),
    ("delete", "persistentvolumeclaims"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io"),
]


@pytest.fixture(scope="module")
def deployed(k8s_lab: KubeLab) -> Iterator[KubeLab]:
    for ns in ("stackhop", "openstack"):
        k8s_lab.kubectl_run("create", "namespace", ns, check=False)
    yield k8s_lab
    for ns in ("stackhop", "openstack"):
        k8s_lab.kubectl_run("delete", "namespace", ns, "--wait=false", check=False)


def test_server_side_dry_run(deployed: KubeLab) -> None:
    res = deployed.kubectl_run("apply", "-k", str(KUSTOMIZE), "--dry-run=server")
    out = res.stdout
    for obj in (
        "serviceaccount/stackhop-worker",
        "role.rbac.authorization.k8s.io/stackhop-worker",
        "rolebinding.rbac.authorization.k8s.io/stackhop-worker",
        "role.rbac.authorization.k8s.io/stackhop-worker-helm",
        "rolebinding.rbac.authorization.k8s.io/stackhop-worker-helm",
        "persistentvolumeclaim/stackhop-snapshots",
        "deployment.apps/stackhop-worker",
    ):
        assert obj in out, out


def test_the_worker_is_one_host_with_its_snapshots_on_a_volume() -> None:
    """The mode deploy/README.md states: one replica, a fixed host name (its host queue survives a
    restart) and the snapshot directory on the claim, which outlives the pod."""
    deployment = yaml.safe_load((KUSTOMIZE / "deployment.yaml").read_text())
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["STACKHOP_WORKER_HOST"] == "stackhop-worker"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["snapshots"] == env["STACKHOP_SNAPSHOT_DIR"]
    claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["volumes"]}
    pvc = yaml.safe_load((KUSTOMIZE / "pvc.yaml").read_text())
    assert claims["snapshots"] == pvc["metadata"]["name"] and pvc["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_temporal_tls_and_api_key_come_from_secrets(deployed: KubeLab, tmp_path: Path) -> None:
    """The built worker Deployment points Temporal's TLS variables (tests/test_temporal_tls.py runs
    them through a TLS proxy) into the mounted Secret, and the API key component takes the key from
    a Secret too: no credential is written in the manifests."""
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    base = os.path.relpath(KUSTOMIZE, overlay)  # kustomize takes relative paths only
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump({"resources": [base], "components": [f"{base}/components/temporal-api-key"]})
    )
    built = list(yaml.safe_load_all(deployed.kubectl_run("kustomize", str(overlay)).stdout))
    pod = next(d for d in built if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    secret = next(v for v in pod["volumes"] if v["name"] == "temporal-tls")["secret"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "temporal-tls")
    assert secret["secretName"] == "stackhop-temporal-tls" and mount["readOnly"]
    paths = {env[f"TEMPORAL_TLS_{k}_PATH"]["value"] for k in ("SERVER_CA_CERT", "CLIENT_CERT", "CLIENT_KEY")}
    assert paths == {f"{mount['mountPath']}/{key}" for key in ("ca.crt", "tls.crt", "tls.key")}
    assert env["TEMPORAL_TLS"]["value"] == "true"
    assert env["TEMPORAL_API_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "stackhop-temporal-api-key", "key": "api-key"}
    }


def can_i(lab: KubeLab, verb: str, resource: str, ns: str = "openstack") -> bool:
    resource, _, sub = resource.partition("/")
    extra = [f"--subresource={sub}"] if sub else []
    res = lab.kubectl_run("auth", "can-i", verb, resource, *extra, "-n", ns, f"--as={SA}", check=False)
    assert res.stdout.strip() in ("yes", "no"), res.stderr
    return res.stdout.strip() == "yes"


def test_rbac_least_privilege(deployed: KubeLab) -> None:
    deployed.kubectl_run("apply", "-k", str(KUSTOMIZE))
    wrong = [f"{v} {r}" for v, r in ALLOWED + HELM_ALLOWED if not can_i(deployed, v, r)]
    wrong += [f"NOT {v} {r}" for v, r in DENIED if can_i(deployed, v, r)]
    # nothing outside the target namespace, nothing cluster-wide
    outside = ALLOWED[:4] + HELM_ALLOWED[:2]
    wrong += [f"NOT {v} {r} in kube-system" for v, r in outside if can_i(deployed, v, r, "kube-system")]
    if deployed.kubectl_run("auth", "can-i", "list", "nodes", f"--as={SA}", check=False).stdout.strip() == "yes":
        wrong.append("NOT list nodes")
    assert not wrong, wrong


def test_activities_work_with_only_the_service_account(deployed: KubeLab, tmp_path: Path) -> None:
    """The Role is sufficient: run the activities with the worker's own token."""
    deployed.kubectl_run("apply", "-k", str(KUSTOMIZE))
    token = deployed.kubectl_run("create", "token", "stackhop-worker", "-n", "stackhop").stdout.strip()
    admin = yaml.safe_load(deployed.kubeconfig.read_text())
    kubeconfig = token_kubeconfig(deployed.kubeconfig, token, tmp_path / "worker.kubeconfig")
    admin_target = KubeTarget(
        context=admin["current-context"], namespace="openstack", kubeconfig=str(deployed.kubeconfig)
    )
    create(admin_target, workload("Deployment", "keystone-api", "registry.lab/keystone:28.1.0"))
    worker = KubeTarget(context="worker", namespace="openstack", kubeconfig=str(kubeconfig))
    rec = Recorder()
    ref = WorkloadRef(kind="Deployment", name="keystone-api", container="app")
    assert rec.run(read_images, ReadImagesInput(target=worker, workloads=[ref])).images[0].found
    set_image(worker, "Deployment", "keystone-api", "registry.lab/keystone:29.1.0", rec)
    assert (
        rec.run(wait_rollout, WaitRolloutInput(target=worker, workloads=[ref], timeout_seconds=60)).workloads[0].ready
    )
    assert rec.run(
        run_job,
        RunJobInput(
            target=worker,
            step="keystone-db-sync",
            run_id="run-1",
            timeout_seconds=60,
            manifest=job("registry.lab/keystone:29.1.0"),
        ),
    ).succeeded
