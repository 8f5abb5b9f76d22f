"""`stackhop lab openstack up|down|status|serve RELEASE` (mounted by the lead's CLI)."""

from __future__ import annotations

import json
import shlex
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from lab.openstack import paths
from lab.openstack.manager import DEFAULT_RELEASE, OpenStackLab

if TYPE_CHECKING:
    from lab.cloud_k8s import KubeCloud

app = typer.Typer(
    help="A real OpenStack target: MariaDB + Keystone releases + tempest, on loopback.", no_args_is_help=True
)
console = Console()


def _show(lab: OpenStackLab) -> None:
    status = lab.status()
    table = Table(show_header=False, box=None)
    table.add_row("lab dir", status["lab_dir"])
    db = status["mariadb"]
    table.add_row("mariadb", f"[green]up[/] 127.0.0.1:{db['port']} (pid {db['pid']})" if db["up"] else "[red]down[/]")
    ks = status["keystone"]
    table.add_row(
        "keystone", f"[green]{ks['release']}[/] {ks['url']} (pid {ks['pid']})" if ks["up"] else "[red]down[/]"
    )
    table.add_row("clouds.yaml", f"{status['clouds_yaml']}  (clouds: lab-admin, lab-system)")
    table.add_row("tempest", status["tempest_workspace"])
    if lab.mariadb:
        table.add_row("db credentials", str(lab.mariadb.defaults_file))
    console.print(table)


def cloud_base() -> Path:
    """The cloud lab's directory (`.lab/cloud`, or `$STACKHOP_LAB_DIR/cloud`)."""
    return paths.lab_dir().parent / "cloud"


def _kube_cloud() -> KubeCloud:
    from lab.cloud_k8s import KubeCloud
    from lab.demo import demo_kube_lab

    return KubeCloud(demo_kube_lab(), cloud_base())


def _show_cloud(cloud: KubeCloud) -> None:
    table = Table(title=f"cloud lab on Kubernetes (namespace {cloud.namespace}, kubeconfig {cloud.kube.kubeconfig})")
    for column in ("service", "workload", "pod", "node", "image", "ready", "release", "port", "pid"):
        table.add_column(column)
    for row in cloud.pods():
        table.add_row(
            *(str(row[k] if row[k] is not None else "-") for k in ("service", "workload", "pod", "node", "image")),
            "[green]yes[/]" if row["ready"] else "[red]no[/]",
            *(str(row[k] if row[k] is not None else "-") for k in ("release", "port", "pid")),
        )
    Console(width=max(console.width, 200)).print(table)
    state = cloud.state()
    console.print(f"cloud dir {cloud.base}; controller pid {state.get('controller_pid')} (log {cloud.controller_log})")


@app.command()
def up(
    release: str | None = typer.Option(
        None,
        help=f"Keystone release to serve: {', '.join(paths.KEYSTONE_RELEASES)}"
        f" (default: the one serving, else {DEFAULT_RELEASE})",
    ),
    services: str | None = typer.Option(
        None,
        help="The cloud lab on the Kubernetes lab, e.g. keystone,placement,glance,neutron,nova: each service "
        "a Helm release of its 2025.2.0 chart, one process per Ready pod behind the lab proxy "
        "(without it: the Keystone lab alone)",
    ),
) -> None:
    """Install what is missing, start MariaDB and Keystone, write clouds.yaml and tempest.conf.

    With --services: the Kubernetes lab, the cloud core, the cloud controller and a Helm release per
    service, until every Deployment is available and nova-compute runs on every node."""
    if services is not None:
        if release is not None:
            console.print("[red]--release is the Keystone lab's: the cloud lab comes up at 2025.2[/]")
            raise typer.Exit(2)
        cloud = _kube_cloud()
        started = datetime.now(UTC)
        t0 = time.monotonic()
        timings = cloud.up([s.strip() for s in services.split(",") if s.strip()])
        _show_cloud(cloud)
        console.print(
            f"started {started:%Y-%m-%d %H:%M:%S} UTC, up in {time.monotonic() - t0:.1f}s: "
            + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
        )
        return
    lab = OpenStackLab.load()
    timings = lab.up(release)
    _show(lab)
    console.print("took " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    console.print('worker environment for this lab: eval "$(stackhop lab openstack env)"')


@app.command()
def serve(release: str = typer.Argument(..., help=f"One of {', '.join(paths.KEYSTONE_RELEASES)}")) -> None:
    """Serve another Keystone release on the same port, database and keys (a rolling swap)."""
    lab = OpenStackLab.load()
    if lab.mariadb is None:
        console.print("[red]the lab is not set up: run `stackhop lab openstack up` first[/]")
        raise typer.Exit(1)
    seconds = lab.serve(release)
    console.print(f"keystone {release} serving at {lab.keystone.url if lab.keystone else '?'} after {seconds:.1f}s")


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """What runs where."""
    lab = OpenStackLab.load()
    if as_json:
        print(json.dumps(lab.status(), indent=2))
    else:
        _show(lab)


@app.command()
def env() -> None:
    """Shell exports for a worker whose local runners act on this lab (`eval "$(... env)"`)."""
    lab = OpenStackLab.load()
    if lab.mariadb is None:
        console.print("[red]the lab is not set up: run `stackhop lab openstack up` first[/]")
        raise typer.Exit(1)
    for key, value in lab.worker_env().items():
        print(f"export {key}={shlex.quote(value)}")


@app.command()
def down(purge: bool = typer.Option(False, help="Also delete the lab directory (database, keys, configs).")) -> None:
    """Stop Keystone and MariaDB (only the processes this lab started); the cloud lab too if it runs
    (its controller, Helm releases, pods' processes and core; the Kubernetes lab keeps running)."""
    cloud = _kube_cloud()
    if cloud.state_file.is_file():
        cloud.down(purge=purge)
        console.print("cloud lab stopped" + (" and purged" if purge else ""))
    lab = OpenStackLab.load()
    lab.down(purge=purge)
    console.print("openstack lab stopped" + (" and purged" if purge else ""))
