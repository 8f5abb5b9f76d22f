"""The lab's keystone chart as a Helm release on the Kubernetes lab: install at chart 2025.2.0 with
the operator's values, upgrade to chart 2026.1.0 with a new image; what Helm 4 records."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from lab.helm import KEYSTONE_NEW, KEYSTONE_OLD, LAB_VALUES, Helm, keystone_chart
from model.plan import KubeTarget
from tests.k8s.helpers import images_of, list_jobs, list_pods, read

pytestmark = pytest.mark.k8s

# No lab controller in the Kubernetes-only tests: drop the label it serves, so kwok readies the pods.
NO_CONTROLLER = {"pod.labels.api": "null"}


def test_install_then_upgrade_to_the_new_chart_version(kube_target: KubeTarget, tmp_path: Path) -> None:
    helm = Helm(Path(kube_target.kubeconfig or ""), kube_target.namespace, kube_target.context)
    helm.install("keystone", keystone_chart(KEYSTONE_OLD), values=[LAB_VALUES], set_values=NO_CONTROLLER)
    deployment = read(kube_target, "Deployment", "keystone-api")
    assert images_of(deployment) == {"keystone-api": "registry.lab/keystone:28.1.0"}
    assert deployment["metadata"]["annotations"]["meta.helm.sh/release-name"] == "keystone"
    assert deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    # Helm 4 installs with server-side apply: the fields belong to the "helm" field manager
    assert any(m["manager"] == "helm" and m["operation"] == "Apply" for m in deployment["metadata"]["managedFields"])
    assert list_jobs(kube_target) == []  # db-sync and ks-user hooks switched off by the values
    before = helm.get_values("keystone")

    new_image = "registry.lab/keystone:29.1.0"
    helm.upgrade(
        "keystone",
        keystone_chart(KEYSTONE_NEW),
        set_values={"images.tags.keystone_api": new_image, "images.tags.keystone_db_sync": new_image},
    )
    history = helm.history("keystone")
    assert [(h["revision"], h["chart"], h["status"]) for h in history] == [
        (1, f"keystone-{KEYSTONE_OLD}", "superseded"),
        (2, f"keystone-{KEYSTONE_NEW}", "deployed"),
    ]
    assert images_of(read(kube_target, "Deployment", "keystone-api")) == {"keystone-api": new_image}
    pods = list_pods(kube_target, "app=keystone-api")
    assert {p["spec"]["containers"][0]["image"] for p in pods if not p["metadata"].get("deletionTimestamp")} == {
        new_image
    }
    expected = copy.deepcopy(before)
    expected["images"]["tags"].update(keystone_api=new_image, keystone_db_sync=new_image)
    assert helm.get_values("keystone") == expected  # every other user-supplied value kept
    assert helm.get_values("keystone", revision=1) == before
    helm.uninstall("keystone", wait=False)
