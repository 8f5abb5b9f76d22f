"""The lab proxy: one stable loopback port per service, routed only to its ready pods.

What kube-proxy does for a Service: clients (the catalog's endpoints, the engine's checks, tempest)
use one address that outlives every pod, and a pod gets traffic only while it is ready. So a rolling
update of the lab looks to clients like one in a real cluster: new connections go to ready pods
only, and a pod taken out of the routes before it stops finishes what it serves.

It runs as its own process (``python -m lab.openstack.proxy ROUTES``), so the routes survive the
CLI call or test session that started the cloud. ``ROUTES`` is a JSON file written atomically by the
cloud: ``{"listen": {service: port}, "backends": {service: [port, ...]}}``; it is re-read when its
modification time changes, checked once per new connection (a ``stat``, no polling loop). A service
without a ready pod refuses connections, as a Service without endpoints does. A connection routed a
moment before its pod stopped (still in the pod's listen backlog, never answered) has its request
replayed on another ready pod when it is idempotent, as an ingress controller retries the next
upstream: a rolling update's clients see no dropped call.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

Routes = dict[str, list[int]]


def write_routes(path: Path, listen: dict[str, int], backends: Routes) -> None:
    """Atomically replace the routes file (the proxy never reads half a file)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"listen": listen, "backends": backends}, indent=1, sort_keys=True))
    os.replace(tmp, path)


class Proxy:
    def __init__(self, routes: Path) -> None:
        self.routes = routes
        self._mtime = 0.0
        self._backends: Routes = {}
        self._turn = itertools.count()

    def backends(self, service: str) -> list[int]:
        mtime = self.routes.stat().st_mtime
        if mtime != self._mtime:
            self._backends = json.loads(self.routes.read_text())["backends"]
            self._mtime = mtime
        return list(self._backends.get(service, []))

    async def handle(self, service: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Pipe the client to a ready pod. A pod that closes the connection without a byte of an
        answer (it was stopped with the connection still in its listen backlog: the routes said
        ready a moment before) gets an idempotent request replayed on another ready pod, as
        ingress-nginx's ``proxy_next_upstream error`` does; anything else is piped as it comes."""
        sent = bytearray()  # the client's bytes until the first byte of an answer
        tried: set[int] = set()
        while True:
            upstream = await self._connect(service, tried)
            if upstream is None:  # no ready endpoint: refuse, as a Service without endpoints
                writer.close()
                return
            up_reader, up_writer = upstream
            try:
                if sent:
                    up_writer.write(bytes(sent))
                    await up_writer.drain()
            except (ConnectionError, OSError):
                continue
            if await _relay(reader, writer, up_reader, up_writer, sent) or not _replayable(sent):
                return

    async def _connect(self, service: str, tried: set[int]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A connection to a ready pod not tried yet: round robin, then the others if the chosen pod
        has just gone."""
        ports = [p for p in self.backends(service) if p not in tried]
        if ports:
            start = next(self._turn) % len(ports)
            ports = ports[start:] + ports[:start]
        for port in ports:
            tried.add(port)
            try:
                return await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
        return None

    async def serve(self) -> None:
        listen: dict[str, int] = json.loads(self.routes.read_text())["listen"]
        servers = []
        for service, port in listen.items():

            async def on_connect(r: asyncio.StreamReader, w: asyncio.StreamWriter, service: str = service) -> None:
                await self.handle(service, r, w)

            servers.append(await asyncio.start_server(on_connect, "127.0.0.1", port, reuse_address=True))
        print(f"lab proxy: {', '.join(f'{s}:{p}' for s, p in listen.items())}", flush=True)
        await asyncio.gather(*(s.serve_forever() for s in servers))


IDEMPOTENT = (b"GET ", b"HEAD ", b"OPTIONS ", b"PUT ", b"DELETE ")


def _replayable(sent: bytes | bytearray) -> bool:
    return bool(sent) and sent.startswith(IDEMPOTENT)


async def _relay(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
    sent: bytearray,
) -> bool:
    """Both directions until both end; False when the pod closed before answering anything (the
    client's side is then left open for a replay, and ``sent`` holds what it sent)."""
    answered = asyncio.Event()

    def keep(data: bytes) -> None:
        if not answered.is_set():
            sent.extend(data)

    up = asyncio.create_task(_pipe(reader, up_writer, keep))
    try:
        first = await up_reader.read(65536)
    except (ConnectionError, OSError):
        first = b""
    if not first:
        up.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await up
        if _replayable(sent):
            return False
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()
        return True
    answered.set()
    try:
        writer.write(first)
        await writer.drain()
    except (ConnectionError, OSError):
        pass
    await asyncio.gather(up, _pipe(up_reader, writer))
    return True


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tap: Callable[[bytes], None] | None = None
) -> None:
    """Copy until the reader ends, then close the writer; ``tap`` sees each chunk first."""
    try:
        while data := await reader.read(65536):
            if tap is not None:
                tap(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()


def main() -> None:
    asyncio.run(Proxy(Path(sys.argv[1])).serve())


if __name__ == "__main__":
    main()
