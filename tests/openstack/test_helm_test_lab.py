"""The demo's Keystone as a Helm release (DemoLab's default), and `helm test keystone` against the
labs: the lab controller runs the chart's test pod for real (a token issued by the served Keystone)
and sets its phase, so the test passes while Keystone answers and fails when it does not (the
release scaled to 0: the controller stops Keystone)."""

from __future__ import annotations

import uuid

import pytest
import yaml

from lab.controller import KeystoneFollower
from lab.demo import RELEASE, DemoLab
from lab.helm import KEYSTONE_OLD, LAB_VALUES, keystone_chart
from lab.k8s.cluster import KubeLab
from lab.k8s.versions import helm_bin
from lab.openstack.manager import DEFAULT_RELEASE, OpenStackLab
from tests.waiting import eventually_sync

pytestmark = [pytest.mark.k8s, pytest.mark.openstack]


def test_demo_deploys_a_helm_release_that_helm_test_checks(k8s_lab: KubeLab, openstack_lab: OpenStackLab) -> None:
    lab = DemoLab(k8s_lab, openstack_lab, namespace=f"helm-{uuid.uuid4().hex[:6]}")
    assert lab.deploy == "helm"
    helm = lab.helm()
    try:
        lab.prepare()
        assert lab.deployed_image() == "registry.lab/keystone:28.1.0"
        assert lab.served_release() == "28.1.0"
        with pytest.raises(RuntimeError, match="already follows namespace"):  # two would fight over one Keystone
            KeystoneFollower(openstack_lab, lab.kubeconfig, "elsewhere").start()
        assert lab.worker_env()["STACKHOP_HELM"] == str(helm_bin())
        history = helm.history(RELEASE)
        assert [(h["revision"], h["chart"], h["status"]) for h in history] == [
            (1, f"keystone-{KEYSTONE_OLD}", "deployed")
        ]
        assert helm.get_values(RELEASE) == yaml.safe_load(LAB_VALUES.read_text())  # the operator's values, as given
        assert lab.values_changes() == {}

        passed = helm.test(RELEASE)
        assert passed.returncode == 0, passed.stdout + passed.stderr
        assert "Phase:          Succeeded" in passed.stdout
        assert lab.follower and lab.follower.tests_run == [("keystone-test", True)]

        helm.upgrade(RELEASE, keystone_chart(KEYSTONE_OLD), set_values={"pod.replicas.api": "0"}, wait=False)
        assert lab.values_changes() == {"pod.replicas.api": (2, 0)}
        ks = openstack_lab.keystone
        eventually_sync(lambda: not (ks and ks.pid), within=60, what="Keystone stopped with no keystone-api pod")
        failed = helm.test(RELEASE)
        assert failed.returncode != 0, failed.stdout
        assert "Failed" in failed.stdout + failed.stderr
        assert lab.follower.tests_run[-1] == ("keystone-test", False)
    finally:
        lab.close()
        helm.uninstall(RELEASE, wait=False)
        k8s_lab.kubectl_run("delete", "namespace", lab.namespace, "--wait=false", check=False)
        ks = openstack_lab.keystone
        if not (ks and ks.pid):
            openstack_lab.serve(DEFAULT_RELEASE)
