"""`stackhop demo --fleet`: a fleet of five lab Keystone clouds upgraded 2025.2 → 2026.1 in waves.

The keystone demo's labs (its Kubernetes lab and OpenStack lab, ``demo_cli._labs`` without the demo
cloud itself) carry the lab fleet (lab/fleet.py): lab-a to lab-e, each its own namespace, Helm
release, schema and served Keystone. One worker with the fleet's environment runs
examples/fleet/fleet.yaml through `stackhop fleet start --wait`: the canary lab-a, then lab-b and
lab-c at once, then lab-d and lab-e one at a time. ``--inject migration`` (or ``rollout``) makes
lab-d fail for real (schema drift in its own schema; or its 2026.1 pods never become Ready): it is
rolled back alone, the wave stops at its threshold (max_failed 0) and lab-e is never started.
Afterwards, per cloud, what an operator checks: the image deployed, the Keystone serving, whether
it issues tokens, and the schema's alembic revision.

Lab code, not product code: ``cli.py`` loads it by name from a source checkout.
"""

from __future__ import annotations

import asyncio
import time

from rich.table import Table

from lab.demo import Inject
from lab.fleet import FleetLab
from lab.k8s.versions import REPO_ROOT

FLEET = REPO_ROOT / "examples" / "fleet" / "fleet.yaml"
INJECTED_CLOUD = "lab-d"


async def fleet_demo(inject: Inject | None, keep: bool, port: int, ui_port: int) -> int:
    from cliapp.common import connect, out, say, settings
    from cliapp.fleets import start
    from lab import demo_cli

    started = time.monotonic()
    stop, address, ui, server, codec = await demo_cli.demo_server(port, ui_port)
    fleet: FleetLab | None = None
    try:
        fleet = await asyncio.to_thread(_fleet_lab, inject)
        with settings.scoped(address=address, profile=None, task_queue=demo_cli.TASK_QUEUE, ui_url=ui):
            client = await connect()
            async with demo_cli._worker(client, fleet.worker_env(), address) as worker_exit:
                say(
                    "upgrading the fleet: canary lab-a, then lab-b and lab-c, then lab-d and lab-e"
                    + (f", with an injected {inject} failure in {INJECTED_CLOUD}" if inject else "")
                )
                run = asyncio.create_task(start(FLEET, wait=True))
                await asyncio.wait({run, worker_exit}, return_when=asyncio.FIRST_COMPLETED)
                if not run.done():
                    run.cancel()
                    say(f"the demo worker exited (code {worker_exit.result()}); its log: {demo_cli.worker_log()}")
                    return 1
                code = run.result()
        await asyncio.to_thread(_aftermath, fleet)
        say(f"fleet demo finished in {time.monotonic() - started:.0f}s (exit {code})")
        return code
    finally:
        if fleet is not None:
            fleet.close()

        def down() -> None:
            assert fleet is not None
            with out().status("stopping the labs"):
                fleet.delete_namespaces()
                fleet.kube.down()
                fleet.openstack.down()
            say("labs stopped")

        kept = (
            "the labs and the Temporal server are left running (the clouds' Keystones stopped with their controllers)"
        )
        await demo_cli.demo_end(keep, stop, server, down if fleet else None, kept, codec)


def _fleet_lab(inject: Inject | None) -> FleetLab:
    from cliapp.common import out, say
    from lab.demo import demo_kube_lab
    from lab.k8s import build
    from lab.openstack.manager import OpenStackLab

    with out().status("building (once) or reusing the Kubernetes lab binaries and helm"):
        build.build_all()
        kube = demo_kube_lab()
        kube.up()
    with out().status("starting the OpenStack lab (MariaDB, and the Keystone 28.1.0 baseline every cloud starts from)"):
        osl = OpenStackLab.load()
        if not osl.baseline_file.exists():  # the baseline must be a freshly bootstrapped 28.1.0
            osl.down(purge=True)
            osl = OpenStackLab.load()
        osl.up("28.1.0")
        if not osl.baseline_file.exists():
            osl.save_baseline()
    fleet = FleetLab(kube, osl)
    t = time.monotonic()
    with out().status(f"deploying {len(fleet.clouds)} clouds: keystone-api 28.1.0 (Helm) on a Keystone of their own"):
        fleet.prepare({INJECTED_CLOUD: inject} if inject else None)
    say(f"{', '.join(fleet.clouds)} at 28.1.0, each serving its own Keystone ({time.monotonic() - t:.1f}s)")
    return fleet


def _aftermath(fleet: FleetLab) -> None:
    from cliapp.common import out

    table = Table(title="after the fleet", title_justify="left")
    for col in ("cloud", "keystone-api image", "Keystone serving", "token issue", "schema (alembic)"):
        table.add_column(col)
    for cloud, lab in fleet.labs.items():
        table.add_row(
            cloud,
            lab.deployed_image(),
            str(lab.served_release()),
            "works" if lab.token_works() else "FAILS",
            fleet.schema_version(cloud),
        )
    out().print(table)
