"""The `stackhop` command: validate plans, start and steer upgrades, run the worker and a dev server.

Exit codes: 0 success, 1 the upgrade failed / rolled back / was aborted, 2 bad input (invalid plan,
unknown upgrade, refused request), 3 Temporal cannot be reached. This module only wires commands;
the work is in ``cliapp/``.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cliapp import canary, common, deploy, fleets, plans, reporting
from cliapp.common import BAD_INPUT, run, workflow_id

app = typer.Typer(
    help="OpenStack-on-Kubernetes upgrades as durable Temporal workflows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(plans.app, name="plan")
app.add_typer(canary.app, name="canary")
app.add_typer(fleets.app, name="fleet")
app.add_typer(deploy.app, name="deploy")
app.command("report")(reporting.command)

Id = Annotated[str, typer.Argument(metavar="ID", help="Workflow id, e.g. upgrade/lab (or just the cloud name).")]


@app.callback()
def options(
    profile: Annotated[
        str | None,
        typer.Option(help="Temporal client profile (temporal.toml); default: TEMPORAL_PROFILE or 'default'."),
    ] = None,
    address: Annotated[
        str | None, typer.Option(help="Temporal HOST:PORT; default: TEMPORAL_ADDRESS, the profile, or localhost:7233.")
    ] = None,
    task_queue: Annotated[
        str, typer.Option(envvar="STACKHOP_TASK_QUEUE", help="Task queue of the stackhop workers.")
    ] = common.DEFAULT_TASK_QUEUE,
) -> None:
    from model.logs import configure

    configure()
    common.settings.update(profile=profile, address=address, task_queue=task_queue)


@app.command()
def start(
    plan: Annotated[Path, typer.Argument(metavar="PLAN", help="Plan file (YAML).")],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the upgrade like `watch` until it ends.")] = False,
    approve: Annotated[
        list[str] | None, typer.Option("--approve", metavar="GATE", help="Pre-approve a gate (repeatable).")
    ] = None,
) -> None:
    """Validate PLAN and start its upgrade (one per cloud at a time)."""
    from cliapp import upgrades

    raise typer.Exit(run(upgrades.start(plan, approve or [], wait)))


@app.command()
def status(wf: Id, as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Where an upgrade is; its outcome and report once it has ended (exit 1 if it did not succeed)."""
    from cliapp import upgrades

    raise typer.Exit(run(upgrades.status(workflow_id(wf), as_json), workflow_id(wf)))


@app.command()
def watch(wf: Id) -> None:
    """Follow an upgrade live until it ends, then print its report (exit 1 if it did not succeed)."""
    from cliapp import upgrades

    raise typer.Exit(run(upgrades.watch(None, workflow_id(wf)), workflow_id(wf)))


@app.command()
def pause(wf: Id, reason: Annotated[str, typer.Option(help="Recorded in the history.")] = "") -> None:
    """Pause: running steps finish, no new step starts."""
    _control(wf, "pause", reason=reason)


@app.command()
def resume(wf: Id) -> None:
    """Resume a paused upgrade, or retry the step (or rollback step) a service waits on a decision for."""
    _control(wf, "resume")


@app.command()
def approve(
    wf: Id,
    decision: Annotated[
        str,
        typer.Argument(
            metavar="DECISION", help="The decision waiting, as status shows it: SERVICE/STEP#N (or a gate's name)."
        ),
    ],
) -> None:
    """Approve one decision: open a gate, accept an inconclusive check or a restore. A failed step is
    not approved: resume retries it, abort rolls back."""
    _control(wf, "approve", gate=decision)


@app.command()
def abort(wf: Id, reason: Annotated[str, typer.Option(help="Why (required; recorded in the history).")]) -> None:
    """Abort: services not past their point of no return roll back (a rollback already running goes on)."""
    _control(wf, "abort", reason=reason)


@app.command()
def abandon(wf: Id, reason: Annotated[str, typer.Option(help="Why (required; recorded in the report).")]) -> None:
    """End a rollback whose step failed and waits for a decision; the report lists what is left undone."""
    _control(wf, "abandon", reason=reason)


