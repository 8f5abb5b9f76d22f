"""What the cloud lab holds across an upgrade: seed it before, check it after.

``seed(conn)`` creates, through openstacksdk (``CloudLab.connect()``, an admin connection):

* an **image**: a few KiB of deterministic bytes, uploaded to glance's file store (``PUT /file``);
  its glance ``checksum`` (md5), ``os_hash_algo``/``os_hash_value`` (sha512) and size are recorded;
* a **network** without subnet or port;
* a **flavor** (``stackhop.seed``: 1 vCPU, 64 MiB, 1 GiB disk) when none of that name exists;
* **servers**, ``per_host`` on every enabled nova-compute host (``availability_zone="nova:<host>"``
  puts each on its host and pins it to no zone: the data plane's drain may move it to any zone),
  each with ``networks: "none"`` (compute microversion 2.37 or later: the
  lab's neutron binds no port), waited for until ACTIVE; the host each runs on is recorded.

``after(conn, seeded, moved)`` lists the problems (empty: all is well): every seeded server still
exists, is ACTIVE and runs on the host it was seeded on (``OS-EXT-SRV-ATTR:host``), or on the host
the upgrade's drain moved it to (``moved``: server id -> host, from the report); the image is active
and its data, downloaded again, has the recorded size, md5 and sha512, and glance still reports
the recorded checksum; the network still exists.

``Seeded`` is a small JSON-serialisable dataclass (``save``/``load``, ``to_dict``/``from_dict``) so a
demo can keep it in a file between its steps.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PREFIX = "stackhop-seed"
FLAVOR = "stackhop.seed"
IMAGE_BYTES = 8 * 1024  # small: the file store keeps it under the glance directory
#: networks="none" needs this compute microversion (before it, omitting networks meant "auto")
NETWORKS_NONE_MICROVERSION = (2, 37)


@dataclass
class SeededServer:
    id: str
    name: str
    host: str


@dataclass
class Seeded:
    """What ``seed`` created and what ``after`` compares against."""

    image_id: str
    image_name: str
    image_size: int
    image_checksum: str  # glance's `checksum`: md5 of the data
    image_hash_algo: str  # glance's `os_hash_algo` (sha512)
    image_hash_value: str  # glance's `os_hash_value`
    network_id: str
    network_name: str
    flavor_id: str
    servers: list[SeededServer] = field(default_factory=list)
    seconds: float = 0.0  # how long seeding took

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Seeded:
        fields = dict(data)
        fields["servers"] = [SeededServer(**s) for s in fields.get("servers", [])]
        return cls(**fields)

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> Seeded:
        data: dict[str, Any] = json.loads(path.read_text())
        return cls.from_dict(data)


def image_data(size: int = IMAGE_BYTES, seed: str = PREFIX) -> bytes:
    """Deterministic bytes (a sha256 chain) of ``size``: the same image content every run."""
    out, block = bytearray(), seed.encode()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


def ensure_flavor(conn: Any, name: str = FLAVOR, *, ram: int = 64, vcpus: int = 1, disk: int = 1) -> Any:
    """The flavor ``name``, created (public) when missing. Disk 1 GiB: nova refuses a zero-disk
    flavor to non-admins for image-backed servers (policy ``servers:create:zero_disk_flavor``)."""
    found = conn.compute.find_flavor(name, ignore_missing=True)
    if found is not None:
        return found
    return conn.compute.create_flavor(name=name, ram=ram, vcpus=vcpus, disk=disk, is_public=True)


def upload_image(conn: Any, name: str, data: bytes, *, visibility: str = "private") -> Any:
    """An image of ``data`` (raw, bare) uploaded to the store by ``PUT /v2/images/{id}/file``,
    waited for until active."""
    return conn.image.create_image(
        name=name,
        data=data,
        disk_format="raw",
        container_format="bare",
        allow_duplicates=True,
        wait=True,
        timeout=120,
        visibility=visibility,
    )


def compute_hosts(conn: Any) -> list[str]:
    """Every enabled nova-compute host that is up, sorted."""
    return sorted(
        s.host
        for s in conn.compute.services()
        if s.binary == "nova-compute" and s.status == "enabled" and s.state == "up"
    )


def compute_max_microversion(conn: Any) -> str:
    """Nova's maximum microversion, "2.100" (keystoneauth gives it as a tuple)."""
    version = conn.compute.get_endpoint_data().max_microversion
    return ".".join(str(p) for p in version) if isinstance(version, tuple) else str(version)


def _compute_microversion(conn: Any) -> tuple[int, int]:
    """The microversion the SDK's server calls use (the highest both sides support)."""
    major, minor = (int(p) for p in compute_max_microversion(conn).split("."))
    from openstack.compute.v2.server import Server

    sdk_major, sdk_minor = (int(p) for p in Server._max_microversion.split("."))
    return min((major, minor), (sdk_major, sdk_minor))


