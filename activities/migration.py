"""Migration activity: run a service's schema migration phase and interpret its exit code.

Rolling upgrades need the schema changed in steps both releases tolerate: *expand* (additive, the
old release keeps serving), *migrate* (data), *contract* (removes what only the old release used:
after it there is no way back but a restore).  Every service spells this differently: its recipe
(model/recipes/<service>.py) maps the phases to its manage tool's commands and exit codes, beside
the steps that run them (``PROFILES`` is the view this module reads); services without a phase
report "not-applicable" instead of failing.  `online` runs the online data migrations in rounds
while the tool exits 1 ("a batch ran, maybe more"): rounds that run out with work left answer
"more-to-do" and the workflow calls again (the old phase name `migrate` still runs them, and fails
when the rounds run out, as it always did).  A `check` never fails on "work to do": it returns the
state (keystone `db_sync --check`: 0 up to date, 2 expand needed, 4 contract needed) and the
workflow decides.  `offline` is the plain full `db sync` for services (or upgrades) without
rolling-upgrade support; the workflow quiesces the API before it.

A contract that needs every server of the service stopped (neutron: `has_offline_migrations` exits 1,
"This will require all Neutron server instances to be shutdown") waits for it: before running it the
activity lists the sessions on the service's schema or of its database users (`database.users`) and
waits, heartbeating, until none is left (local runner; the job runner checks once per attempt). The
signal is the database's: every neutron server process (API, RPC server, periodic workers) reaches
the schema through its own connection pool, and a stopped one has none; a server that has not
touched the database since it started holds no connection yet and is not seen, which is why the
workflow still stops the servers first and this is the check that they are gone. Once the wait
runs out, the contract fails with a retryable DatabaseInUse naming the sessions (as a restore does).
With nothing offline pending, the contract runs while the servers serve (it has nothing to apply).
"""

from __future__ import annotations

import os
import re
import shlex
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from activities import database, dbtools
from activities.dbtools import q
from model import errors
from model.io import MIGRATION_DB_SYNC, MigrateInput, MigrateResult, MigrationPhase
from model.plan import Migration
from model.recipes import RECIPES_BY_SERVICE, ServiceRecipe

log = structlog.get_logger(__name__)

UNREACHABLE = re.compile(r"DBConnectionError|Can't connect to (MySQL|MariaDB) server|Lost connection to")


@dataclass(frozen=True)
class Profile:
    """How one service runs each migration phase (argument lists appended to its manage tool): a
    view of the service's recipe (model/recipes/<service>.py), where the commands live beside the
    steps that run them."""

    tool: tuple[str, ...]
    phases: dict[str, tuple[tuple[str, ...], ...]]
    check_states: dict[int, str] = field(default_factory=dict)  # check exit code -> state
    repeat_phase: str | None = None  # phase rerun while it exits 1 (the old name: "migrate")
    repeat_phases: frozenset[str] = frozenset()  # every phase rerun while it exits 1
    # the check command when one of its states says the contract needs every server of the service
    # stopped (neutron's has_offline_migrations): the contract then waits until no server is connected
    offline_contract_check: tuple[str, ...] | None = None

    @classmethod
    def of(cls, recipe: ServiceRecipe) -> Profile:
        offline = OFFLINE_CONTRACT in recipe.check_states.values() and "check" in recipe.commands
        return cls(
            tool=recipe.tool,
            phases=dict(recipe.commands),
            check_states=dict(recipe.check_states),
            repeat_phase="migrate" if "migrate" in recipe.repeat_phases else None,
            repeat_phases=recipe.repeat_phases,
            offline_contract_check=recipe.commands["check"][0] if offline else None,
        )


#: The check state saying the contract needs every server of the service stopped.
OFFLINE_CONTRACT = "offline-contract-needed"
#: How long a contract with offline migrations pending waits for the service's servers to be gone,
#: and how often it looks (local runner).
QUIESCE_WAIT_SECONDS = 300.0
QUIESCE_POLL_SECONDS = 2.0


# The commands per service, read from the recipes (the name lab tests and callers always used).
PROFILES: dict[str, Profile] = {name: Profile.of(r) for name, r in RECIPES_BY_SERVICE.items()}


def profile_for(service: str) -> Profile:
    try:
        return PROFILES[service]
    except KeyError:
        raise errors.permanent(
            errors.PLAN_INVALID,
            f"no migration profile for service {service!r}; known: {', '.join(sorted(PROFILES))}",
        ) from None


def env_command(service: str, kind: str) -> list[str] | None:
    """Worker-side default for a plan without a command: STACKHOP_<SERVICE>_<KIND> (shell words),
    e.g. STACKHOP_KEYSTONE_MANAGE='/venvs/keystone-{version}/bin/keystone-manage --config-file F'."""
    value = os.environ.get(f"STACKHOP_{service.upper()}_{kind}")
    return shlex.split(value) if value else None


