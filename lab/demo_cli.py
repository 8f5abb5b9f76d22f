"""`stackhop demo`: one command, a real upgrade of Keystone 2025.2 → 2026.1 on the labs.

It starts (or reuses) the Temporal dev server with its UI, both labs and a worker, deploys
keystone-api at 28.1.0, runs examples/lab-keystone.yaml with the live progress view, and prints
the report plus what an operator would check by hand afterwards: which release serves, which
image is deployed, whether tokens are issued, and — after a rollback — that the restored database
matches the snapshot table by table. ``--inject`` makes one step fail for real.

Lab code, not product code: ``cli.py`` loads this module by name from a source checkout. Nothing
here changes this process's environment or the CLI's global settings for good: the worker runs as
a subprocess that gets the labs' environment (``DemoLab.worker_env``) as its own, and the demo's
server address, task queue and UI link are a scoped override of the settings. One exception: with
no payload keys configured the demo encrypts with the key file it keeps in .lab/ and sets
STACKHOP_CODEC_KEYS_FILE to it, for itself and its worker (``cliapp.dev.codec_keys``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from rich.table import Table
from temporalio.client import Client

from cliapp.common import FAILED, Fail, connect, out, say, settings
from cliapp.dev import codec_endpoint, die_with_parent, port_open, start_server, stop_event, stop_server
from lab.demo import RELEASE, DemoLab, Inject
from lab.openstack import paths
from model import io
from model.loading import load_plan

ROOT = Path(__file__).resolve().parent.parent
PLAN = ROOT / "examples" / "lab-keystone.yaml"
TASK_QUEUE = "stackhop-demo"  # never shared with a `stackhop dev` worker that lacks the lab's environment
WORKER_READY_TIMEOUT = 60.0
WORKER_STOP_TIMEOUT = 40.0  # the worker's own graceful shutdown is 30 s


async def demo(inject: Inject | None, keep: bool, port: int, ui_port: int, reset: bool = True) -> int:
    started = time.monotonic()
    stop, address, ui, server, codec = await demo_server(port, ui_port)
    lab = None
    try:
        lab = await asyncio.to_thread(_labs, inject, reset)
        with settings.scoped(address=address, profile=None, task_queue=TASK_QUEUE, ui_url=ui):
            client = await connect()
            plan = load_plan(PLAN)
            async with _worker(client, lab.worker_env(), address) as worker_exit:
                say(
                    f"upgrading {plan.cloud.name}: keystone {plan.release.from_} → {plan.release.to}"
                    + (f", with an injected {inject} failure" if inject else "")
                )
                code = await _upgrade(worker_exit, stop)
            report = await _report(client, plan.workflow_id)
        await asyncio.to_thread(_aftermath, lab, report)
        say(f"demo finished in {time.monotonic() - started:.0f}s (exit {code})")
        return code
    finally:
        if lab:
            lab.close()
        down = (lambda: _down(lab)) if lab else None
        await demo_end(keep, stop, server, down, "labs, worker state and the Temporal server are left running", codec)


async def demo_end(
    keep: bool,
    stop: asyncio.Event,
    server: asyncio.subprocess.Process | None,
    down: Callable[[], None] | None,
    kept: str,
    codec: contextlib.AsyncExitStack | None = None,
) -> None:
    """How both demos end: ``--keep`` leaves what ``kept`` says running (and waits for Ctrl-C to stop
    the Temporal server this demo started); otherwise ``down`` (None: nothing came up) tears the labs
    down, then the server goes, then the codec server."""
    if keep:
        say(f"--keep: {kept}")
        if server:
            say("press Ctrl-C to stop the Temporal server")
            with contextlib.suppress(asyncio.CancelledError):
                await stop.wait()
    elif down is not None:
        await asyncio.to_thread(down)
    if server and (not keep or stop.is_set()):
        await stop_server(server)
    if codec is not None:
        await codec.aclose()


async def demo_server(
    port: int, ui_port: int
) -> tuple[asyncio.Event, str, str, asyncio.subprocess.Process | None, contextlib.AsyncExitStack]:
    """What both demos start with: quiet logs (the progress view tells the story; logs only for
    trouble), the Ctrl-C event, payload encryption with the codec server for the UI (the configured
    keys, or a key file kept in .lab/: ``cliapp.dev.codec_endpoint``; the stack returned stops the
    codec server), and the Temporal dev server with its UI on ``port`` wired to it — reused when one
    listens there (then the server returned is None and is not stopped at the end)."""
    if "STACKHOP_LOG_LEVEL" not in os.environ:
        from model.logs import configure

        configure("WARNING")
    stop = stop_event()
    address = f"127.0.0.1:{port}"
    ui = os.environ.get("STACKHOP_UI_URL") or f"http://127.0.0.1:{ui_port}"
    server = None
    codec = contextlib.AsyncExitStack()
    codec_url = await codec.enter_async_context(codec_endpoint(ROOT / ".lab", ui_port))
    try:
        if port_open(port):
            say(f"reusing the Temporal server on {address}")
        else:
            server = await start_server(port, ui_port, ROOT / ".lab" / "demo-temporal.db", stop, codec_url)
    except BaseException:
        await codec.aclose()
        raise
    say(f"Temporal UI: {ui}/namespaces/default/workflows")
    return stop, address, ui, server, codec


async def _upgrade(worker_exit: asyncio.Task[int], stop: asyncio.Event, plan: Path = PLAN) -> int:
    """Start the plan and follow it; stop with the worker's log if the worker dies meanwhile (Ctrl-C
    reaches the worker too: it drains and exits, and the upgrade waits in Temporal for a worker)."""
    from cliapp.upgrades import start

    upgrade = asyncio.create_task(start(plan, [], wait=True))
    await asyncio.wait({upgrade, worker_exit}, return_when=asyncio.FIRST_COMPLETED)
    if upgrade.done():
        return upgrade.result()
    upgrade.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await upgrade
    if stop.is_set():
        raise Fail(FAILED, "interrupted: the upgrade waits in Temporal; `make demo` again resumes it with a new worker")
    raise Fail(FAILED, f"the demo worker exited (code {worker_exit.result()}); its log: {worker_log()}")


def worker_log() -> Path:
    return paths.lab_dir().parent / "demo-worker.log"


def worker_env(lab_env: dict[str, str], address: str) -> dict[str, str]:
    """The worker subprocess's environment: ours without Temporal settings, plus the labs' and the
    demo server's (worker.py reads TEMPORAL_ADDRESS and STACKHOP_TASK_QUEUE)."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    return {
        **inherited,
        **lab_env,
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_NAMESPACE": "default",
        "STACKHOP_TASK_QUEUE": TASK_QUEUE,
    }


