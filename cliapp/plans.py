"""`stackhop plan ...`: validate, show and describe plans without touching anything.

Validation is the same code the workflow relies on (``model.loading``), so a plan that passes here
is the plan that runs. ``show --live`` is the only subcommand that reads the cloud (read-only).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from cliapp.common import BAD_INPUT, Fail, err, out, run, say
from model import order, recipes
from model.loading import PlanError, load_plan
from model.plan import UpgradePlan

app = typer.Typer(help="Validate and inspect upgrade plans (nothing is contacted or changed).", no_args_is_help=True)

PlanArg = Annotated[Path, typer.Argument(metavar="PLAN", help="Plan file (YAML).")]


def load_or_fail(path: Path) -> UpgradePlan:
    try:
        return load_plan(path)
    except PlanError as e:
        raise Fail(BAD_INPUT, f"{path}: invalid plan, {len(e.problems)} problem(s):\n{e}") from None


def summary(plan: UpgradePlan) -> str:
    waves = " → ".join(", ".join(w) if len(w) == 1 else "{" + ", ".join(w) + "}" for w in order.waves(plan.services))
    return f"{plan.metadata.name}: cloud {plan.cloud.name}, {plan.release.from_} → {plan.release.to}, order: {waves}"


@app.command()
def validate(plans: Annotated[list[Path], typer.Argument(metavar="PLAN...", help="Plan files.")]) -> None:
    """Check plans (and fleet files, kind: FleetPlan, with every plan they name); print every problem
    as FILE:LINE: field.path: message (fix: ...). Exit 2 if any."""
    from cliapp.fleets import summary as fleet_summary
    from model.fleet import is_fleet_file, load_fleet

    bad = 0
    for path in plans:
        try:
            if is_fleet_file(path):
                say(f"ok {path}: {fleet_summary(load_fleet(path))}")
                continue
            plan = load_plan(path)
        except PlanError as e:
            bad += 1
            err().print(str(e), soft_wrap=True, markup=False)
            continue
        say(f"ok {path}: {summary(plan)}")
    if bad:
        err().print(f"{bad} of {len(plans)} plan(s) invalid", style="red")
        raise typer.Exit(BAD_INPUT)


def _checks(svc: Any) -> str:
    parts = []
    for c in svc.checks:
        parts.append(f"endpoint {c.service_type}" if c.kind == "endpoint" else c.kind)
    return ", ".join(parts) or "-"


def services_table(plan: UpgradePlan) -> Table:
    """One row per workload; the service's columns on its first row (the summary line goes above it:
    a table title would wrap at the table's width)."""
    table = Table()
    for col in ("wave", "service", "workload (container)", "target image", "migration", "checks", "gate"):
        table.add_column(col, overflow="fold")
    for i, wave in enumerate(order.waves(plan.services), 1):
        for name in wave:
            s = plan.service(name)
            migration = s.migration.mode + (f" ({s.migration.runner})" if s.migration.mode != "none" else "")
            if s.all_databases:
                migration += f", db {', '.join(d.name for d in s.all_databases)}"
            recipe = recipes.service_recipe(s.name)
            if recipe is not None:  # its own recipe: the steps it runs and where the way back ends
                ponr = recipes.recipe_for(s).point_of_no_return or "none"
                migration += f"\nrecipe {recipe.service} ({recipe.proven}), point of no return: {ponr}"
                migration += f"\nsteps: {' → '.join(recipes.service_steps(s))}"
                if s.migration.mode != recipe.mode:
                    migration += f"\n(its recommended mode: {recipe.mode})"
                before, after = (recipe.workloads.get(r, ()) for r in (plan.release.from_, plan.release.to))
                if after and before and set(after) != set(before):  # the workload set changes (neutron)
                    migration += f"\n{plan.release.to} runs: {', '.join(after)}"
            # how the workloads change: through their Helm release, or patched as plain objects
            via = f"\nHelm release {s.helm.release}, chart {s.helm.chart} {s.helm.version}" if s.helm else ""
            first = [str(i), name + via]
            rest = [Text(migration), Text(_checks(s)), Text(s.gate_name or "-")]
            for j, w in enumerate(s.workloads):
                cells = first if j == 0 else ["", ""]
                table.add_row(
                    *cells,
                    Text(f"{w.kind}/{w.name} ({w.container})"),
                    Text(w.image),
                    *(rest if j == 0 else ["", "", ""]),
                )
            table.add_section()
    return table


