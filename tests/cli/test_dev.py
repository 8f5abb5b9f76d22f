"""`stackhop dev`: a real dev server plus a worker, stopped without orphans however it is stopped."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from model.codec import KEYS_ENV, KEYS_FILE_ENV
from tests.waiting import eventually

KEY_ENVS = (KEYS_ENV, KEYS_FILE_ENV)

STACKHOP = str(Path(sys.executable).parent / "stackhop")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def http_status(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as r:
        status: int = r.status
        return status


def ui_codec_endpoint(ui: str) -> str:
    """The codec endpoint the dev server's UI was started with, as the UI's own settings API says."""
    with urllib.request.urlopen(f"{ui}/api/v1/settings", timeout=10) as r:
        endpoint: str = json.load(r)["Codec"]["Endpoint"]
        return endpoint


def preflight(endpoint: str, origin: str) -> dict[str, str]:
    """The CORS preflight a browser sends before the UI's POST /decode; the answer's headers."""
    request = urllib.request.Request(
        f"{endpoint}/decode",
        method="OPTIONS",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-namespace",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        return dict(r.headers)


def temporal_child(pid: int) -> int:
    """The one child of ``pid`` that runs the Temporal server."""
    (server,) = [p for p in children(pid) if "temporal" in Path(f"/proc/{p}/cmdline").read_text()]
    return server


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


class Dev:
    """A `stackhop dev` process in its own session, its stdout read line by line."""

    def __init__(self, *args: str, without: tuple[str, ...] = ()):
        env = {**os.environ, "STACKHOP_TASK_QUEUE": f"dev-{uuid.uuid4().hex[:8]}", "STACKHOP_LOG_LEVEL": "WARNING"}
        for name in without:
            env.pop(name, None)
        self.proc = subprocess.Popen(
            [STACKHOP, "dev", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        self._start_readers()

    def _start_readers(self) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.lines.put), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err.append), daemon=True),
        ]
        for t in self.readers:
            t.start()

    @staticmethod
    def _read(stream: IO[str], sink: Callable[[str], object]) -> None:
        for line in stream:
            sink(line)

    def wait_for(self, text: str, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.out.append(line)
            if text in line:
                return line
        self.stop_now()
        raise AssertionError(f"no {text!r} in {self.out}; stderr: {''.join(self.err)}")

    def stop_now(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.finish()

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        """Wait for the exit; (exit code, stderr). Output lines end up in self.out."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for t in self.readers:
            t.join(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            assert stream is not None  # both are pipes
            stream.close()
        while not self.lines.empty():
            self.out.append(self.lines.get())
        return self.proc.returncode, "".join(self.err)


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C", "SIGKILL"])
async def test_dev_starts_server_and_worker_and_leaves_nothing_behind(tmp_path: Path, how: str) -> None:
    port, ui_port = free_port(), free_port()
    # no payload keys configured: dev generates a key file beside its state and serves it to the UI
    dev = Dev("--port", str(port), "--ui-port", str(ui_port), "--db-file", str(tmp_path / "dev.db"), without=KEY_ENVS)
    try:
        encrypted = await asyncio.to_thread(dev.wait_for, "payloads encrypted")
        codec = encrypted.split()[-1]
        assert f"{KEYS_FILE_ENV}={tmp_path / 'codec-keys'}" in encrypted
        assert (tmp_path / "codec-keys").stat().st_mode & 0o777 == 0o600
        ui = await asyncio.to_thread(dev.wait_for, "UI: ")
        assert ui.strip() == f"UI: http://127.0.0.1:{ui_port}/namespaces/default/workflows"
        assert await asyncio.to_thread(ui_codec_endpoint, f"http://127.0.0.1:{ui_port}") == codec
        allowed = await asyncio.to_thread(preflight, codec, f"http://127.0.0.1:{ui_port}")
        assert allowed["Access-Control-Allow-Origin"] == f"http://127.0.0.1:{ui_port}"
        await asyncio.to_thread(dev.wait_for, "worker running on task queue dev-")
        client = await Client.connect(f"127.0.0.1:{port}")
        assert client.namespace == "default"
        await client.count_workflows("StackhopCloud = 'x'")  # the search attributes are registered
        assert await asyncio.to_thread(http_status, f"http://127.0.0.1:{ui_port}/") == 200
        server = temporal_child(dev.proc.pid)
        assert os.getpgid(server) == os.getpgid(dev.proc.pid)  # same process group
        if how == "SIGTERM":
            dev.proc.send_signal(signal.SIGTERM)
        elif how == "Ctrl-C":
            os.killpg(dev.proc.pid, signal.SIGINT)  # what a terminal sends to the foreground group
        else:
            dev.proc.kill()
        code, err = await asyncio.to_thread(dev.finish)
        if how != "SIGKILL":
            assert code == 0, err
            assert any("Temporal dev server stopped" in line for line in dev.out), dev.out
        await eventually(lambda: not alive(server), within=20, what=f"server {server} gone after stackhop dev ({how})")
        assert not listening(port) and not listening(ui_port)
        assert not listening(int(codec.rsplit(":", 1)[1]))
    finally:
        dev.stop_now()


async def test_dev_on_a_port_that_already_answers_runs_only_the_worker(
    temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    port = int(temporal_env.client.service_client.config.target_host.rsplit(":", 1)[1])
    dev = Dev("--port", str(port), "--db-file", str(tmp_path / "unused.db"))
    try:
        await asyncio.to_thread(dev.wait_for, "already answers on 127.0.0.1:")
        await asyncio.to_thread(dev.wait_for, "worker running")
        dev.proc.send_signal(signal.SIGTERM)
        code, err = await asyncio.to_thread(dev.finish)
        assert code == 0, err
        assert not any("dev server stopped" in line for line in dev.out)
        assert not (tmp_path / "unused.db").exists()
    finally:
        dev.stop_now()
    await temporal_env.client.count_workflows()  # the existing server is untouched


def test_dev_refuses_a_port_used_by_something_else(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        dev = Dev("--port", str(s.getsockname()[1]), "--db-file", str(tmp_path / "x.db"))
        code, err = dev.finish(timeout=60)
    assert code == 3 and "does not answer as Temporal" in err


def worker_proc(address: str, tq: str) -> Dev:
    dev = Dev.__new__(Dev)
    env = {**os.environ, "TEMPORAL_ADDRESS": address, "STACKHOP_TASK_QUEUE": tq, "STACKHOP_LOG_LEVEL": "WARNING"}
    dev.proc = subprocess.Popen(
        [STACKHOP, "worker"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    Dev._start_readers(dev)
    return dev


async def test_worker_command_runs_until_sigterm(temporal_env: WorkflowEnvironment) -> None:
    tq = f"w-{uuid.uuid4().hex[:8]}"
    dev = worker_proc(temporal_env.client.service_client.config.target_host, tq)
    try:
        assert f"worker running on task queue {tq}" in await asyncio.to_thread(dev.wait_for, "worker running")
        dev.proc.send_signal(signal.SIGTERM)
        code, err = await asyncio.to_thread(dev.finish)
        assert code == 0, err
    finally:
        dev.stop_now()
