"""Re-record the committed workflow histories that the replay test checks.

    .venv/bin/python -m tests.histories.record

Run it only when a workflow change is *meant* to be incompatible (and then version the change
with ``workflow.patched()`` instead, if upgrades may be running). Each scenario writes the
parent's and each child's history as JSON beside this file.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from model import errors, io, visibility
from tests.conftest import temporal_binary
from tests.standins import Script
from tests.workflows.helpers import make_plan, running, service, start

HERE = Path(__file__).parent


def scenarios() -> dict[str, Script]:
    happy = Script()
    rolled_back = Script()
    rolled_back.answers["tempest.run"] = io.TempestResult(status="fail", failed=2, failing_tests=["a", "b"])
    offline = Script()
    offline.fail["migration.db_sync:offline"] = errors.MIGRATION_FAILED
    return {"happy": happy, "tempest-rollback": rolled_back, "offline-rollback": offline}


async def main() -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        search_attributes=visibility.ALL,
    )
    try:
        for name, script in scenarios().items():
            services = [service("keystone"), service("placement", migration={"mode": "offline"}, checks=[])]
            plan = make_plan(services)
            async with running(env.client, script) as tq:
                handle = await start(env.client, plan, tq)
                try:
                    await handle.result()
                except Exception:
                    pass
                for wf_id in [plan.workflow_id] + [f"{plan.workflow_id}/{s.name}" for s in plan.services]:
                    h = env.client.get_workflow_handle(wf_id)
                    try:
                        history = await h.fetch_history()
                    except Exception:
                        continue
                    out = HERE / f"{name}--{wf_id.split('/', 2)[-1] if wf_id.count('/') > 1 else 'upgrade'}.json"
                    out.write_text(history.to_json())
                    print("wrote", out.name)
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
