"""checks.run (endpoint, upgrade-status) and tempest.run against the lab's real Keystone."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities import tempest, validation
from lab.openstack import paths, tempest_ws
from lab.openstack.manager import OpenStackLab
from model import errors
from model.io import CheckInput, CheckResult
from model.plan import Check, EndpointCheck, TempestCheck, UpgradeStatusCheck
from tests.openstack.helpers import RELEASE_MID, RELEASE_OLD, KeystoneAt, connect, identity, issue_token, run
from tests.waiting import eventually_sync

pytestmark = pytest.mark.openstack

IDENTITY = EndpointCheck(kind="endpoint", service_type="identity")


@pytest.fixture
def worker_env(openstack_lab: OpenStackLab, monkeypatch: pytest.MonkeyPatch) -> None:
    """The activities read the clouds.yaml and the tempest workspace from the worker's environment."""
    for key, value in openstack_lab.worker_env().items():
        monkeypatch.setenv(key, value)


def check_input(lab: OpenStackLab, check: Check, **extra: Any) -> CheckInput:
    return CheckInput(service="keystone", cloud="lab-admin", check=check, **extra)


def tempest_input(lab: OpenStackLab, regex: str = tempest_ws.SMOKE_REGEX) -> CheckInput:
    return check_input(lab, TempestCheck(kind="tempest", regex=regex, concurrency=2))


@contextmanager
def endpoint_at(lab: OpenStackLab, url: str, interface: str = "public") -> Iterator[str]:
    """Point a catalog identity endpoint at ``url`` (through the API, so Keystone's catalog cache is
    invalidated), and put it back afterwards."""
    conn = connect(lab)
    endpoint = next(e for e in identity(conn).endpoints(interface=interface))
    good = endpoint.url
    identity(conn).update_endpoint(endpoint, url=url)
    try:
        yield url
    finally:
        identity(conn).update_endpoint(endpoint, url=good)
        conn.close()


@contextmanager
def broken_endpoint(lab: OpenStackLab, interface: str = "public") -> Iterator[str]:
    """A catalog identity endpoint at a port nobody listens on."""
    with endpoint_at(lab, f"http://127.0.0.1:{paths.free_port()}/v3", interface) as dead:
        yield dead