def base_command(service: str, migration: Migration, version: str) -> list[str]:
    """The manage tool (plan's migration.command, else for the local runner the worker's
    STACKHOP_<SERVICE>_MANAGE, else the profile's), placeholders filled in."""
    worker_default = env_command(service, "MANAGE") if migration.runner == "local" else None  # paths on the worker
    command = list(migration.command) if migration.command else worker_default or list(profile_for(service).tool)
    if any("{version}" in part for part in command) and not version:
        raise errors.permanent(
            errors.PLAN_INVALID, f"{service}: migration.command uses {{version}} but no target version is known"
        )
    return [part.replace("{version}", version).replace("{service}", service) for part in command]


def phase_script(service: str, phase: MigrationPhase, command: list[str], max_rounds: int) -> str | None:
    """A bash script running the phase's commands, printing `exit=` markers and always exiting 0
    (so a Job's log tail carries the exit code the activity interprets). None: not applicable."""
    profile = profile_for(service)
    steps = profile.phases.get(phase)
    if not steps:
        return None
    lines = ["set -u", "rc=0"]
    for index, args in enumerate(steps, 1):
        cmd = " ".join(q(part) for part in [*command, *args])
        if phase in profile.repeat_phases:
            lines.append(
                f"for round in $(seq 1 {int(max_rounds)}); do {cmd}; rc=$?; "
                f'echo "{dbtools.MARKER} step={index} round=$round exit=$rc"; [ $rc -eq 1 ] || break; done'
            )
        else:
            lines.append(f'{cmd}; rc=$?; echo "{dbtools.MARKER} step={index} exit=$rc"')
        lines.append('[ "$rc" -eq 0 ] || { echo "@@stackhop final=$rc"; exit 0; }' if phase != "check" else "")
    lines.append(f'echo "{dbtools.MARKER} final=$rc"')
    return "\n".join(line for line in lines if line) + "\n"


def job_for(inp: MigrateInput, script: str, op: str = "") -> tuple[str, dict[str, Any]]:
    """(step, manifest) of the Job that runs the phase in the target release's image (the Job's name
    adds the workflow run and a generation to the step: kube_jobs.run_job)."""
    if not inp.image or inp.target is None:
        raise errors.permanent(errors.PLAN_INVALID, f"{inp.service}: the job runner needs the target image and cluster")
    mig = inp.migration
    mounts, volumes = [], []
    if mig.config_secret:
        volumes.append({"name": "config", "secret": {"secretName": mig.config_secret}})
        mounts.append(
            {"name": "config", "mountPath": mig.config_mount.replace("{service}", inp.service), "readOnly": True}
        )
    name = dbtools.job_name(inp.service, op or f"db-{inp.phase}", inp.version or inp.image)
    manifest = dbtools.job_manifest(
        namespace=inp.target.namespace,
        image=inp.image,
        script=script,
        labels={"stackhop.io/service": inp.service, "stackhop.io/operation": f"db-{inp.phase}"},
        volumes=volumes,
        mounts=mounts,
        timeout_seconds=3600,
    )
    return name, manifest


def interpret(service: str, phase: MigrationPhase, exit_code: int, rounds: int, max_rounds: int) -> str:
    """Exit code -> state, or raise MigrationFailed. Pure, so every service's codes are tested."""
    profile = profile_for(service)
    if phase == "check":
        state = profile.check_states.get(exit_code)
        if state is None:
            raise errors.permanent(
                errors.MIGRATION_FAILED, f"{service} migration check exited {exit_code} (unknown state)"
            )
        return state
    if phase == "online" and phase in profile.repeat_phases and exit_code == 1:
        return "more-to-do"  # the rounds ran out with work left: the workflow calls again
    if phase in profile.repeat_phases and exit_code == 1:
        raise errors.permanent(
            errors.MIGRATION_FAILED, f"{service} {phase} still had work after {rounds}/{max_rounds} rounds"
        )
    if exit_code != 0:
        raise errors.permanent(errors.MIGRATION_FAILED, f"{service} {phase} exited {exit_code}")
    return "done"


def _run_script(inp: MigrateInput, script: str, what: str, op: str = "") -> dbtools.Ran:
    if inp.migration.runner == "local":
        return dbtools.run_local(script, step=f"migration.{what}")
    step, manifest = job_for(inp, script, op)
    return dbtools.run_job(inp.target, step, manifest, 3600, f"migration.{what}")


