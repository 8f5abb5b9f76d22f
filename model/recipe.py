"""Rollback by phase, as data: the steps of each migration mode and what undoes each of them.

Why data: every service has its own steps, and the safe way back depends only on which of them ran.
Each step says whether the old release still serves while it runs and after it completed, what
undoes it and how it uses the service's databases. :func:`decide` reads that and what happened (the
steps that completed, the step that failed part-way) and returns the one rollback that is safe:

* before any schema change, or after a *complete* expand/migrate (the old release serves on the
  expanded schema by design): previous images only; the expanded schema stays, nothing is lost;
* an expand/migrate that failed part-way (schema in an unknown state), or an offline migration that
  started (the old release cannot run on what it left): restore the snapshot, then images;
* once the point of no return started (the contract): no rollback, fix forward.

Pure and without I/O, so the workflow (workflows/rollback.py) and the tests use the same rules.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from model.plan import Database, Service

# Tables the migration tool itself writes (alembic's revision row; sqlalchemy-migrate's before it):
# a change of their rows is the migration's, never a writer's, so it never asks for an approval.
MIGRATION_BOOKKEEPING = frozenset({"alembic_version", "migrate_version"})

Undo = Literal["images", "restore", "scale", "none"]
"""What undoes a step: the previous images; a restore of the snapshot; scaling the quiesced
workloads back; nothing (the step changed nothing the old release cannot live with)."""
DbUse = Literal["none", "read", "write"]
Mode = Literal["expand-contract", "offline", "none"]
RollbackKind = Literal["none", "images", "restore", "forward-fix"]


@dataclass(frozen=True)
class Step:
    name: str
    old_serves_during: bool  # the old release still answers while the step runs
    old_serves_after: bool  # ... and on what the step leaves once it completed
    undo: Undo  # what undoes the step (needed when it failed part-way, or completed and the old release cannot serve)
    db: DbUse = "none"  # how it uses every database of the service
    reverts: str = ""  # the step whose effect this one reverses (unquiesce → quiesce)


GATE = Step("gate", True, True, "none")
SNAPSHOT = Step("snapshot", True, True, "none", "read")
VERIFY = Step("verify", True, True, "none", "read")
CHECK = Step("check", True, True, "none", "read")
EXPAND = Step("expand", True, True, "restore", "write")  # additive: the old release keeps serving
MIGRATE = Step("migrate", True, True, "restore", "write")
CONTRACT = Step("contract", False, False, "none", "write")  # the point of no return
QUIESCE = Step("quiesce", False, False, "scale")
OFFLINE = Step("offline", False, False, "restore", "write")
ROLL = Step("roll", True, False, "images")
ROLLOUT = Step("rollout", False, False, "none")
UNQUIESCE = Step("unquiesce", False, False, "none", reverts="quiesce")
VALIDATE = Step("validate", False, False, "none")
POSTCHECK = Step("postcheck", False, False, "none")


@dataclass(frozen=True)
class Recipe:
    mode: Mode
    steps: tuple[Step, ...]
    point_of_no_return: str | None  # once this step starts, the old release cannot come back

    def step(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)


RECIPES: dict[Mode, Recipe] = {
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


def databases(svc: Service) -> list[Database]:
    """The databases of a service (a list: nova has three; the plan names one per service today)."""
    return [svc.database] if svc.database else []


def recipe_for(svc: Service) -> Recipe:
    return RECIPES[svc.migration.mode]


def service_steps(svc: Service) -> list[str]:
    """The steps a service runs, in order: its recipe minus what does not apply to it."""
    has_db = bool(databases(svc))
    out = []
    for s in recipe_for(svc).steps:
        # the snapshot needs the plan's database; a migration reaches its own through its config
        if (s is GATE and not svc.gate_name) or (s in (SNAPSHOT, VERIFY) and not has_db):
            continue
        if s in (VALIDATE, POSTCHECK) and not svc.checks:
            continue
        out.append(s.name)
    return out


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