def _control(wf: str, update: str, **fields: str) -> None:
    from cliapp import control
    from model import io

    request = {
        "pause": io.PauseRequest,
        "resume": io.ResumeRequest,
        "approve": io.ApproveRequest,
        "abort": io.AbortRequest,
        "abandon": io.AbandonRequest,
    }[update]
    req = request(by=common.user(), **fields)
    raise typer.Exit(run(control.control(workflow_id(wf), update, req), workflow_id(wf)))


@app.command("list")
def list_(
    cloud: Annotated[str | None, typer.Option(help="Only upgrades of this cloud.")] = None,
    fleet: Annotated[str | None, typer.Option(help="Only upgrades this fleet started.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include finished upgrades.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output: a JSON list.")] = False,
) -> None:
    """Upgrades (running ones unless --all)."""
    from cliapp import upgrades

    raise typer.Exit(run(upgrades.list_upgrades(cloud, all_, limit, as_json, fleet)))


@app.command()
def setup() -> None:
    """Register stackhop's search attributes in the Temporal namespace (once; safe to repeat)."""
    from cliapp import setup as setupmod

    raise typer.Exit(run(setupmod.setup()))


@app.command()
def worker() -> None:
    """Run a worker: the upgrade workflows and the activities that touch the cloud."""
    from cliapp import dev as devmod

    raise typer.Exit(run(devmod.run_worker()))


@app.command()
def dev(
    port: Annotated[int, typer.Option(help="gRPC port of the dev server.")] = 7233,
    ui_port: Annotated[int, typer.Option(help="Port of the Temporal UI.")] = 8233,
    db_file: Annotated[Path | None, typer.Option(help="Server state file; default .lab/temporal-dev.db.")] = None,
) -> None:
    """A local Temporal dev server (127.0.0.1, UI included) plus a worker, until Ctrl-C."""
    from cliapp import dev as devmod

    raise typer.Exit(run(devmod.dev(port, ui_port, db_file)))


