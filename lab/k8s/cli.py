"""`stackhop lab k8s up|down|status|build`: the Kubernetes lab from the command line."""

from __future__ import annotations

import json

import typer

from lab.k8s.build import build as build_binaries
from lab.k8s.build import build_helm
from lab.k8s.cluster import KubeLab

app = typer.Typer(help="Kubernetes lab: real control plane, kwok fake nodes.", no_args_is_help=True)

_NAME = typer.Option("stackhop", "--name", help="Cluster name (several labs can coexist).")


@app.command()
def up(name: str = _NAME, nodes: int = typer.Option(3, help="Number of fake nodes.")) -> None:
    """Start the lab (building the binaries first if needed); prints the kubeconfig path."""
    kubeconfig = KubeLab(name=name, nodes=nodes).up()
    typer.echo(kubeconfig)


@app.command()
def down(name: str = _NAME) -> None:
    """Stop the lab and delete its state."""
    KubeLab(name=name).down()
    typer.echo(f"k8s lab {name!r} deleted")


@app.command()
def status(name: str = _NAME) -> None:
    """Print the lab's state (JSON) including the kubeconfig path; exit 1 when not healthy."""
    st = KubeLab(name=name).status()
    typer.echo(json.dumps(st, indent=2))
    if not st["healthy"]:
        raise typer.Exit(1)


@app.command()
def build(force: bool = typer.Option(False, help="Rebuild even when the cache is warm.")) -> None:
    """Build the lab binaries and helm into the version-keyed caches (idempotent); prints their paths."""
    typer.echo(build_binaries(force=force))
    typer.echo(build_helm(force=force))


if __name__ == "__main__":
    app()