@contextmanager
def answering(status: int) -> Iterator[str]:
    """A real HTTP server on a free port that answers every GET with ``status``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v3"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@contextmanager
def silent() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) and never answers: a hung endpoint."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v3"


def run_recorded(
    fn: Callable[[CheckInput], CheckResult], arg: CheckInput, heartbeat_timeout: float | None = None
) -> tuple[CheckResult, list[Any]]:
    """Run an activity in a real activity context under the given heartbeat timeout; returns its
    result and every heartbeat it sent."""
    env = ActivityEnvironment()
    if heartbeat_timeout:
        env.info = dataclasses.replace(env.info, heartbeat_timeout=timedelta(seconds=heartbeat_timeout))
    beats: list[Any] = []
    env.on_heartbeat = lambda *details: beats.extend(details)
    result: CheckResult = env.run(fn, arg)
    return result, beats


def test_endpoint_check_passes_fails_on_a_wrong_answer_and_is_inconclusive_when_unreachable(
    keystone_at: KeystoneAt, worker_env: None
) -> None:
    lab = keystone_at(RELEASE_OLD)
    result = run(validation.run_check, check_input(lab, IDENTITY, stage="pre"))
    assert result.status == "pass", result.message
    assert result.details["token"] == "issued" and "identity" in result.details["services"]
    assert sorted(result.details["endpoints"].values()) == [200, 200, 200]

    with answering(503) as url, endpoint_at(lab, url, "internal"):  # an endpoint that answers wrongly
        result = run(validation.run_check, check_input(lab, IDENTITY))
        assert result.status == "fail", result.message
        assert result.details["broken"] == [f"internal {url} -> HTTP 503"]
    with broken_endpoint(lab, "internal") as dead:  # probed by the check itself: nobody answers
        result = run(validation.run_check, check_input(lab, IDENTITY))
        assert result.status == "inconclusive", result.message
        assert f"internal {dead} -> ConnectFailure" in result.message, result.message
        assert result.details["unreachable"] == [f"internal {dead} -> ConnectFailure"]
    with broken_endpoint(lab, "public") as dead:  # the SDK itself talks to the public endpoint
        result = run(validation.run_check, check_input(lab, IDENTITY))
        assert result.status == "inconclusive", result.message
        assert dead in result.message and "unreachable after 3 attempts" in result.message
    assert run(validation.run_check, check_input(lab, IDENTITY)).status == "pass"

    missing = run(validation.run_check, check_input(lab, EndpointCheck(kind="endpoint", service_type="image")))
    assert missing.status == "fail" and "no image service" in missing.message


def test_endpoint_check_with_keystone_stopped_is_inconclusive_in_bounded_time(
    lab_running: OpenStackLab, worker_env: None
) -> None:
    lab = lab_running
    assert lab.keystone and lab.keystone.release
    release = lab.keystone.release
    lab.stop_keystone()
    try:
        started = time.monotonic()
        result, beats = run_recorded(validation.run_check, check_input(lab, IDENTITY))
        took = time.monotonic() - started
        assert result.status == "inconclusive", result.message
        assert lab.keystone.url.rsplit("/", 1)[0] in result.message and "token issue" in result.message
        assert took < 3 * validation.HTTP_TIMEOUT, took  # refused at once: the retries' pauses only
        attempts = [b["attempt"] for b in beats if isinstance(b, dict) and b.get("doing") == "token issue"]
        assert attempts == [1, 2, 3], beats
    finally:
        lab.serve(release)
    result, beats = run_recorded(validation.run_check, check_input(lab, IDENTITY))
    assert result.status == "pass", result.message
    assert {b.get("doing") for b in beats if isinstance(b, dict)} >= {"token issue", "catalog", "public endpoint"}


def test_endpoint_check_bounds_a_hung_endpoint_by_the_heartbeat_timeout(
    lab_running: OpenStackLab, worker_env: None
) -> None:
    """An endpoint that accepts and never answers: each GET ends at a quarter of the heartbeat
    timeout, so the check heartbeats in time and ends inconclusive after its retries."""
    lab = lab_running
    with silent() as url, endpoint_at(lab, url, "admin"):
        started = time.monotonic()
        result, beats = run_recorded(validation.run_check, check_input(lab, IDENTITY), heartbeat_timeout=6)
        took = time.monotonic() - started
    assert result.status == "inconclusive", result.message
    assert result.details["timeout"] == 1.5
    assert result.details["unreachable"] == [f"admin {url} -> ConnectTimeout"]
    assert took < 20, took
    assert [b["attempt"] for b in beats if isinstance(b, dict) and b.get("url") == url] == [1, 2, 3]


def test_endpoint_check_with_refused_credentials_is_inconclusive(
    openstack_lab: OpenStackLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clouds = tmp_path / "clouds.yaml"
    assert openstack_lab.keystone
    clouds.write_text(
        openstack_lab.clouds_yaml.read_text().replace(openstack_lab.keystone.admin_password, "wrong-password")
    )
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    inp = CheckInput(service="keystone", cloud="lab-admin", check=IDENTITY)
    result = run(validation.run_check, inp)
    assert result.status == "inconclusive" and "credentials" in result.message


def test_upgrade_status_check_exit_2_blocks_the_upgrade(keystone_at: KeystoneAt) -> None:
    lab = keystone_at(RELEASE_OLD)
    assert lab.keystone
    status = UpgradeStatusCheck(kind="upgrade-status", command=lab.keystone.status_command("{version}"))
    ok = run(validation.run_check, check_input(lab, status, version=RELEASE_MID, stage="pre"))
    assert ok.status == "pass" and ok.details["exit_code"] == 0, ok.details

    # an operator made the admin role mutable: keystone-status reports a FAILURE (exit 2)
    conn = connect(lab)
    admin_role = identity(conn).find_role("admin")
    conn.close()
    assert admin_role is not None
    token = issue_token(lab)
    response = requests.patch(
        f"{lab.keystone.url}/roles/{admin_role.id}",
        headers={"X-Auth-Token": token},
        json={"role": {"options": {"immutable": False}}},
        timeout=30,
    )
    assert response.status_code == 200, response.text

    blocked = run(validation.run_check, check_input(lab, status, version=RELEASE_MID, stage="pre"))
    assert blocked.status == "fail"
    assert blocked.details["exit_code"] == 2 and blocked.details["blocking"] is True
    assert "Roles are not immutable: admin" in blocked.details["output"]


@pytest.mark.parametrize(
    ("code", "status"), [(0, "pass"), (1, "pass"), (2, "fail"), (255, "fail"), (127, "inconclusive")]
)
def test_upgrade_status_exit_codes(code: int, status: str) -> None:
    assert validation.interpret_status(code)[0] == status


def test_upgrade_status_warning_proceeds_and_is_reported(openstack_lab: OpenStackLab) -> None:
    check = UpgradeStatusCheck(kind="upgrade-status", command=["bash", "-c", "echo 'Result: Warning'; exit 1"])
    result = run(validation.run_check, check_input(openstack_lab, check))
    assert result.status == "pass" and result.details["warning"] is True and "warning" in result.message


def test_tempest_identity_smoke_passes_then_fails_on_a_broken_endpoint(
    keystone_at: KeystoneAt, worker_env: None
) -> None:
    lab = keystone_at(RELEASE_OLD)
    good = run(tempest.run_tempest, tempest_input(lab))
    assert good.status == "pass", good.message
    assert good.passed >= 14 and good.failed == 0 and good.failing_tests == []
    suite = ET.parse(good.junit_path).getroot()
    assert suite.tag == "testsuite" and int(suite.get("tests", "0")) == good.passed + good.skipped
    assert suite.get("failures") == "0"

    with broken_endpoint(lab, "public"):
        bad = run(tempest.run_tempest, tempest_input(lab))
    assert bad.status == "fail"
    assert bad.failed > 0 and len(bad.failing_tests) == bad.failed
    assert all("tempest.api.identity" in test_id for test_id in bad.failing_tests), bad.failing_tests
    suite = ET.parse(bad.junit_path).getroot()
    failing = [case.get("id", "") for case in suite.iter("testcase") if case.find("failure") is not None]
    assert sorted(failing) == sorted(bad.failing_tests)


def test_tempest_selection_that_runs_nothing_is_inconclusive(openstack_lab: OpenStackLab, worker_env: None) -> None:
    result = run(tempest.run_tempest, tempest_input(openstack_lab, regex=r"^tempest\.api\.identity\.no_such_test$"))
    assert result.status == "inconclusive" and result.passed == 0


def test_tempest_and_checks_refuse_misplaced_checks(openstack_lab: OpenStackLab) -> None:
    with pytest.raises(ApplicationError) as info:
        run(validation.run_check, tempest_input(openstack_lab))
    assert info.value.type == errors.PLAN_INVALID
    with pytest.raises(ApplicationError):
        run(tempest.run_tempest, check_input(openstack_lab, IDENTITY))


def test_subunit_parsing_counts_ids_and_junit() -> None:
    """A subunit v2 stream as stestr stores it: per-test status, a class fixture failure, a skip."""
    import io as _io

    import subunit

    out = _io.BytesIO()
    stream = subunit.StreamResultToBytes(out)
    stream.status(test_id="tempest.api.identity.v3.test_a.A.test_ok[id-1,smoke]", test_status="success")
    stream.status(
        test_id="tempest.api.identity.v3.test_b.B.test_bad[id-2,smoke]",
        test_status="fail",
        file_name="traceback",
        file_bytes=b"Traceback: boom",
        mime_type="text/plain",
    )
    stream.status(test_id="setUpClass (tempest.api.identity.v3.test_c.C)", test_status="fail")
    stream.status(test_id="tempest.api.identity.v3.test_d.D.test_skip[id-4]", test_status="skip")
    summary = tempest.parse_subunit(out.getvalue())
    assert (summary.passed, summary.failed, summary.skipped) == (1, 2, 1)
    status, message = tempest.verdict(summary)
    assert status == "fail" and "setUpClass (tempest.api.identity.v3.test_c.C)" in message
    suite = ET.fromstring(tempest.junit_xml(summary))
    cases = {case.get("id"): case for case in suite.iter("testcase")}
    assert cases["setUpClass (tempest.api.identity.v3.test_c.C)"].get("classname") == "tempest.api.identity.v3.test_c.C"
    bad = cases["tempest.api.identity.v3.test_b.B.test_bad[id-2,smoke]"]
    failure = bad.find("failure")
    assert bad.get("name") == "test_bad" and failure is not None and failure.text == "Traceback: boom"
    assert tempest.verdict(tempest.parse_subunit(b""))[0] == "inconclusive"


def test_tempest_runs_in_one_workspace_are_serialised(tmp_path: Path) -> None:
    """While one run holds the workspace, a second waits (heartbeating that it waits) and goes in
    only after the first has left."""
    order: list[str] = []
    first_in, first_may_leave = threading.Event(), threading.Event()
    beats: list[object] = []
    second = ActivityEnvironment()  # an activity context, so the waiting run heartbeats
    second.on_heartbeat = lambda *details: beats.extend(details)

    def first() -> None:
        with tempest._workspace_lock(tmp_path):
            order.append("first-start")
            first_in.set()
            first_may_leave.wait(30)
            order.append("first-end")

    def enter_second() -> None:
        with tempest._workspace_lock(tmp_path):
            order.append("second")

    def run_second() -> None:
        second.run(enter_second)

    holder = threading.Thread(target=first, daemon=True)
    holder.start()
    assert first_in.wait(10)
    waiter = threading.Thread(target=run_second, daemon=True)
    waiter.start()
    eventually_sync(
        lambda: any(isinstance(b, dict) and "waiting_for" in b for b in list(beats)),
        within=10,
        what="the second run heartbeating that it waits for the workspace",
    )
    assert order == ["first-start"]  # the second is waiting, not in
    first_may_leave.set()
    holder.join(10)
    waiter.join(10)
    assert order == ["first-start", "first-end", "second"]
