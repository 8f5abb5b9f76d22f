"""pytest fixtures for the OpenStack lab (register with `pytest_plugins = ["lab.openstack.pytest_plugin"]`).

One lab per test session, in its own directory (`.lab/openstack-pytest`) so a developer's
`stackhop lab openstack up` is never touched: MariaDB + Keystone 28.1.0 + a tempest workspace.
The bootstrapped schema is dumped once; `keystone_at` resets to it in ~1 s (plus the release's
start-up) so every upgrade test starts from the same database.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lab.openstack import paths, tempest_ws
from lab.openstack.manager import ADMIN_CLOUD, DEFAULT_RELEASE, OpenStackLab


def pytest_configure(config: pytest.Config) -> None:
    # openstacksdk 4.22 warns about its own internals on every request (RemovedInSDK50Warning for
    # proxy/resource internals, RemovedInSDK60Warning for an unset InfluxDB section): not our code.
    config.addinivalue_line("filterwarnings", "ignore::openstack.warnings.RemovedInSDK50Warning")
    config.addinivalue_line("filterwarnings", "ignore::openstack.warnings.RemovedInSDK60Warning")


def lab_base() -> Path:
    return paths.lab_dir().parent / "openstack-pytest"


@pytest.fixture(scope="session")
def openstack_lab() -> Iterator[OpenStackLab]:
    """A fresh lab for the session (leftovers of an interrupted run are stopped and wiped)."""
    base = lab_base()
    OpenStackLab.load(base).down(purge=True)
    lab = OpenStackLab(base=base)
    lab.up(DEFAULT_RELEASE)
    lab.save_baseline()
    previous = os.environ.get("OS_CLIENT_CONFIG_FILE")
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(lab.clouds_yaml)
    try:
        yield lab
    finally:
        if previous is None:
            os.environ.pop("OS_CLIENT_CONFIG_FILE", None)
        else:
            os.environ["OS_CLIENT_CONFIG_FILE"] = previous
        lab.down()


@pytest.fixture
def keystone_at(openstack_lab: OpenStackLab) -> Callable[[str], OpenStackLab]:
    """Reset the keystone schema to the bootstrapped baseline and serve the given release."""

    def reset(release: str = DEFAULT_RELEASE) -> OpenStackLab:
        openstack_lab.reset(release)
        return openstack_lab

    return reset


@pytest.fixture
def lab_running(openstack_lab: OpenStackLab) -> OpenStackLab:
    """The lab with *some* keystone serving (restarted with the default release if a test stopped it)."""
    status = openstack_lab.status()
    if not status["keystone"]["up"]:
        openstack_lab.serve(DEFAULT_RELEASE)
    return openstack_lab


@pytest.fixture(scope="session")
def lab_cloud() -> str:
    return ADMIN_CLOUD


@pytest.fixture(scope="session")
def tempest_command() -> list[str]:
    return [str(tempest_ws.tempest_bin())]
