"""Ports for the labs' servers: free on 127.0.0.1 and below the kernel's ephemeral range.

A port the kernel hands out (``bind(("127.0.0.1", 0))``) lies in the ephemeral range, the same
range it takes the source ports of outgoing connections from. When such a server stops (the fault
tests stop kube-apiserver and MariaDB and start them again), a client still connecting to its port
can be given that very port as its source and connect to itself (TCP simultaneous open), or another
connection can take it: the server's restart then fails with "address already in use" (seen once,
kube-apiserver, with three test processes on the machine). Below the ephemeral range no outgoing
connection ever holds the port.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOWEST = 10000
HIGHEST = 32000  # the default ephemeral range starts at 32768
TRIES = 200


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago, outside the ephemeral range (random within
    it, so that concurrent test sessions rarely pick the same; a small race is acceptable in a lab)."""
    high = min(HIGHEST, _ephemeral_low())
    if high - LOWEST >= 1000:
        for _ in range(TRIES):
            port = random.randrange(LOWEST, high)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # no room below it: the kernel's pick
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
