"""The fault suite's session: one Kubernetes lab, one OpenStack lab (the session's own, shared with
the lab tests), the lab controller, a restartable Temporal dev server with its database file, and
a service account for the worker so the audit log tells its writes apart."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import yaml

from lab.demo import DemoLab
from lab.k8s.cluster import KubeLab, free_port
from lab.openstack.manager import OpenStackLab
from tests.conftest import ROOT
from tests.faults.harness import SUMMARIES, WORKER_SA, WORKER_USER_NS, Faults, TemporalServer


def worker_kubeconfig(kube: KubeLab, context: str, path: Path) -> Path:
    """A kubeconfig with the lab's server and CA and a service account's token (no client
    certificate: the apiserver would authenticate that first)."""
    kube.kubectl_run("create", "namespace", WORKER_USER_NS, check=False)
    kube.kubectl_run("-n", WORKER_USER_NS, "create", "serviceaccount", WORKER_SA, check=False)
    kube.kubectl_run(
        "create",
        "clusterrolebinding",
        f"{WORKER_USER_NS}-{WORKER_SA}",
        "--clusterrole=cluster-admin",
        f"--serviceaccount={WORKER_USER_NS}:{WORKER_SA}",
        check=False,
    )
    token = kube.kubectl_run("-n", WORKER_USER_NS, "create", "token", WORKER_SA, "--duration=3h").stdout.strip()
    lab = yaml.safe_load(kube.kubeconfig.read_text())
    cluster = dict(lab["clusters"][0]["cluster"])
    if "certificate-authority" in cluster:
        ca = Path(cluster.pop("certificate-authority")).read_bytes()
        cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "lab", "cluster": cluster}],
        "users": [{"name": WORKER_SA, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": "lab", "user": WORKER_SA}}],
        "current-context": context,
    }
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def fault_lab(k8s_lab: KubeLab, openstack_lab: OpenStackLab) -> Iterator[DemoLab]:
    assert openstack_lab.mariadb
    openstack_lab.mariadb.general_log(True)
    lab = DemoLab(k8s_lab, openstack_lab, deploy="objects")  # the fault plan rolls raw objects
    try:
        yield lab
    finally:
        lab.close()
        openstack_lab.mariadb.general_log(False)


@pytest_asyncio.fixture(scope="session")
async def faults(fault_lab: DemoLab, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Faults]:
    workdir = ROOT / ".lab" / "faults"
    workdir.mkdir(parents=True, exist_ok=True)
    db = tmp_path_factory.mktemp("temporal") / "temporal.db"
    server = TemporalServer(free_port(), db)
    await server.start()
    kubeconfig = worker_kubeconfig(fault_lab.kube, fault_lab.context, workdir / "worker-kubeconfig.yaml")
    try:
        yield Faults(fault_lab, server, kubeconfig, workdir)
    finally:
        await server.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per fault case (README's "Fault injection" table is filled from these)."""
    if SUMMARIES:
        terminalreporter.section("fault injection")
        for line in SUMMARIES:
            terminalreporter.write_line(line)