def seed(conn: Any, *, per_host: int = 1, timeout: float = 180) -> Seeded:
    """Create the image, network, flavor (if needed) and servers (``per_host`` on every nova-compute
    host, no ports), wait until every server is ACTIVE, and return what was created."""
    started = time.monotonic()
    microversion = _compute_microversion(conn)
    if microversion < NETWORKS_NONE_MICROVERSION:
        raise RuntimeError(f"compute microversion {microversion} < 2.37: servers without ports need networks='none'")
    hosts = compute_hosts(conn)
    if not hosts:
        raise RuntimeError("no nova-compute host is up: nowhere to seed servers")
    tag = uuid.uuid4().hex[:8]
    data = image_data()
    image = upload_image(conn, f"{PREFIX}-image-{tag}", data)
    image = conn.image.get_image(image.id)
    network = conn.network.create_network(name=f"{PREFIX}-net-{tag}")
    flavor = ensure_flavor(conn)
    created = []
    for host in hosts:
        for i in range(per_host):
            server = conn.compute.create_server(
                name=f"{PREFIX}-{host}-{i}-{tag}",
                image_id=image.id,
                flavor_id=flavor.id,
                networks="none",
                availability_zone=f"nova:{host}",
            )
            created.append((server, host))
    servers = []
    for server, host in created:
        active = conn.compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"], interval=1, wait=timeout)
        if active.compute_host != host:
            raise RuntimeError(f"server {active.name} asked for host {host} and runs on {active.compute_host}")
        servers.append(SeededServer(id=active.id, name=active.name, host=active.compute_host))
    return Seeded(
        image_id=image.id,
        image_name=image.name,
        image_size=len(data),
        image_checksum=image.checksum,
        image_hash_algo=image.hash_algo,
        image_hash_value=image.hash_value,
        network_id=network.id,
        network_name=network.name,
        flavor_id=flavor.id,
        servers=servers,
        seconds=round(time.monotonic() - started, 2),
    )


def after(conn: Any, seeded: Seeded, moved: Mapping[str, str] | None = None) -> list[str]:
    """What is wrong with the seeded resources now (empty: nothing); ``moved``: the servers the
    upgrade migrated (id -> the host it moved each to)."""
    return [
        *_server_problems(conn, seeded, moved or {}),
        *_image_problems(conn, seeded),
        *_network_problems(conn, seeded),
    ]


def _server_problems(conn: Any, seeded: Seeded, moved: Mapping[str, str]) -> list[str]:
    problems = []
    for want in seeded.servers:
        server = conn.compute.find_server(want.id, ignore_missing=True)
        if server is None:
            problems.append(f"server {want.name} ({want.id}) is gone")
            continue
        server = conn.compute.get_server(want.id)  # find_server may answer from a listing
        if server.status != "ACTIVE":
            problems.append(f"server {want.name} ({want.id}) is {server.status}, not ACTIVE")
        if want.id in moved and server.compute_host != moved[want.id]:
            problems.append(f"server {want.name} ({want.id}) runs on {server.compute_host}, moved to {moved[want.id]}")
        elif want.id not in moved and server.compute_host != want.host:
            problems.append(f"server {want.name} ({want.id}) runs on {server.compute_host}, seeded on {want.host}")
    return problems


def _image_problems(conn: Any, seeded: Seeded) -> list[str]:
    name = f"image {seeded.image_name} ({seeded.image_id})"
    image = conn.image.find_image(seeded.image_id, ignore_missing=True)
    if image is None:
        return [f"{name} is gone"]
    problems = []
    if image.status != "active":
        problems.append(f"{name} is {image.status}, not active")
    if image.checksum != seeded.image_checksum or image.hash_value != seeded.image_hash_value:
        problems.append(f"{name}: glance reports checksum {image.checksum}, seeded with {seeded.image_checksum}")
    # the raw GET, not download_image: the SDK would raise on a mismatch instead of letting us say it
    response = conn.image.get(f"/images/{seeded.image_id}/file")
    if response.status_code != 200:
        return [*problems, f"{name}: download answered HTTP {response.status_code}"]
    data = response.content
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    digest = hashlib.new(seeded.image_hash_algo or "sha512", data).hexdigest()
    if len(data) != seeded.image_size:
        problems.append(f"{name}: downloaded {len(data)} bytes, seeded {seeded.image_size}")
    if md5 != seeded.image_checksum:
        problems.append(f"{name}: downloaded data has md5 {md5}, seeded {seeded.image_checksum}")
    if digest != seeded.image_hash_value:
        problems.append(f"{name}: downloaded data has {seeded.image_hash_algo} {digest[:16]}…, seeded another")
    return problems


def _network_problems(conn: Any, seeded: Seeded) -> list[str]:
    network = conn.network.find_network(seeded.network_id, ignore_missing=True)
    if network is None:
        return [f"network {seeded.network_name} ({seeded.network_id}) is gone"]
    return []


def remove(conn: Any, seeded: Seeded, *, timeout: float = 120) -> None:
    """Delete what ``seed`` created (servers first, waited for; the flavor stays: it is shared)."""
    for want in seeded.servers:
        server = conn.compute.find_server(want.id, ignore_missing=True)
        if server is not None:
            conn.compute.delete_server(server)
            conn.compute.wait_for_delete(server, interval=1, wait=timeout)
    conn.image.delete_image(seeded.image_id, ignore_missing=True)
    conn.network.delete_network(seeded.network_id, ignore_missing=True)
