"""The Fleet workflow's input, status and report (workflows/fleet.py), beside model/io.py.

Public names: :class:`FleetInput` ``(fleet, fleet_file, requested_by)``, :class:`FleetStatus` (the
``status`` query), :class:`FleetReport` (the result; also the first detail of the error a fleet that
did not succeed ends with), :class:`CloudReport` (one line of it per cloud).
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field

from model.fleet import FleetPlan
from model.io_base import Msg

# How one cloud of a fleet went. busy: its upgrade workflow was already running (someone else's), so
# the fleet did not start it; refused: its plan's images are not the canary's; skipped: never
# started (the fleet stopped, was aborted, or its canary failed).
CloudOutcome = Literal["succeeded", "failed", "rolled-back", "aborted", "busy", "refused", "skipped"]
CloudState = Literal[
    "pending", "running", "succeeded", "failed", "rolled-back", "aborted", "busy", "refused", "skipped"
]
FleetOutcome = Literal["succeeded", "partial", "failed", "aborted"]
# The outcomes a wave's max_failed counts: the clouds this fleet tried and could not upgrade. busy is
# not one of them (workflows/fleet.py says why).
FAILURES: Final = frozenset({"failed", "rolled-back", "aborted", "refused"})
CANARY: Final = "canary"  # the wave name of the canary clouds in statuses and reports


class FleetInput(Msg):
    fleet: FleetPlan  # as load_fleet returns it: every cloud's upgrade_plan set
    fleet_file: str = ""
    requested_by: str = ""


class CloudStatus(Msg):
    cloud: str
    wave: str  # CANARY or the wave's name
    state: CloudState = "pending"
    workflow_id: str = ""  # its Upgrade workflow (upgrade/<plan's cloud.name>)
    task_queue: str = ""
    release_from: str = ""
    release_to: str = ""
    message: str = ""


class WaveStatus(Msg):
    name: str
    number: int  # 1-based; the canary is 0
    clouds: list[str] = Field(default_factory=list)
    approval: bool = False
    state: Literal["pending", "waiting", "running", "done", "stopped", "skipped"] = "pending"
    allowed_failures: int = 0
    failures: int = 0


class FleetStatus(Msg):
    name: str
    phase: str  # canary | wave <name> | done
    paused: bool = False
    aborting: bool = False
    decision: str = ""  # the decision waiting (fleet/wave#2), if any
    waves: list[WaveStatus] = Field(default_factory=list)
    clouds: list[CloudStatus] = Field(default_factory=list)
    image_set: dict[str, list[str]] = Field(default_factory=dict)  # promoted by the canary ({} until then)
    outcome: FleetOutcome | None = None
    message: str = ""


class CloudReport(Msg):
    cloud: str
    wave: str
    outcome: CloudOutcome
    workflow_id: str = ""
    release_before: str = ""
    release_after: str = ""  # "": not known (a failed upgrade, a busy cloud): see its own report
    message: str = ""


class FleetReport(Msg):
    name: str
    outcome: FleetOutcome
    message: str = ""
    release_from: str = ""
    release_to: str = ""
    image_set: dict[str, list[str]] = Field(default_factory=dict)
    clouds: list[CloudReport] = Field(default_factory=list)
    started_at: str = ""
    ended_at: str = ""


def wave_decision_id(number: int) -> str:
    """A wave's approval in the decision grammar of model.io.decision_id: ``fleet/wave#2``."""
    return f"fleet/wave#{number}"
