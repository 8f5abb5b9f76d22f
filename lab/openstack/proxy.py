"""The lab proxy: one stable loopback port per service, routed only to its ready pods.

What kube-proxy does for a Service: clients (the catalog's endpoints, the engine's checks, tempest)
use one address that outlives every pod, and a pod gets traffic only while it is ready. So a rolling
update of the lab looks to clients like one in a real cluster: new connections go to ready pods
only, and a pod taken out of the routes before it stops finishes what it serves.

It runs as its own process (``python -m lab.openstack.proxy ROUTES``), so the routes survive the
CLI call or test session that started the cloud. ``ROUTES`` is a JSON file written atomically by the
cloud: ``{"listen": {service: port}, "backends": {service: [port, ...]}}``; it is re-read when its
modification time changes, checked once per new connection (a ``stat``, no polling loop). A service
without a ready pod refuses connections, as a Service without endpoints does.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import sys
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
        ports = self.backends(service)
        if ports:  # round robin, then the others if the chosen pod has just gone
            start = next(self._turn) % len(ports)
            ports = ports[start:] + ports[:start]
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        for port in ports:
            try:
                upstream = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                continue
        if upstream is None:  # no ready endpoint: refuse, as a Service without endpoints
            writer.close()
            return
        up_reader, up_writer = upstream
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def serve(self) -> None:
        listen: dict[str, int] = json.loads(self.routes.read_text())["listen"]
        servers = []
        for service, port in listen.items():

            async def on_connect(r: asyncio.StreamReader, w: asyncio.StreamWriter, service: str = service) -> None:
                await self.handle(service, r, w)

            servers.append(await asyncio.start_server(on_connect, "127.0.0.1", port, reuse_address=True))
        print(f"lab proxy: {', '.join(f'{s}:{p}' for s, p in listen.items())}", flush=True)
        await asyncio.gather(*(s.serve_forever() for s in servers))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
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
