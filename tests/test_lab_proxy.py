"""The cloud lab's proxy (lab/openstack/proxy.py) when a pod goes away under a request: a pod that
closes a connection without answering (stopped with the connection in its listen backlog) gets an
idempotent request replayed on another ready pod; a POST is never replayed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lab.openstack import paths
from lab.openstack.proxy import Proxy, write_routes
from tests.waiting import eventually


async def _answers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    await writer.drain()
    writer.close()


async def _hangs_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")  # the request arrived; the pod stops before answering
    writer.close()


@contextlib.asynccontextmanager
async def proxied(tmp_path: Path, *handlers: object) -> AsyncIterator[int]:
    """A proxy routing service "svc" to one server per handler, in that order; yields its port."""
    servers = [await asyncio.start_server(h, "127.0.0.1", 0) for h in handlers]  # type: ignore[arg-type]
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    listen = paths.free_port()
    routes = tmp_path / "routes.json"
    write_routes(routes, {"svc": listen}, {"svc": ports})
    proxy = asyncio.create_task(Proxy(routes).serve())

    async def listening() -> bool:
        _, w = await asyncio.open_connection("127.0.0.1", listen)
        w.close()
        return True

    try:
        await eventually(listening, within=10, what="the proxy listening", ignore=(OSError,))
        yield listen
    finally:
        proxy.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await proxy
        for s in servers:
            s.close()


async def call(port: int, method: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} / HTTP/1.1\r\nHost: lab\r\nContent-Length: 0\r\n\r\n".encode())
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer


@pytest.mark.parametrize("order", ["gone-first", "gone-second"])
async def test_a_get_the_gone_pod_never_answered_is_answered_by_the_other(tmp_path: Path, order: str) -> None:
    handlers = (_hangs_up, _answers) if order == "gone-first" else (_answers, _hangs_up)
    async with proxied(tmp_path, *handlers) as port:
        answers = [await call(port, "GET") for _ in range(6)]  # round robin: both pods chosen first
    assert all(a.startswith(b"HTTP/1.1 200") for a in answers), answers


async def test_a_post_is_not_replayed_and_no_pod_left_is_a_refusal(tmp_path: Path) -> None:
    async with proxied(tmp_path, _hangs_up) as port:
        assert await call(port, "POST") == b""  # closed without an answer, as the pod did
        assert await call(port, "GET") == b""  # no other pod to replay on
