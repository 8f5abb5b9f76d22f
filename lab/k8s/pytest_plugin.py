"""pytest fixtures for the Kubernetes lab (register with ``pytest_plugins = ["lab.k8s.pytest_plugin"]``).

``k8s_lab``: one session-wide cluster named "stackhop-test" (reused when already healthy, deleted at
the end unless STACKHOP_LAB_KEEP=1 or it was running before).  ``kube_target``: a fresh namespace per
test, as the KubeTarget the activities take, deleted afterwards without waiting.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import yaml

from lab.k8s.cluster import KubeLab
from model.plan import KubeTarget


@pytest.fixture(scope="session")
def k8s_lab() -> Iterator[KubeLab]:
    lab = KubeLab(name=os.environ.get("STACKHOP_K8S_LAB_NAME", "stackhop-test"), nodes=3)
    was_up = lab.healthy()
    lab.up()
    yield lab
    if not was_up and os.environ.get("STACKHOP_LAB_KEEP") != "1":
        lab.down()


def kube_context(lab: KubeLab) -> str:
    return yaml.safe_load(lab.kubeconfig.read_text())["current-context"]


@pytest.fixture
def kube_target(k8s_lab: KubeLab) -> Iterator[KubeTarget]:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    k8s_lab.kubectl_run("create", "namespace", ns)
    yield KubeTarget(context=kube_context(k8s_lab), namespace=ns, kubeconfig=str(k8s_lab.kubeconfig))
    k8s_lab.kubectl_run("delete", "namespace", ns, "--wait=false", check=False)
