"""Rollback by phase, as data: steps, recipes, and the one rule that decides the way back.

Why data: every service has its own steps, and the safe way back depends only on which of them ran.
Each step says whether the old release still serves while it runs and after it completed, what
undoes it and how it uses the service's databases. :func:`decide` reads that and what happened (the
steps that completed, the step that failed part-way) and returns the one rollback that is safe:

* before any schema change, or after a *complete* expand/migrate (the old release serves on the
  expanded schema by design): previous images only; the expanded schema stays, nothing is lost;
* an expand/migrate that failed part-way (schema in an unknown state), or an offline migration that
  started (the old release cannot run on what it left): restore the snapshot, then images;
* once the point of no return started (a contract; nova's online data migrations): no rollback,
  fix forward.

A :class:`Recipe` is the steps of one migration mode; a :class:`ServiceRecipe` (model/recipes/<name>.py)
is one OpenStack service's: the modes it supports (each a Recipe), its databases, the workloads of
each release, the commands of each migration phase, its downtime and whether a lab test ran it.

Pure and without I/O, so the workflow (workflows/rollback.py), the migration activity and the tests
use the same rules.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Literal

# Tables the migration tool itself writes (alembic's revision row; sqlalchemy-migrate's before it):
# a change of their rows is the migration's, never a writer's, so it never asks for an approval.
MIGRATION_BOOKKEEPING = frozenset({"alembic_version", "migrate_version"})

Undo = Literal["images", "restore", "scale", "none"]
"""What undoes a step: the previous images; a restore of the snapshot; scaling the quiesced
workloads back; nothing (the step changed nothing the old release cannot live with)."""
DbUse = Literal["none", "read", "write"]
Mode = Literal["expand-contract", "offline", "none"]
RollbackKind = Literal["none", "images", "restore", "forward-fix"]
Proven = Literal["run", "not run"]
"""run: a lab test (tests/cloud) runs every step of the recipe against the real service; not run:
the steps follow the upstream docs only, and a plan must accept that explicitly."""


@dataclass(frozen=True)
class Step:
    name: str
    old_serves_during: bool  # the old release still answers while the step runs
    old_serves_after: bool  # ... and on what the step leaves once it completed
    undo: Undo  # what undoes the step (needed when it failed part-way, or completed and the old release cannot serve)
    db: DbUse = "none"  # how it uses every database of the service
    reverts: str = ""  # the step whose effect this one reverses (unquiesce → quiesce)
    phase: str = ""  # the migration activity's phase it runs (its commands: ServiceRecipe.commands[phase])
    # once it started, the way back is forward: what it changed cannot be undone by the rollback's means
    # (the data plane: replaced nodes keep the new release, and the old control plane cannot drive them)
    forward_only: bool = False


GATE = Step("gate", True, True, "none")
# `<service>-status upgrade check` of the *target* release, before anything changes: it reads the
# databases and the deployment's state and says whether the new release can run on them.
STATUS = Step("status", True, True, "none", "read")
SNAPSHOT = Step("snapshot", True, True, "none", "read")
VERIFY = Step("verify", True, True, "none", "read")
CHECK = Step("check", True, True, "none", "read", phase="check")
EXPAND = Step("expand", True, True, "restore", "write", phase="expand")  # additive: the old release keeps serving
MIGRATE = Step("migrate", True, True, "restore", "write", phase="migrate")
CONTRACT = Step("contract", False, False, "none", "write", phase="contract")  # the point of no return
QUIESCE = Step("quiesce", False, False, "scale")
OFFLINE = Step("offline", False, False, "restore", "write", phase="offline")
ROLL = Step("roll", True, False, "images")
ROLLOUT = Step("rollout", False, False, "none")
UNQUIESCE = Step("unquiesce", False, False, "none", reverts="quiesce")
VALIDATE = Step("validate", False, False, "none")
POSTCHECK = Step("postcheck", False, False, "none")
# Online data migrations, once every workload of the service runs the new release: rerun while the
# tool says there is more to do. They rewrite rows into what only the new release reads, and the
# next upgrade needs them done: the point of no return of the services that have them.
ONLINE = Step("online", False, False, "none", "write", phase="online")
# The restart that lifts an RPC pin (nova's [upgrade_levels] compute=auto): the new release's
# services started while old computes were registered and pinned their RPC version to those; once
# every workload runs the new release a restart recomputes the pin. The old release is gone by then
# (old_serves_*: False); previous images undo it (an old service pins itself again at start).
UNPIN = Step("unpin", False, False, "images")
# Every API server stopped for a contract with offline migrations (neutron's has_offline_migrations):
# the step runs only when the check said so, else it is recorded as skipped.
STOP_API = Step("stop-api", False, False, "scale")
START_API = Step("start-api", False, False, "none", reverts="stop-api")
# The data plane node batch by node batch (model/dataplane.py, workflows/dataplane.py), once the control
# plane rolled out: only for a service whose plan has a data_plane block. A replaced node runs the new
# release (nova: under the RPC pin) and stays there: from its start, failures are fixed forward.
DATAPLANE = Step("dataplane", False, False, "none", forward_only=True)


@dataclass(frozen=True)
class Recipe:
    mode: Mode
    steps: tuple[Step, ...]
    point_of_no_return: str | None  # once this step starts, the old release cannot come back

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.steps]


Commands = tuple[tuple[str, ...], ...]  # argument lists appended to the tool, run in order


@dataclass(frozen=True)
class ServiceRecipe:
    """How one OpenStack service is upgraded: one place for its steps and the commands they run."""

    service: str
    modes: Mapping[Mode, Recipe]  # the modes it supports; the first is the one it recommends
    mode_reason: str  # why the recommended mode
    databases: tuple[str, ...]  # its schemas (default names): snapshotted, verified and restored together
    workloads: Mapping[str, tuple[str, ...]]  # release -> the workloads (programs) that exist in it
    tool: tuple[str, ...]  # its manage tool
    commands: Mapping[str, Commands]  # migration phase -> what runs (the activity reads this)
    downtime: str  # what clients see, in words
    proven: Proven
    status: tuple[str, ...] = ()  # `<service>-status upgrade check`, run with the target release
    check_states: Mapping[int, str] = field(default_factory=dict)  # check exit code -> state
    # phases rerun while they exit 1 (online data migrations: 1 = a batch ran, maybe more to do)
    repeat_phases: frozenset[str] = frozenset()
    # the checks of its status command that look at what the online data migrations fix (a result
    # other than Success: they are unfinished); none: the cloud cannot be asked without running them
    online_checks: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # what an operator must know (config the steps rely on, what is not covered)
    # The data plane (model/dataplane.py): the service record of each of its nodes (nova-compute), the
    # version that record carries per release (nova's SERVICE_VERSION: a replaced node is upgraded once
    # its record reaches the target's), and the label selector of its per-node DaemonSets in
    # openstack-helm (the per-node override DaemonSets carry the same labels).
    data_plane_binary: str = ""
    service_versions: Mapping[str, int] = field(default_factory=dict)
    data_plane_selector: str = ""

    @property
    def mode(self) -> Mode:
        return next(iter(self.modes))

    def recipe(self, mode: Mode) -> Recipe:
        return self.modes[mode]

    def point_of_no_return(self, mode: Mode | None = None) -> str | None:
        return self.modes[mode or self.mode].point_of_no_return


def none_recipe(*steps: Step) -> Recipe:
    """No schema change (an image update within a release): the steps before and after the roll."""
    return Recipe("none", (GATE, *steps, SNAPSHOT, VERIFY, ROLL, ROLLOUT, DATAPLANE, VALIDATE), point_of_no_return=None)


def sync_then_online_modes(*after_roll: Step) -> dict[Mode, Recipe]:
    """The modes of a service whose schema has one additive ``db sync`` and no contract (placement,
    nova, cinder): the sync stopped (offline) or while the old release serves (expand-contract), then
    ``after_roll`` (nova's unpin restart) and the online data migrations, the point of no return."""
    return {
        "offline": Recipe(
            "offline",
            (
                *(GATE, STATUS, QUIESCE, SNAPSHOT, VERIFY, OFFLINE, ROLL, ROLLOUT, UNQUIESCE, DATAPLANE),
                *(*after_roll, VALIDATE, ONLINE, POSTCHECK),
            ),
            point_of_no_return="online",
        ),
        "expand-contract": Recipe(
            "expand-contract",
            (
                GATE,
                STATUS,
                SNAPSHOT,
                VERIFY,
                EXPAND,
                ROLL,
                ROLLOUT,
                DATAPLANE,
                *after_roll,
                VALIDATE,
                ONLINE,
                POSTCHECK,
            ),
            point_of_no_return="online",
        ),
        "none": none_recipe(STATUS),
    }


# The recipes of a service that has none of its own (by migration mode): what every service ran
# before the per-service recipes, and what any other service still runs.
GENERIC: dict[Mode, Recipe] = {
    "expand-contract": Recipe(
        "expand-contract",
        (GATE, SNAPSHOT, VERIFY, CHECK, EXPAND, MIGRATE, ROLL, ROLLOUT, VALIDATE, CONTRACT, POSTCHECK),
        point_of_no_return="contract",
    ),
    # Quiesced first, so the snapshot holds every write: a restore then loses nothing.
    "offline": Recipe(
        "offline",
        (GATE, QUIESCE, SNAPSHOT, VERIFY, OFFLINE, ROLL, ROLLOUT, UNQUIESCE, VALIDATE),
        point_of_no_return=None,
    ),
    "none": Recipe("none", (GATE, SNAPSHOT, VERIFY, ROLL, ROLLOUT, VALIDATE), point_of_no_return=None),
}


@dataclass(frozen=True)
class Rollback:
    """The rollback :func:`decide` chose. ``images``: put the previous images back; ``scale_back``:
    bring quiesced workloads back; a restore quiesces, restores, then does both."""

    kind: RollbackKind
    images: bool
    scale_back: bool
    reason: str


def decide(recipe: Recipe, completed: Collection[str], failed: str | None) -> Rollback:
    """The rollback for a service whose ``completed`` steps ran to the end and whose ``failed`` step
    (None: it failed or was aborted between steps) stopped part-way. Steps not in the recipe (a
    compensation's own records) are ignored."""
    ponr = recipe.point_of_no_return
    if ponr is not None and (ponr in completed or failed == ponr):
        return Rollback("forward-fix", False, False, f"the {ponr} started: the old release cannot run; fix forward")
    for s in recipe.steps:
        if s.forward_only and (s.name in completed or failed == s.name):
            return Rollback("forward-fix", False, False, f"the {s.name} started: it is not undone; fix forward")
    done = [s for s in recipe.steps if s.name in completed]
    reverted = {s.reverts for s in done if s.reverts}
    needs: dict[Undo, str] = {}
    for s in done:
        if not s.old_serves_after and s.undo != "none" and s.name not in reverted:
            needs.setdefault(s.undo, f"{s.name} completed")
    part = recipe.step(failed) if failed else None
    if part is not None and part.undo != "none":
        needs.setdefault(part.undo, f"{part.name} failed part-way")
    if "restore" in needs:
        why = needs["restore"]
        state = "the schema is in an unknown state" if part is not None and part.undo == "restore" else ""
        state = state or "the old release cannot run on the migrated schema"
        return Rollback("restore", "images" in needs, True, f"{why}: {state}; only the snapshot is a way back")
    changed = [s.name for s in done if s.db == "write"]
    if "images" in needs:
        why = (
            f"{' and '.join(changed)} completed: the old release serves on the expanded schema"
            if changed
            else "no schema change yet"
        )
        return Rollback("images", True, "scale" in needs, f"{why}; previous images only, nothing is lost")
    return Rollback("none", False, "scale" in needs, "nothing the old release cannot serve on was changed")
