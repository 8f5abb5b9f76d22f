"""pytest fixtures for the Kubernetes lab (register with ``pytest_plugins = ["lab.k8s.pytest_plugin"]``).

``k8s_lab``: one session-wide cluster, ``stackhop-test-<pid>`` so that concurrent pytest sessions
(developers and CI on one machine) never tear down each other's lab; start-up is ~4 s.  Clusters
of sessions that died without teardown are swept at the next session start.  Set
STACKHOP_K8S_LAB_NAME to use (and keep) a fixed, shared lab instead; STACKHOP_LAB_KEEP=1 keeps it.
``kube_target``: a fresh namespace per test, as the KubeTarget the activities take, deleted
afterwards without waiting.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator

import pytest
import yaml

from lab.jobs import JobExecutor
from lab.k8s.cluster import KubeLab
from lab.k8s.versions import helm_bin
from lab.pytest_lifetimes import stop_after_last_user, stop_now
from model import trust
from model.plan import KubeTarget


def sweep_orphans() -> None:
    """Delete stackhop-test-<pid> clusters whose pytest process is gone."""
    clusters = KubeLab().workdir / "clusters"
    for d in clusters.glob("stackhop-test-*") if clusters.is_dir() else []:
        m = re.fullmatch(r"stackhop-test-(\d+)", d.name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            KubeLab(name=d.name).down()


@pytest.fixture(scope="session")
def k8s_lab(request: pytest.FixtureRequest) -> Iterator[KubeLab]:
    fixed = os.environ.get("STACKHOP_K8S_LAB_NAME")
    sweep_orphans()
    lab = KubeLab(name=fixed or f"stackhop-test-{os.getpid()}", nodes=3)
    was_up = lab.healthy()
    lab.up()
    # The lab's helm, as the worker finds it (activities/helm_cli.py): built with the lab binaries.
    helm = helm_bin()
    assert helm.is_file(), f"no helm at {helm}: python -m lab.k8s.build builds it"
    os.environ["STACKHOP_HELM"] = str(helm)
    # the tests' plans name the labs' kubeconfigs: the in-process workers admit them (model/trust.py)
    os.environ[trust.CREDENTIAL_ROOTS_ENV] = trust.with_root(
        trust.CREDENTIAL_ROOTS_ENV, lab.cluster_dir.parent, trust.default_credential_roots()
    )
    if not fixed and not was_up and os.environ.get("STACKHOP_LAB_KEEP") != "1":
        stop_after_last_user(request, lab.down)  # after the session's last test on it (lab/pytest_lifetimes.py)
    yield lab
    stop_now(request)


def kube_context(lab: KubeLab) -> str:
    context: str = yaml.safe_load(lab.kubeconfig.read_text())["current-context"]
    return context


@pytest.fixture
def kube_target(k8s_lab: KubeLab) -> Iterator[KubeTarget]:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    k8s_lab.kubectl_run("create", "namespace", ns)
    yield KubeTarget(context=kube_context(k8s_lab), namespace=ns, kubeconfig=str(k8s_lab.kubeconfig))
    k8s_lab.kubectl_run("delete", "namespace", ns, "--wait=false", check=False)


@pytest.fixture(scope="session")
def job_executor(k8s_lab: KubeLab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JobExecutor]:
    """The lab's Job executor (lab/jobs.py): stackhop's Job pods run their commands for real."""
    with JobExecutor(k8s_lab.kubeconfig, tmp_path_factory.mktemp("job-executor")) as executor:
        yield executor
