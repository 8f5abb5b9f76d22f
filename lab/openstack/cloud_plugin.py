"""pytest fixtures for the cloud lab (register with ``pytest_plugins = ["lab.openstack.cloud_plugin"]``).

One cloud per test session, in its own directory (``.lab/cloud-pytest``, a developer's
``stackhop lab openstack up --services`` is never touched), in direct mode (no Kubernetes): every
service at 2025.2. Its databases are dumped once after set-up; ``cloud_at`` puts them back and
restarts every pod at 2025.2, so each recipe test starts from the same cloud.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from lab.openstack.cloud import SERVICES, CloudLab


@pytest.fixture(scope="session")
def cloud() -> Iterator[CloudLab]:
    base = CloudLab().base.parent / "cloud-pytest"
    CloudLab.load(base).down(purge=True)
    lab = CloudLab(base=base)
    services = os.environ.get("STACKHOP_CLOUD_SERVICES", ",".join(SERVICES)).split(",")
    try:
        lab.up(services)
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