@app.command("codec-server")
def codec_server(
    host: Annotated[str, typer.Option(help="Address to listen on (keep it loopback unless a proxy fronts it).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8081,
    ui_origin: Annotated[
        list[str] | None,
        typer.Option("--ui-origin", help="Origin of the Temporal UI (repeatable); default the local dev UI's."),
    ] = None,
    namespace: Annotated[
        list[str] | None,
        typer.Option("--namespace", help="Namespace served (repeatable); default the Temporal profile's."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar="STACKHOP_CODEC_TOKEN", help="Require Authorization: Bearer TOKEN.", show_default=False),
    ] = None,
) -> None:
    """Serve the Temporal UI's remote codec endpoint (POST /encode, /decode) with the workers' keys
    (STACKHOP_CODEC_KEYS_FILE or STACKHOP_CODEC_KEYS), until Ctrl-C."""
    from cliapp import codec_server as codec_mod

    raise typer.Exit(run(codec_mod.command(host, port, ui_origin or [], namespace or [], token)))


# The lab (`stackhop demo`, `stackhop lab ...`) lives in a source checkout, not in the installed
# package. Its modules are looked up by name, with importlib, when one of these commands runs:
# the product has no import statement of `lab` (import-linter checks that: "product modules never
# import lab"), and this function is the one place where the product reaches for the optional lab.
LAB_MISSING = (
    "stackhop {command} needs the lab, which ships only in a source checkout of stackhop, not in the "
    "installed package: clone the stackhop repository and run `make demo` in it (it sets up the labs "
    "and a venv from which `.venv/bin/stackhop {command}` works)."
)


def _lab_module(name: str, command: str) -> Any:
    """Import a lab module, or exit 2 saying how to get the lab."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and (name == e.name or name.startswith(f"{e.name}.")):
            common.err().print(LAB_MISSING.format(command=command), soft_wrap=True, markup=False)
            raise typer.Exit(BAD_INPUT) from None
        common.err().print(f"{name} cannot be imported: {type(e).__name__}: {e}", markup=False)
        raise typer.Exit(BAD_INPUT) from None


@app.command()
def demo(
    inject: Annotated[
        str | None, typer.Option(help="Make a step fail for real: migration, rollout or tempest.")
    ] = None,
    keep: Annotated[bool, typer.Option(help="Leave the labs and the Temporal server running afterwards.")] = False,
    port: Annotated[int, typer.Option(help="gRPC port of the Temporal dev server.")] = 7233,
    ui_port: Annotated[int, typer.Option(help="Port of the Temporal UI.")] = 8233,
    reset: Annotated[
        bool,
        typer.Option(
            help="Start from a fresh 28.1.0 baseline; --no-reset upgrades the labs as they are "
            "(e.g. again after a rollback, on the schema its expand left)."
        ),
    ] = True,
    cloud: Annotated[
        str | None,
        typer.Option(
            help="full: the whole-cloud demo (keystone, placement, glance, neutron, nova as Helm releases on "
            "the Kubernetes lab, examples/lab-cloud.yaml); --inject rollout then fails nova's rollout, --inject node "
            "one compute node."
        ),
    ] = None,
    fleet: Annotated[
        bool,
        typer.Option(
            "--fleet",
            help="A fleet of five lab Keystone clouds in waves (examples/fleet/fleet.yaml): canary, then two "
            "waves; --inject migration or rollout then fails lab-d and its wave stops.",
        ),
    ] = False,
) -> None:
    """The demo upgrade: Keystone 2025.2 → 2026.1 on the labs, with a verified snapshot, a real
    schema migration, a rollout, tempest deciding, and a rollback when something fails (needs a
    source checkout). ``--cloud full``: the whole cloud, five services, 2025.2 → 2026.1.
    ``--fleet``: five lab clouds upgraded as a fleet."""
    if fleet:
        if cloud is not None or not reset or inject not in (None, "migration", "rollout"):
            common.err().print("--fleet: starts from the baseline, without --cloud; --inject migration or rollout")
            raise typer.Exit(BAD_INPUT)
        fleet_demo = _lab_module("lab.fleet_demo", "demo")
        raise typer.Exit(run(fleet_demo.fleet_demo(inject, keep, port, ui_port)))
    if cloud is not None:
        if cloud != "full":
            common.err().print(f"--cloud {cloud}: use full")
            raise typer.Exit(BAD_INPUT)
        if inject not in (None, "rollout", "node"):
            common.err().print(
                f"--inject {inject} with --cloud full: use rollout (nova's rollout never gets Ready) or node "
                "(one compute node's new pod never gets Ready)"
            )
            raise typer.Exit(BAD_INPUT)
        cloud_demo = _lab_module("lab.cloud_demo", "demo")
        raise typer.Exit(run(cloud_demo.cloud_demo(inject, keep, port, ui_port, reset)))
    if inject not in (None, "migration", "rollout", "tempest"):
        common.err().print(f"--inject {inject}: use migration, rollout or tempest")
        raise typer.Exit(BAD_INPUT)
    if inject and not reset:
        common.err().print("--inject needs the fresh baseline: drop --no-reset")
        raise typer.Exit(BAD_INPUT)
    demo_cli = _lab_module("lab.demo_cli", "demo")
    raise typer.Exit(run(demo_cli.demo(inject, keep, port, ui_port, reset)))


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def lab(ctx: typer.Context) -> None:
    """The test labs: up, down, k8s ..., openstack ... (`stackhop lab --help`; needs a source checkout)."""
    lab_cli = _lab_module("lab.cli", "lab")
    lab_cli.app(args=ctx.args, prog_name="stackhop lab")


def main() -> None:
    """Entry point. Exits with os._exit once the command is done: temporalio's core SDK threads can
    still be finishing a call while the interpreter finalizes, which aborts the process (SIGABRT,
    "PyGILState_Release ... finalizing") and would replace our exit code with 134."""
    try:
        app()
        code = 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    from model.logs import exit_process

    exit_process(code)


if __name__ == "__main__":
    main()
