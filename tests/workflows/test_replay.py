"""Committed histories must replay on the current workflow code: a change that would break running
upgrades fails here. What to do then is the versioning policy in workflows/__init__.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from model.codec import data_converter
from tests.histories.record import HERE, SCENARIOS
from worker import WORKFLOWS

HISTORIES = sorted(HERE.glob("*.json"))


def test_every_path_has_committed_histories() -> None:
    recorded = {p.name.split("--")[0] for p in HISTORIES}
    assert recorded == {sc.name for sc in SCENARIOS}, "re-record: .venv/bin/python -m tests.histories.record"
    for sc in SCENARIOS:
        assert (HERE / f"{sc.name}--{'canary' if sc.canary else 'upgrade'}.json").exists(), sc.name
        assert (HERE / f"{sc.name}--{sc.services[0]['name']}.json").exists(), sc.name


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays(path: Path) -> None:
    text = path.read_text()  # noqa: ASYNC240 — a small committed file, read once per test
    started = json.loads(text)["events"][0]["workflowExecutionStartedEventAttributes"]
    history = WorkflowHistory.from_json(started.get("workflowId", path.stem), text)
    replayer = Replayer(workflows=list(WORKFLOWS), data_converter=data_converter())
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
