"""Kill points and the event log the fault worker writes: what the harness and the worker share.

A kill point names a step (a label the interceptor derives from the activity and its input, so the
four db_sync phases and the two scale directions are told apart), a moment (``start``: the activity
was handed to the worker, before its function runs; ``during``: a helm command the activity started
is running; ``complete``: its function returned, before its result reached the server) and an
occurrence of that moment in the run, retries included. The worker appends every moment to one
JSON-lines file per run (fsync'd before a kill), so the harness knows which points fired and can
wait for a step to start.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from model import io

When = Literal["start", "during", "complete"]
PLAN_ENV = "STACKHOP_FAULT_PLAN"  # JSON file: {"events": path, "points": [KillPoint, ...]}

# activity name -> step label (db_sync and scale are refined from their input, see label())
LABELS = {
    io.DB_SNAPSHOT: "snapshot",
    io.DB_VERIFY: "verify",
    io.DB_RESTORE: "restore",
    io.DB_INSPECT: "inspect",
    io.K8S_READ_IMAGES: "read-images",
    io.K8S_SET_IMAGES: "roll",
    io.K8S_WAIT_ROLLOUT: "rollout",
    io.K8S_UNDO_IMAGES: "undo-images",
    io.CHECKS_RUN: "validate",
    io.TEMPEST_RUN: "tempest",
    io.HELM_STATUS: "helm-status",
    io.HELM_ROLLBACK: "helm-rollback",
}


@dataclass(frozen=True)
class KillPoint:
    step: str
    when: When
    occurrence: int = 1

    def __str__(self) -> str:
        return f"{self.step}:{self.when}#{self.occurrence}"


@dataclass(frozen=True)
class Event:
    step: str
    when: When
    pid: int
    attempt: int
    killed: bool = False
    at: float = 0.0  # time.time() when logged


def label(activity_type: str, args: Sequence[Any], done: list[Event]) -> str:
    """The step an activity execution belongs to. ``done``: this run's events so far (the workload
    read and the endpoint check before anything else are the pre-flight; an endpoint check after
    the contract is the postcheck; a rollout wait after a restore is the rollback's)."""
    arg = args[0] if args else None
    if isinstance(arg, io.MigrateInput):
        return arg.phase
    if isinstance(arg, io.ScaleInput):
        return "unquiesce" if arg.restore or arg.replicas else "quiesce"
    if isinstance(arg, io.HelmUpgradeInput):
        return {"roll": "helm-upgrade", "quiesce": "quiesce", "unquiesce": "unquiesce", "restart": "unpin"}[arg.purpose]
    if isinstance(arg, io.CheckInput) and arg.stage == "pre":  # the recipe's status check, or the pre-flight's
        return "status" if arg.check.kind == "upgrade-status" else "preflight"
    step = LABELS.get(activity_type, activity_type)
    if step == "read-images" and all(e.step == "preflight" for e in done):
        return "preflight"
    if step == "rollout" and any(e.step in ("restore", "unquiesce") for e in done):
        return "rollout-back"  # the restore path's last wait: the old release serves again
    if step == "validate" and any(e.step == "contract" and e.when == "complete" for e in done):
        return "postcheck"
    return step


def read_events(path: Path) -> list[Event]:
    if not path.exists():
        return []
    return [Event(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def append_event(path: Path, event: Event) -> None:
    with path.open("a") as f:
        f.write(json.dumps(asdict(event)) + "\n")
        f.flush()
        os.fsync(f.fileno())


def fired(points: list[KillPoint], events: list[Event]) -> list[KillPoint]:
    """The points whose kill happened (the worker logs the event, then dies)."""
    return [p for p in points if any(e.killed and (e.step, e.when) == (p.step, p.when) for e in events)]


def due(point: KillPoint, step: str, when: When, events: list[Event]) -> bool:
    """Does this execution (its own event not yet logged) hit the point?"""
    seen = sum(1 for e in events if (e.step, e.when) == (step, when))
    return (point.step, point.when) == (step, when) and seen + 1 == point.occurrence


def write_plan(path: Path, events: Path, points: Sequence[KillPoint], holds: Sequence[KillPoint] = ()) -> None:
    doc = {
        "events": str(events),
        "points": [asdict(p) for p in points],
        "holds": [asdict(h) for h in holds],
        "at": time.time(),
    }
    path.write_text(json.dumps(doc))


def read_plan(path: Path) -> tuple[Path, list[KillPoint], list[KillPoint]]:
    doc = json.loads(path.read_text())
    return Path(doc["events"]), [KillPoint(**p) for p in doc["points"]], [KillPoint(**h) for h in doc["holds"]]


def release_file(events: Path, hold: KillPoint) -> Path:
    """A held moment waits (heartbeating) until the harness creates this file: the harness has
    begun its disruption (e.g. MariaDB is shutting down), so it lands inside the step."""
    return events.with_name(f"{events.stem}.release-{hold.step}-{hold.when}-{hold.occurrence}")
