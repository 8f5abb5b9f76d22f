"""lab/ports.py: a lab server's port is never one the kernel could give an outgoing connection."""

from __future__ import annotations

import socket
from pathlib import Path

from lab import ports


def test_lab_ports_are_free_and_below_the_ephemeral_range() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    seen = {ports.free_port() for _ in range(20)}
    assert all(ports.LOWEST <= p < min(low, ports.HIGHEST) for p in seen), seen
    assert len(seen) > 1  # random: two sessions rarely pick the same
    with socket.socket() as s:
        s.bind(("127.0.0.1", seen.pop()))  # and free
