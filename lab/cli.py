"""`stackhop lab ...`: the test labs from the command line (a source checkout only).

``cli.py`` hands the arguments after ``stackhop lab`` to ``app`` here. ``up``/``down`` act on both
labs at once (the demo and the tests use the same ones); ``k8s`` and ``openstack`` reach each lab.
"""

from __future__ import annotations

import typer

from cliapp.common import out
from lab.k8s.cli import app as k8s_app
from lab.openstack.cli import app as openstack_app

app = typer.Typer(
    help="Test labs (Kubernetes with kwok, OpenStack Keystone).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(k8s_app, name="k8s")
app.add_typer(openstack_app, name="openstack")


@app.command("up")
def lab_up() -> None:
    """Start the Kubernetes lab and the OpenStack lab; print where they are."""
    from lab.demo import demo_kube_lab
    from lab.k8s import build
    from lab.openstack.manager import OpenStackLab

    build.build()
    out().print(f"kubeconfig: {demo_kube_lab().up()}")
    osl = OpenStackLab.load()
    osl.up()
    assert osl.keystone
    out().print(f"keystone: {osl.keystone.url} ({osl.keystone.release}); clouds.yaml: {osl.clouds_yaml}")


@app.command("down")
def lab_down() -> None:
    """Stop both labs (their state stays under .lab/)."""
    from lab.demo import demo_kube_lab
    from lab.openstack.manager import OpenStackLab

    demo_kube_lab().down()
    OpenStackLab.load().down()
    out().print("labs stopped")