def data_plane_table(plan: UpgradePlan) -> Table | None:
    """The data plane rules of each service that has a ``data_plane`` block (model/dataplane.py),
    one rule a line; None when no service has one."""
    services = [s for s in plan.services if s.data_plane is not None]
    if not services:
        return None
    table = Table()
    for col in ("service", "data plane: node batches after the control plane"):
        table.add_column(col, overflow="fold")
    for s in services:
        assert s.data_plane is not None
        table.add_row(s.name, Text("\n".join(s.data_plane.describe(s.name))))
        table.add_section()
    return table


def live_table(plan: UpgradePlan, rows: list[Any]) -> tuple[Table, int]:
    table = Table()
    for col in ("service", "workload", "current image", "", "target image", "state", "owner"):
        table.add_column(col, overflow="fold")
    missing = 0
    for r in rows:
        state = getattr(r, "state", "change")
        style = {"missing": "red", "at-target": "green"}.get(state, "yellow")
        missing += state == "missing"
        note = {"missing": "MISSING", "at-target": "already at target"}.get(state, "will change")
        table.add_row(
            r.service,
            Text(f"{r.kind}/{r.name} ({r.container})"),
            Text(r.current or "-"),
            "→",
            Text(r.target),
            Text(note, style=style),
            owner_cell(r),
        )
    return table, missing


# --- who owns each workload (model/ownership.py) -------------------------------------------------
def owner_cell(row: Any) -> Text:
    """The owner column: "Helm release keystone", "Argo CD application x", "—"; red when the plan's
    adapter may not change the workload."""
    owner = getattr(row, "owner", None)
    return Text(owner.brief() if owner else "—", style="red" if getattr(row, "refusal", None) else "")


def refusals(rows: list[Any]) -> list[str]:
    """One line per workload the plan may not change, with the owner's way to upgrade it."""
    return [r.refusal for r in rows if getattr(r, "refusal", None)]


async def _preview(plan: UpgradePlan) -> list[Any]:
    try:
        from activities.preview import live_preview
    except ImportError as e:
        raise Fail(BAD_INPUT, f"--live is not available in this installation ({e})") from None
    try:
        rows = live_preview(plan)
        if inspect.isawaitable(rows):
            rows = await rows
    except Exception as e:
        raise Fail(
            BAD_INPUT, f"cannot read the live state of {plan.cloud.name}: {getattr(e, 'message', None) or e}"
        ) from None
    return list(rows)


def helm_table(previews: list[Any]) -> tuple[Table, int]:
    """The Helm section of ``show --live``: per release, revision and status, chart version now ->
    the plan's, and the values a roll changes (old -> new). Returns the table and the releases missing."""
    table = Table(title="Helm releases")
    for col in ("service", "release", "revision", "chart version", "values a roll changes"):
        table.add_column(col, overflow="fold")
    missing = 0
    for p in previews:
        if not p.found:
            missing += 1
            table.add_row(p.service, f"{p.release} ({p.namespace})", Text("NOT FOUND", style="red"), "-", "-")
            continue
        same = p.version_now == p.version_plan
        version = Text(f"{p.version_now or '?'} → {p.version_plan}", style="green" if same else "yellow")
        changes = Text("\n".join(p.values_diff) or "nothing (at target)", style="yellow" if p.values_diff else "green")
        revision = f"{p.revision} {p.status}"
        if p.deployed_revision != p.revision:
            revision += f" (deployed: {p.deployed_revision or 'none'})"
        table.add_row(p.service, f"{p.release} ({p.namespace})", revision, version, changes)
    return table, missing


def _helm_section(plan: UpgradePlan) -> int:
    """Print the Helm section for the services with ``helm:`` (read-only); the releases missing."""
    if not any(s.helm for s in plan.services):
        return 0
    try:
        from activities.preview import helm_preview
    except ImportError as e:
        raise Fail(BAD_INPUT, f"--live is not available in this installation ({e})") from None
    try:
        previews = helm_preview(plan)
    except Exception as e:
        raise Fail(
            BAD_INPUT, f"cannot read the Helm releases of {plan.cloud.name}: {getattr(e, 'message', None) or e}"
        ) from None
    table, missing = helm_table(previews)
    out().print(table)
    return missing


