"""pytest fixtures for the cloud lab (register with ``pytest_plugins = ["lab.openstack.cloud_plugin"]``).

One cloud per test session, in its own directory (``.lab/cloud-pytest``, a developer's
``stackhop lab openstack up --services`` is never touched), in direct mode (no Kubernetes): every
service at 2025.2, nova-compute on two hosts (``DIRECT_HOSTS``: servers can be live- and
cold-migrated between them; each its own availability zone, az-1 and az-2). Its databases are dumped
once after set-up; ``cloud_at`` puts them back and
restarts every pod at 2025.2, so each recipe test starts from the same cloud.

``k8s_cloud``: the same cloud on the session's Kubernetes lab (``KubeCloud``: every service the Helm
release of its lab chart at 2025.2.0, the cloud controller playing the kubelet), one per session in
``.lab/cloud-k8s-pytest``, shared by the modules that use it (tests/cloud/test_cloud_k8s.py, then
test_cloud_upgrade.py); its start figures go to ``<cloud>/measurements.json`` (``measure``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.cloud_k8s import KubeCloud
from lab.k8s.cluster import KubeLab
from lab.openstack import paths
from lab.openstack.cloud import SERVICES, CloudLab
from lab.pytest_lifetimes import stop_after_last_user, stop_now

#: the direct cloud's compute hosts: two, so a server has somewhere to move (az-1 and az-2, one each)
DIRECT_HOSTS = ("lab-node-0", "lab-node-1")


@pytest.fixture(scope="session")
def cloud() -> Iterator[CloudLab]:
    base = CloudLab().base.parent / "cloud-pytest"
    CloudLab.load(base).down(purge=True)
    lab = CloudLab(base=base)
    services = os.environ.get("STACKHOP_CLOUD_SERVICES", ",".join(SERVICES)).split(",")
    try:
        lab.up(services, hosts=DIRECT_HOSTS)
        lab.save_baseline()
        previous = os.environ.get("OS_CLIENT_CONFIG_FILE")
        os.environ["OS_CLIENT_CONFIG_FILE"] = str(lab.clouds_yaml)
        yield lab
    finally:
        if previous is None:
            os.environ.pop("OS_CLIENT_CONFIG_FILE", None)
        else:
            os.environ["OS_CLIENT_CONFIG_FILE"] = previous
        lab.down()


@pytest.fixture
def cloud_at(cloud: CloudLab) -> Callable[..., CloudLab]:
    """``cloud_at("nova", "placement")``: those services' databases back to the baseline and their
    pods restarted at 2025.2 (no names: every service)."""

    def reset(*services: str) -> CloudLab:
        cloud.reset(services or None)
        return cloud

    return reset


def k8s_cloud_base() -> Path:
    return paths.lab_dir().parent / "cloud-k8s-pytest"


@pytest.fixture(scope="session")
def k8s_cloud(request: pytest.FixtureRequest, k8s_lab: KubeLab) -> Iterator[KubeCloud]:
    """Stopped after the session's last test on it (lab/pytest_lifetimes.py; tests/cloud/conftest.py
    runs those tests first), so it never idles beside the direct cloud."""
    cloud = KubeCloud(k8s_lab, k8s_cloud_base())
    cloud.down(purge=True)  # leftovers of an interrupted session
    stop_after_last_user(request, cloud.down)
    try:
        timings = cloud.up(SERVICES)
        measure(cloud, up_s={k: round(v, 1) for k, v in timings.items()})
        yield cloud
    finally:
        stop_now(request)


def measure(cloud: KubeCloud, **figures: Any) -> None:
    """Figures for the lab README, kept in <cloud>/measurements.json (start, memory, rolling update)."""
    path = cloud.base / "measurements.json"
    known = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**known, **figures}, indent=2))
