"""`stackhop setup` on a fresh Temporal dev server started WITHOUT stackhop's search attributes:
`start` is refused and points at `setup`; `setup` registers them (and is idempotent); then `start`
works. A namespace where one attribute has another type is refused, naming it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest_asyncio
from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from cliapp.setup import commands
from model import visibility
from tests.cli.conftest import Cli
from tests.conftest import start_dev_server
from tests.waiting import eventually


@pytest_asyncio.fixture
async def bare_env() -> AsyncIterator[WorkflowEnvironment]:
    """A dev server of its own, with no search attributes registered."""
    env = await start_dev_server(search_attributes=False)
    try:
        yield env
    finally:
        await env.shutdown()


async def test_setup_registers_the_search_attributes_then_start_works(
    bare_env: WorkflowEnvironment, write_plan: Callable[..., tuple[Path, str]]
) -> None:
    cli = Cli(bare_env.client.service_client.config.target_host)
    plan, wf_id = write_plan()

    res = await cli("start", str(plan), tq="nobody")
    assert res.exit_code == 2, res.output
    assert "run `stackhop setup` once" in res.stderr

    res = await cli("setup")
    assert res.exit_code == 0, res.output
    for key in visibility.ALL:
        assert f"{key.name} (" in res.stdout and "): registered" in res.stdout
    assert "namespace default is ready" in res.stdout

    res = await cli("setup")  # idempotent
    assert res.exit_code == 0, res.output
    assert res.stdout.count("already registered") == len(visibility.ALL)

    async def started() -> bool:  # a fresh attribute may take a moment to be usable
        res = await cli("start", str(plan), tq="nobody")
        assert res.exit_code in (0, 2), res.output
        return res.exit_code == 0

    assert await eventually(started, within=30, what="start after setup") is True
    await bare_env.client.get_workflow_handle(wf_id).terminate("test over: no worker runs it")


async def test_setup_names_an_attribute_of_the_wrong_type(bare_env: WorkflowEnvironment) -> None:
    client = bare_env.client
    await client.workflow_service.register_namespace(
        RegisterNamespaceRequest(namespace="wrong-types", workflow_execution_retention_period=Duration(seconds=86400))
    )

    async def add_int_phase() -> bool:  # a new namespace takes a moment to be known to every service
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(
                    namespace="wrong-types",
                    search_attributes={visibility.PHASE.name: IndexedValueType.INDEXED_VALUE_TYPE_INT},
                )
            )
        except RPCError as e:
            if "not found" in e.message.lower():
                return False
            raise
        return True

    assert await eventually(add_int_phase, within=30, what="namespace wrong-types usable") is True
    cli = Cli(client.service_client.config.target_host)
    res = await cli("setup", TEMPORAL_NAMESPACE="wrong-types")
    assert res.exit_code == 2, res.output
    assert "StackhopPhase is registered as Int, stackhop needs Keyword" in res.stderr


def test_the_commands_to_run_by_hand() -> None:
    assert commands("prod") == [
        "temporal operator search-attribute create --namespace prod --name StackhopCloud --type Keyword",
        "temporal operator search-attribute create --namespace prod --name StackhopRelease --type Keyword",
        "temporal operator search-attribute create --namespace prod --name StackhopPhase --type Keyword",
        "temporal operator search-attribute create --namespace prod --name StackhopService --type KeywordList",
        "temporal operator search-attribute create --namespace prod --name StackhopFleet --type Keyword",
    ]