# --- the cloud's upgrade ledger (workflows/ledger.py) --------------------------------------------
def ledger_table(plan: UpgradePlan, state: Any) -> tuple[Table, list[str]]:
    """What earlier upgrades left each service of the plan (and any other the ledger knows), and the
    services whose unfinished online data migrations would make the pre-flight refuse."""
    table = Table(title=f"Ledger of {state.cloud} ({state.records} record(s), run {state.runs})")
    for col in ("service", "release", "online data migrations", "schema", "left by"):
        table.add_column(col, overflow="fold")
    names = [s.name for s in plan.services] + sorted(set(state.services) - {s.name for s in plan.services})
    blocking = []
    for name in names:
        e = state.services.get(name)
        if e is None:
            table.add_row(name, "-", "-", "-", Text("nothing recorded", style="dim"))
            continue
        if e.online_pending:
            online = Text(f"UNFINISHED: run `{e.online_command}`", style="red")
            if name in {s.name for s in plan.services}:
                blocking.append(name)
        else:
            online = Text("complete or none", style="green")
        schema = (
            Text(f"expanded, not contracted (`{e.contract_command}`)", style="yellow")
            if e.expanded_not_contracted
            else Text("-")
        )
        source = " (corrected by a pre-flight's cloud check)" if e.source == "cloud" else ""
        left = f"{e.upgrade_id} {e.outcome} {e.recorded_at[:19]}{source}".strip()
        table.add_row(name, f"{e.release or '?'} {e.version}".strip(), online, schema, left)
    return table, blocking


async def _ledger_section(plan: UpgradePlan) -> list[str]:
    """Print the cloud's ledger (read-only: its ``state`` query); the plan's services that have
    unfinished online data migrations. Temporal unreachable or no ledger: said, not a failure."""
    from temporalio.service import RPCError, RPCStatusCode

    from cliapp.common import connect
    from model.io import LedgerState, ledger_workflow_id

    wid = ledger_workflow_id(plan.cloud.name)
    try:
        client = await connect(within=5)
        state = await client.get_workflow_handle(wid).query("state", result_type=LedgerState)
    except Fail as e:
        say(f"ledger {wid}: not read ({e.message.splitlines()[0]})")
        return []
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            say(f"ledger {wid}: none yet (no upgrade of {plan.cloud.name} recorded)")
        else:
            say(f"ledger {wid}: not read ({e.message})")
        return []
    table, blocking = ledger_table(plan, state)
    out().print(table)
    return blocking


@app.command()
def show(
    plan_file: PlanArg,
    live: Annotated[bool, typer.Option("--live", help="Read current images from the cluster (read-only).")] = False,
) -> None:
    """The services in upgrade order: workloads, target images, migration, checks, gate."""

    async def body() -> None:
        plan = load_or_fail(plan_file)
        say(summary(plan))
        out().print(services_table(plan))
        rules = data_plane_table(plan)
        if rules is not None:
            out().print(rules)
        if live:
            rows = await _preview(plan)
            table, missing = live_table(plan, rows)
            k = plan.cloud.kubernetes
            say(f"{plan.cloud.name} (context {k.context}, namespace {k.namespace}): live")
            out().print(table)
            refused = refusals(rows)
            for line in refused:
                out().print(Text(f"REFUSED {line}", style="red"), soft_wrap=True)
            releases_missing = _helm_section(plan)
            unfinished = await _ledger_section(plan)
            if missing or refused or releases_missing or unfinished:
                why = [f"{missing} workload(s) missing"] if missing else []
                why += [f"{len(refused)} workload(s) owned by something the plan may not change"] if refused else []
                why += [f"{releases_missing} Helm release(s) not found"] if releases_missing else []
                why += [f"unfinished online data migrations ({', '.join(unfinished)})"] if unfinished else []
                raise Fail(BAD_INPUT, f"{'; '.join(why)}: the upgrade's pre-flight would stop")

    run(body())


@app.command()
def schema() -> None:
    """JSON schema of the plan format (for editors and reviews)."""
    typer.echo(json.dumps(UpgradePlan.model_json_schema(by_alias=True), indent=2))
