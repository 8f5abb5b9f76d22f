"""``stackhop deploy ...``: manifests for running the worker, derived from the plans it will run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

app = typer.Typer(help="Manifests for deploying the worker (printed, nothing is applied).", no_args_is_help=True)


@app.command()
def rbac(
    plans: Annotated[list[Path], typer.Argument(metavar="PLAN...", help="Plan files the worker will run.")],
    service_account: Annotated[
        str, typer.Option(metavar="NAMESPACE/NAME", help="The worker's ServiceAccount.")
    ] = "stackhop/stackhop-worker",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write here instead of stdout.")] = None,
) -> None:
    """The least-privilege Role(s) the PLANs need (named workloads only) and the admission policies
    that let the worker change only images, replicas and its own annotations; apply with kubectl."""
    from cliapp.plans import load_or_fail
    from cliapp.rbac import manifests

    namespace, sep, name = service_account.partition("/")
    if not sep or not namespace or not name:
        typer.echo(
            f"--service-account {service_account!r}: write NAMESPACE/NAME, e.g. stackhop/stackhop-worker", err=True
        )
        raise typer.Exit(2)
    docs = manifests([load_or_fail(p) for p in plans], (namespace, name))
    header = "# stackhop deploy rbac " + " ".join(str(p) for p in plans) + "\n"
    text = header + yaml.safe_dump_all(docs, sort_keys=False, width=200)
    if output:
        output.write_text(text)
    else:
        typer.echo(text, nl=False)
