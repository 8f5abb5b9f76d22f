"""Client sessions held open on the lab's MariaDB, as an API worker (or an operator's shell) holds
them: the mariadb client in a subprocess, sleeping in a statement the test can find by a tag."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from lab.openstack.install import find_tool
from lab.openstack.manager import OpenStackLab
from tests.waiting import eventually_sync


def session_ids(lab: OpenStackLab, text: str) -> list[str]:
    """Ids of the connections whose running statement contains ``text`` (processlist)."""
    assert lab.mariadb
    rows = lab.mariadb.sql(
        f"SELECT id FROM information_schema.processlist WHERE info LIKE '%{text}%' AND id <> CONNECTION_ID()"
    )
    return rows.split()


@contextmanager
def session_held(
    lab: OpenStackLab, sql: str = "", *, schema: str | None = "keystone", login: list[str] | None = None
) -> Iterator[str]:
    """A client connected (to ``schema`` as its default database, or none) that runs ``sql`` and
    then sleeps. Yields its connection id once it sleeps; on exit the client is killed and its server
    session ended, so it is gone before the test goes on. ``login``: e.g. ["--user=x", "--password=y"]."""
    assert lab.mariadb
    mariadb = lab.mariadb
    tag = f"held_{uuid.uuid4().hex[:10]}"
    argv = [find_tool("mariadb") or "mariadb", f"--defaults-file={mariadb.defaults_file}", *(login or [])]
    holder = subprocess.Popen(
        [*argv, *([schema] if schema else []), "-e", f"{sql} SELECT SLEEP(60), '{tag}';"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        (session,) = eventually_sync(lambda: session_ids(lab, tag), within=15, what="the held session sleeping")
        yield session
    finally:
        holder.kill()
        holder.wait()
        for session in session_ids(lab, tag):  # the server may not notice the dead client at once
            with suppress(RuntimeError):  # it ended in the meantime
                mariadb.sql(f"KILL CONNECTION {int(session)}")
        eventually_sync(lambda: not session_ids(lab, tag), within=15, what="the held session gone")
