"""`stackhop demo`: one command, a real upgrade of Keystone 2025.2 → 2026.1 on the labs.

It starts (or reuses) the Temporal dev server with its UI, both labs and a worker, deploys
keystone-api at 28.1.0, runs examples/lab-keystone.yaml with the live progress view, and prints
the report plus what an operator would check by hand afterwards: which release serves, which
image is deployed, whether tokens are issued, and — after a rollback — that the restored database
matches the snapshot table by table. ``--inject`` makes one step fail for real.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path

from rich.table import Table

from cliapp.common import connect, out, say, settings
from cliapp.dev import _stop_event, _stop_server, port_open, start_server
from model import io
from model.loading import load_plan

ROOT = Path(__file__).resolve().parent.parent
PLAN = ROOT / "examples" / "lab-keystone.yaml"
TASK_QUEUE = "stackhop-demo"  # never shared with a `stackhop dev` worker that lacks the lab's environment


async def demo(inject: str | None, keep: bool, port: int, ui_port: int) -> int:
    started = time.monotonic()
    if "STACKHOP_LOG_LEVEL" not in os.environ:  # the progress view tells the story; logs only for trouble
        from model.logs import configure

        configure("WARNING")
        # Failing activities are part of the --inject story; their tracebacks are in the UI.
        logging.getLogger("temporalio.activity").setLevel(logging.ERROR)
    stop = _stop_event()
    settings.address, settings.profile, settings.task_queue = f"127.0.0.1:{port}", None, TASK_QUEUE
    os.environ.setdefault("STACKHOP_UI_URL", f"http://127.0.0.1:{ui_port}")
    server = None
    if port_open(port):
        say(f"reusing the Temporal server on 127.0.0.1:{port}")
    else:
        server = await start_server(port, ui_port, ROOT / ".lab" / "demo-temporal.db", stop)
    say(f"Temporal UI: http://127.0.0.1:{ui_port}/namespaces/default/workflows")
    lab = None
    try:
        lab = await asyncio.to_thread(_labs, inject)
        os.environ.update(lab.worker_env())
        client = await connect()
        import worker

        with out().status("worker starting"):
            w = worker.build_worker(client, task_queue=TASK_QUEUE)
        async with w:
            from cliapp.upgrades import start

            plan = load_plan(PLAN)
            say(
                f"upgrading {plan.cloud.name}: keystone {plan.release.from_} → {plan.release.to}"
                + (f", with an injected {inject} failure" if inject else "")
            )
            code = await start(PLAN, [], wait=True)
        report = await _report(client, plan.workflow_id)
        await asyncio.to_thread(_aftermath, lab, report)
        say(f"demo finished in {time.monotonic() - started:.0f}s (exit {code})")
        return code
    finally:
        if lab:
            lab.close()
        if keep:
            say("--keep: labs, worker state and the Temporal server are left running")
            if server:
                say("press Ctrl-C to stop the Temporal server")
                with contextlib.suppress(asyncio.CancelledError):
                    await stop.wait()
        elif lab:
            await asyncio.to_thread(_down, lab)
        if server and (not keep or stop.is_set()):
            await _stop_server(server)


def _labs(inject: str | None):
    from lab.demo import DemoLab, demo_kube_lab
    from lab.openstack.manager import OpenStackLab

    con = out()
    with con.status("building (once, ~8 min) or reusing the Kubernetes lab binaries"):
        from lab.k8s import build

        build.build()  # a no-op when the version-keyed cache is warm
        kube = demo_kube_lab()
        t = time.monotonic()
        kube.up()
    say(f"Kubernetes lab up in {time.monotonic() - t:.1f}s (kubeconfig {kube.kubeconfig})")
    with con.status("starting the OpenStack lab (MariaDB + Keystone 28.1.0)"):
        t = time.monotonic()
        osl = OpenStackLab.load()
        if not osl.baseline_file.exists():  # the baseline must be a freshly bootstrapped 28.1.0
            osl.down(purge=True)
            osl = OpenStackLab.load()
        osl.up("28.1.0")
        if not osl.baseline_file.exists():
            osl.save_baseline()
    say(f"OpenStack lab up in {time.monotonic() - t:.1f}s (Keystone at {osl.keystone.url})")
    lab = DemoLab(kube, osl)
    with con.status("deploying keystone-api 28.1.0 on a fresh Keystone database"):
        t = time.monotonic()
        lab.prepare(inject)  # type: ignore[arg-type]
    say(f"keystone-api 28.1.0 available, Keystone {lab.served_release()} serving ({time.monotonic() - t:.1f}s)")
    return lab


def _aftermath(lab, report: io.UpgradeReport | None) -> None:
    """What an operator checks by hand after the upgrade."""
    table = Table(title="after the upgrade", show_header=False)
    table.add_row("keystone-api image", lab.deployed_image())
    table.add_row("Keystone serving", str(lab.served_release()))
    table.add_row("token issue", "works" if lab.token_works() else "FAILS")
    for svc in report.services if report else []:
        if svc.snapshot:
            table.add_row(
                f"{svc.service} snapshot", f"sha256 {svc.snapshot.sha256[:16]}… {svc.snapshot.size_bytes} bytes"
            )
        if svc.restore:
            same = svc.restore.table_checksums == svc.snapshot.table_checksums if svc.snapshot else False
            table.add_row(
                f"{svc.service} restore",
                f"{len(svc.restore.table_checksums)} table checksums {'EQUAL to' if same else 'DIFFER from'} the snapshot's",
            )
        if svc.tempest:
            t = svc.tempest
            table.add_row(
                "tempest",
                f"{t.status}: {t.passed} passed, {t.failed} failed, {t.skipped} skipped"
                + (f" — failing: {', '.join(t.failing_tests[:3])}" if t.failing_tests else ""),
            )
    out().print(table)


async def _report(client, wf_id: str) -> io.UpgradeReport | None:
    from cliapp.render import outcome_of

    _, report, _ = await outcome_of(client.get_workflow_handle(wf_id, result_type=io.UpgradeReport))
    return report


def _down(lab) -> None:
    with out().status("stopping the labs"):
        lab.kube.down()
        lab.openstack.down()
    say("labs stopped")
