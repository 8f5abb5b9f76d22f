"""The committed Fleet history (tests/histories/record_fleet.py) replays on the current workflow code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from model.codec import data_converter
from tests.histories.record_fleet import HERE
from worker import WORKFLOWS

HISTORIES = sorted(HERE.glob("*.json"))


def test_the_fleet_history_is_committed() -> None:
    assert [p.name for p in HISTORIES] == ["fleet--fleet.json"], (
        "record: .venv/bin/python -m tests.histories.record_fleet"
    )


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_fleet_history_replays(path: Path) -> None:
    text = path.read_text()  # noqa: ASYNC240 — a small committed file, read once per test
    started = json.loads(text)["events"][0]["workflowExecutionStartedEventAttributes"]
    history = WorkflowHistory.from_json(started.get("workflowId", path.stem), text)
    replayer = Replayer(workflows=list(WORKFLOWS), data_converter=data_converter())
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
