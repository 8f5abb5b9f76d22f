"""lab/pytest_lifetimes.py: a session lab stops right after the last test that needs it, once."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

CONFTEST = """
import pytest
from lab.pytest_lifetimes import stop_after_last_user, stop_now

pytest_plugins = ["lab.pytest_lifetimes"]
EVENTS = []

@pytest.fixture(scope="session")
def cluster(request):
    stop_after_last_user(request, lambda: EVENTS.append("cluster stopped"))
    yield "cluster"
    stop_now(request)

@pytest.fixture(scope="session")
def cloud(request, cluster):
    stop_after_last_user(request, lambda: EVENTS.append("cloud stopped"))
    yield "cloud"
    stop_now(request)

@pytest.fixture(scope="session")
def kept(request):
    stop_after_last_user(request, lambda: EVENTS.append("kept stopped"))
    yield "kept"
    stop_now(request)
"""

TESTS = """
from conftest import EVENTS

def test_a(cloud, kept):
    EVENTS.append("a")

def test_b(cloud):
    EVENTS.append("b")

def test_c(kept):
    EVENTS.append("c")
    assert EVENTS == ["a", "b", "cloud stopped", "cluster stopped", "c"]

def test_d():
    assert EVENTS == ["a", "b", "cloud stopped", "cluster stopped", "c", "kept stopped"]
"""


def test_each_lab_stops_after_its_last_user_the_cloud_before_its_cluster(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_order=TESTS)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:asyncio")
    result.assert_outcomes(passed=4)
