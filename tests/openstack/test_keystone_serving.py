"""The lab's Keystone is one process, whoever asks for it: two threads serving at once (two lab
controllers once did, and a Keystone nobody knew of kept its database sessions open through a
canary's restore) leave one server, and a stop leaves none."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from lab.openstack import procs
from lab.openstack.manager import DEFAULT_RELEASE, OpenStackLab
from tests.waiting import eventually_sync

pytestmark = pytest.mark.openstack


def servers(port: int) -> list[int]:
    """The gunicorn masters bound to ``port``: the lab starts each in its own session (pid = pgid)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        cmd = procs.cmdline(pid) or ""
        try:
            leader = os.getpgid(pid) == pid
        except ProcessLookupError:
            continue
        if leader and "gunicorn" in cmd and f"127.0.0.1:{port}" in cmd:
            found.append(pid)
    return sorted(found)


def test_two_threads_serving_at_once_leave_one_keystone(openstack_lab: OpenStackLab) -> None:
    ks = openstack_lab.keystone
    assert ks
    failures: list[BaseException] = []

    def serve() -> None:
        try:
            openstack_lab.serve(DEFAULT_RELEASE)
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=serve) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:1]
    assert ks.pid and servers(ks.port) == [ks.pid]
    openstack_lab.stop_keystone()
    eventually_sync(lambda: not servers(ks.port), within=30, what="no Keystone left after the stop")
    openstack_lab.serve(DEFAULT_RELEASE)  # as the session's lab serves it