def offline_contract_pending(inp: MigrateInput, command: list[str]) -> bool:
    """Whether the contract needs every server stopped: the profile's offline check answers a state
    (neutron's has_offline_migrations: 1 offline-contract-needed, 0 none pending)."""
    profile = profile_for(inp.service)
    check = profile.offline_contract_check
    if check is None:
        return False
    cmd = " ".join(q(part) for part in [*command, *check])
    script = f'{cmd}; rc=$?; echo "{dbtools.MARKER} final=$rc"\n'
    ran = _run_script(inp, script, "offline-check", op="db-offline-check")
    if ran.exit_code or "final" not in ran.markers:
        raise errors.temporary(
            f"{inp.service} offline check: the runner did not report an exit code", output=ran.tail()
        )
    code = int(ran.markers["final"])
    if code not in profile.check_states:
        raise errors.permanent(
            errors.MIGRATION_FAILED,
            f"{inp.service} {' '.join(check)} exited {code}\n{ran.tail(15)}",
            exit_code=code,
            output=ran.tail(),
        )
    return profile.check_states[code] == OFFLINE_CONTRACT


def await_servers_stopped(inp: MigrateInput) -> float:
    """Wait until no session is on the service's schema or of its users; returns the seconds waited.
    Raises a retryable DatabaseInUse naming the sessions when they outlast QUIESCE_WAIT_SECONDS (the
    job runner looks once per attempt: a Job per look would only re-attach to the first)."""
    db = inp.database
    if db is None:
        raise errors.permanent(
            errors.PLAN_INVALID,
            f"{inp.service}: the contract needs every server stopped; without the service's database "
            "the migration cannot see whether one is still connected",
        )
    started = time.monotonic()
    while True:
        found = database.open_sessions(inp.service, db, inp.target)
        waited = time.monotonic() - started
        if not found:
            return waited
        log.info("contract_waits", service=inp.service, sessions=len(found), waited=round(waited, 1))
        dbtools.heartbeat(step="migration.contract", waiting_for="servers stopped", sessions=found)
        if inp.migration.runner != "local" or waited >= QUIESCE_WAIT_SECONDS:
            raise errors.temporary(
                f"{inp.service} contract needs every server stopped (offline migrations pending); "
                f"{db.name} still has {len(found)} sessions after {waited:.0f}s: {'; '.join(found)}",
                type=errors.DB_IN_USE,
                sessions=found,
            )
        if dbtools.is_cancelled():
            raise CancelledError(f"{inp.service} contract cancelled while waiting for the servers to stop")
        time.sleep(QUIESCE_POLL_SECONDS)


@activity.defn(name=MIGRATION_DB_SYNC, no_thread_cancel_exception=True)
def db_sync(inp: MigrateInput) -> MigrateResult:
    """Run one migration phase of one service and return its interpreted state."""
    mig = inp.migration
    command = base_command(inp.service, mig, inp.version)
    script = phase_script(inp.service, inp.phase, command, mig.max_rounds)
    if script is None:
        if inp.phase == "check":  # no way to ask: assume work is needed (expand is idempotent)
            return MigrateResult(phase=inp.phase, state="unknown", command=command)
        return MigrateResult(phase=inp.phase, state="not-applicable", command=command)
    waited = 0.0
    if inp.phase == "contract" and offline_contract_pending(inp, command):
        waited = await_servers_stopped(inp)
    ran = _run_script(inp, script, inp.phase)
    m = ran.markers
    if ran.exit_code or "final" not in m:
        raise errors.temporary(f"{inp.service} {inp.phase}: the runner did not report an exit code", output=ran.tail())
    exit_code = int(m["final"])
    rounds = int(m.get("round", "1"))
    if exit_code != 0 and inp.phase != "check" and UNREACHABLE.search(ran.output):
        raise errors.temporary(f"{inp.service} {inp.phase}: database unreachable", output=ran.tail())
    try:
        state = interpret(inp.service, inp.phase, exit_code, rounds, mig.max_rounds)
    except Exception as exc:  # attach the output the operator needs to see
        if isinstance(exc, ApplicationError):
            raise errors.permanent(
                exc.type or errors.MIGRATION_FAILED,
                f"{exc.message}\n{ran.tail(15)}",
                exit_code=exit_code,
                output=ran.tail(),
            ) from None
        raise
    log.info(
        "db_sync",
        service=inp.service,
        phase=inp.phase,
        exit_code=exit_code,
        state=state,
        seconds=round(ran.seconds, 2),
        waited_for_servers=round(waited, 1),
    )
    return MigrateResult(
        phase=inp.phase,
        exit_code=exit_code,
        state=state,
        output_tail=ran.tail(),
        seconds=round(ran.seconds, 3),
        command=[*command, *profile_for(inp.service).phases[inp.phase][0]],
        rounds=rounds,
    )