@contextlib.asynccontextmanager
async def _worker(client: Client, lab_env: dict[str, str], address: str) -> AsyncIterator[asyncio.Task[int]]:
    """A `python -m worker` subprocess for the demo's task queue, polling before this yields; the
    task yielded finishes with the worker's exit code. SIGTERM (graceful drain) on the way out."""
    log = worker_log()
    with log.open("ab") as log_fh:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "worker",
            cwd=ROOT,
            env=worker_env(lab_env, address),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log_fh,
            stderr=log_fh,
            preexec_fn=die_with_parent,
        )
    exited = asyncio.create_task(proc.wait())
    try:
        with out().status(f"worker starting (log {log})"):
            await _wait_polling(client, proc.pid, exited)
        say(f"worker polling task queue {TASK_QUEUE} (pid {proc.pid}, log {log})")
        yield exited
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(exited), WORKER_STOP_TIMEOUT)
            except TimeoutError:
                proc.kill()
        await exited


async def _wait_polling(client: Client, pid: int, exited: asyncio.Task[int]) -> None:
    """Until the worker with this pid polls the demo's task queue (its identity is ``pid@host``)."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=TASK_QUEUE),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    deadline = time.monotonic() + WORKER_READY_TIMEOUT
    while True:
        if exited.done():
            raise Fail(FAILED, f"the demo worker exited (code {exited.result()}) before polling; log {worker_log()}")
        described = await client.workflow_service.describe_task_queue(request)
        if any(p.identity.startswith(f"{pid}@") for p in described.pollers):
            return
        if time.monotonic() > deadline:
            raise Fail(FAILED, f"the demo worker did not poll within {WORKER_READY_TIMEOUT:.0f}s; log {worker_log()}")
        await asyncio.sleep(0.2)


def _labs(inject: Inject | None, reset: bool = True) -> DemoLab:
    from lab.demo import demo_kube_lab
    from lab.k8s import build
    from lab.openstack.manager import OpenStackLab

    con = out()
    with con.status("building (once, ~12 min) or reusing the Kubernetes lab binaries and helm"):
        build.build_all()  # a no-op when the version-keyed cache is warm
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
        osl.up("28.1.0" if reset else None)
        if not osl.baseline_file.exists():
            osl.save_baseline()
    assert osl.keystone
    say(f"OpenStack lab up in {time.monotonic() - t:.1f}s (Keystone at {osl.keystone.url})")
    lab = DemoLab(kube, osl)
    doing = (
        "deploying keystone-api 28.1.0 (Helm release keystone, chart 2025.2.0) on a fresh Keystone database"
        if reset
        else "reusing the labs as they are"
    )
    with con.status(doing):
        t = time.monotonic()
        lab.prepare(inject, reset=reset)
    image = lab.deployed_image().rsplit(":", 1)[-1]
    say(f"keystone-api {image} available, Keystone {lab.served_release()} serving ({time.monotonic() - t:.1f}s)")
    return lab


def _aftermath(lab: DemoLab, report: io.UpgradeReport | None) -> None:
    """What an operator checks by hand after the upgrade."""
    table = Table(title="after the upgrade", show_header=False)
    table.add_row("keystone-api image", lab.deployed_image())
    table.add_row("Keystone serving", str(lab.served_release()))
    table.add_row("token issue", "works" if lab.token_works() else "FAILS")
    if lab.deploy == "helm":
        for h in lab.helm().history(RELEASE):
            table.add_row(f"helm revision {h['revision']}", f"{h['chart']} {h['status']}: {h['description']}")
        changed = lab.values_changes()
        table.add_row(
            "helm get values",
            "equal to examples/lab-keystone-values.yaml"
            + (" except " + ", ".join(f"{k}={v[1]}" for k, v in changed.items()) if changed else ""),
        )
    for svc in report.services if report else []:
        if svc.snapshot:
            table.add_row(
                f"{svc.service} snapshot", f"sha256 {svc.snapshot.sha256[:16]}… {svc.snapshot.size_bytes} bytes"
            )
        if svc.rollback:
            rb = svc.rollback
            table.add_row(f"{svc.service} rollback", f"{rb.kind}; lost: {rb.lost or 'nothing'}")
        if svc.restore:
            same = svc.restore.table_checksums == svc.snapshot.table_checksums if svc.snapshot else False
            verdict = "EQUAL to" if same else "DIFFER from"
            table.add_row(
                f"{svc.service} restore", f"{len(svc.restore.table_checksums)} table checksums {verdict} the snapshot's"
            )
        if svc.tempest:
            t = svc.tempest
            table.add_row(
                "tempest",
                f"{t.status}: {t.passed} passed, {t.failed} failed, {t.skipped} skipped"
                + (f" — failing: {', '.join(t.failing_tests[:3])}" if t.failing_tests else ""),
            )
    out().print(table)


async def _report(client: Client, wf_id: str) -> io.UpgradeReport | None:
    from cliapp.render import outcome_of

    _, report, _ = await outcome_of(client.get_workflow_handle(wf_id, result_type=io.UpgradeReport))
    return report


def _down(lab: DemoLab) -> None:
    with out().status("stopping the labs"):
        lab.kube.down()
        lab.openstack.down()
    say("labs stopped")
