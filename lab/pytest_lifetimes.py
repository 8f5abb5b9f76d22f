"""Session labs that stop once the last test needing them has run, not when the session ends.

A session fixture normally lives until the session's end. In `make test`'s cloud group the
Kubernetes cloud's tests run first and the direct cloud's after them, so the Kubernetes cloud
(kube-apiserver, etcd, the cloud controller, a whole OpenStack with its MariaDB and RabbitMQ) would
idle beside the direct cloud for the rest of the session, taking CPU that the other group's
deadlines need on a 2-core machine.

A session fixture calls :func:`stop_after_last_user` with its stop; this plugin's teardown hook
runs that stop as soon as no later test of the session needs the fixture, and the fixture's own
teardown calls :func:`stop_now`, which runs it if it has not run yet. Each stop runs once. When one
test is the last user of several fixtures, the one registered last stops first (a cloud before the
cluster it runs on). Register with ``pytest_plugins = ["lab.pytest_lifetimes"]``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator

import pytest

_stops: dict[str, Callable[[], None]] = {}  # fixture name -> its stop, in registration order


def stop_after_last_user(request: pytest.FixtureRequest, stop: Callable[[], None]) -> None:
    """Stop the requesting session fixture's lab after the last test that needs it."""
    _stops[str(request.fixturename)] = stop


def stop_now(request: pytest.FixtureRequest) -> None:
    """The fixture's own teardown: its stop, unless the last user's teardown already ran it."""
    stop = _stops.pop(str(request.fixturename), None)
    if stop is not None:
        stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    yield  # the test's own fixtures first
    if nextitem is None or not _stops:
        return None  # the session's end: the fixtures' teardowns stop what is left
    needs = set(getattr(item, "fixturenames", ()))
    items = item.session.items
    later = items[items.index(item) + 1 :] if item in items else [nextitem]
    still = {name for i in later for name in getattr(i, "fixturenames", ())}
    for name in reversed(list(_stops)):
        if name in needs and name not in still:
            _stops.pop(name)()
    return None
