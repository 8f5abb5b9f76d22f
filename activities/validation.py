"""Validation activity `checks.run`: pre-flight and post-flight checks that *decide*.

A check answers pass, fail or inconclusive — never a guess.  `fail` means the service is broken
(the workflow rolls back); `inconclusive` means the check could not judge (a timeout, its own
credentials refused, an exit code nobody documented) and the workflow pauses for a human.

* endpoint — through openstacksdk: a token is issued, the service type is in the catalog, and each of
  its endpoints answers HTTP (< 500). Every call is bounded (HTTP_TIMEOUT, or less under a short
  heartbeat timeout) and retried a few times when the connection fails; the check heartbeats before
  each. An endpoint (or Keystone itself) that cannot be reached at all after the retries makes the
  check inconclusive, naming the URL: the worker may be the one cut off, and a rollback is not the
  answer to a network it cannot see. An endpoint that answers wrongly (5xx, TLS) is a fail.
* upgrade-status — `<service>-status upgrade check` (oslo.upgradecheck): 0 success; 1 warning
  (proceed, and report it); 2 failure and 255 error stop the upgrade.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import structlog
from keystoneauth1 import exceptions as ks_exc
from temporalio import activity
from temporalio.exceptions import CancelledError

from activities import dbtools
from activities.dbtools import q
from activities.migration import env_command
from model import errors, redact
from model.io import CHECKS_RUN, CheckInput, CheckResult, CheckStatus
from model.plan import EndpointCheck, UpgradeStatusCheck
from model.recipes import service_recipe

log = structlog.get_logger(__name__)

HTTP_TIMEOUT = 10.0  # seconds, connect and read, for every call (token, catalog, endpoint GET) ...
HEARTBEAT_SHARE = 4  # ... and at most a quarter of the heartbeat timeout: heartbeats go between calls
CONNECT_ATTEMPTS = 3  # per call, when the connection fails or times out
RETRY_DELAY = 1.0  # seconds before the second attempt, doubled before each further one
STATUS_CODES = {0: "pass", 1: "pass", 2: "fail", 255: "fail"}
STATUS_MEANING = {0: "success", 1: "warning", 2: "failure", 255: "error running the checks"}
# no connection at all (refused, reset, DNS, timed out): the check cannot judge the service
UNREACHABLE = (ks_exc.ConnectFailure, ks_exc.ConnectTimeout, ks_exc.RequestTimeout)

T = TypeVar("T")


def call_timeout() -> float:
    """The bound of one HTTP call: HTTP_TIMEOUT, less when the heartbeat timeout is short (the
    check heartbeats between calls, so no call may outlast it)."""
    heartbeat = activity.info().heartbeat_timeout if activity.in_activity() else None
    if heartbeat:
        return max(0.5, min(HTTP_TIMEOUT, heartbeat.total_seconds() / HEARTBEAT_SHARE))
    return HTTP_TIMEOUT


def connect(cloud: str, timeout: float | None = None) -> Any:
    """An openstacksdk connection for a clouds.yaml entry: the worker's OS_CLIENT_CONFIG_FILE, else
    openstacksdk's usual places (./clouds.yaml, ~/.config/openstack, /etc/openstack). ``timeout``
    bounds every request of its session (openstacksdk's ``api_timeout``, keystoneauth's ``timeout``)."""
    import openstack
    from openstack import config as os_config

    path = os.environ.get("OS_CLIENT_CONFIG_FILE")
    if path and not os.path.isfile(path):
        raise errors.permanent(errors.PLAN_INVALID, f"clouds.yaml {path} does not exist")
    loader = os_config.OpenStackConfig(config_files=[path] if path else None, load_envvars=False)
    try:
        region = loader.get_one(cloud=cloud, api_timeout=timeout) if timeout else loader.get_one(cloud=cloud)
    except Exception as exc:
        raise errors.permanent(errors.PLAN_INVALID, f"cloud {cloud!r} not usable: {exc}") from None
    redact.register_mapping(region.config.get("auth"))  # its password is masked wherever it appears
    return openstack.connection.Connection(config=region)


class Unreachable(Exception):
    """A call that found nobody to answer after CONNECT_ATTEMPTS: the check cannot judge."""

    def __init__(self, what: str, url: str, error: BaseException, attempts: int) -> None:
        self.url = url
        super().__init__(f"{what} at {url} unreachable after {attempts} attempts: {error}")


def _attempts(what: str, url: str, fn: Callable[[], T]) -> T:
    """``fn()``, again after a pause when the connection fails or times out; heartbeats before
    every attempt. Raises Unreachable once the attempts are spent."""
    delay = RETRY_DELAY
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        dbtools.heartbeat(step="checks.endpoint", doing=what, url=url, attempt=attempt)
        try:
            return fn()
        except UNREACHABLE as exc:
            log.info("endpoint_check_unreachable", what=what, url=url, attempt=attempt, error=str(exc))
            if attempt == CONNECT_ATTEMPTS:
                raise Unreachable(what, url, exc, attempt) from exc
        _pause(delay)
        delay *= 2
    raise AssertionError("unreachable")  # the loop returns or raises


def _pause(seconds: float) -> None:
    """Sleep that ends early, and raises, when the activity is cancelled."""
    if not activity.in_activity():
        time.sleep(seconds)
        return
    activity.wait_for_cancelled_sync(seconds)
    if activity.is_cancelled():
        raise CancelledError("activity cancelled")


def endpoint_check(inp: CheckInput, check: EndpointCheck) -> CheckResult:
    started = time.monotonic()
    details: dict[str, Any] = {"service_type": check.service_type, "stage": inp.stage}

    def result(status: CheckStatus, message: str) -> CheckResult:
        return CheckResult(status=status, message=message, details=details, seconds=time.monotonic() - started)

    timeout = call_timeout()
    details["timeout"] = timeout
    conn = connect(inp.cloud, timeout)
    auth_url = str((conn.config.config.get("auth") or {}).get("auth_url", "the auth URL"))
    try:
        try:  # keystoneauth's own errors (conn.authorize wraps them)
            _attempts("token issue", auth_url, conn.session.get_token)
        except (ks_exc.Unauthorized, ks_exc.Forbidden) as exc:
            return result("inconclusive", f"the check's credentials were refused: {exc}")
        details["token"] = "issued"
        services = _attempts("catalog", auth_url, lambda: list(conn.identity.services()))
        details["services"] = sorted(s.type for s in services)
        wanted = [s for s in services if s.type == check.service_type]
        if not wanted:
            return result("fail", f"no {check.service_type} service in the catalog")
        endpoints = _attempts(
            "catalog", auth_url, lambda: [e for s in wanted for e in conn.identity.endpoints(service_id=s.id)]
        )
        if not endpoints:
            return result("fail", f"the {check.service_type} service has no endpoints")
        answers, broken, unreachable = _probe(conn, endpoints, timeout)
        details["endpoints"] = answers
    except Unreachable as exc:
        details["unreachable"] = [exc.url]
        return result("inconclusive", f"cannot judge {check.service_type}: {exc}")
    except ks_exc.ClientException as exc:
        return result("inconclusive", f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()
    if broken:
        details["broken"] = broken
        return result("fail", f"{len(broken)} endpoints answer wrongly: {'; '.join(broken)}")
    if unreachable:
        details["unreachable"] = unreachable
        return result("inconclusive", f"{len(unreachable)} endpoints unreachable: {'; '.join(unreachable)}")
    return result("pass", f"token issued; {len(endpoints)} {check.service_type} endpoints answer")


def _probe(conn: Any, endpoints: list[Any], timeout: float) -> tuple[dict[str, int], list[str], list[str]]:
    """GET each endpoint: (HTTP status by endpoint, those answering wrongly, those unreachable)."""
    answers: dict[str, int] = {}
    broken: list[str] = []
    unreachable: list[str] = []
    for ep in endpoints:
        key = f"{ep.interface} {ep.url}"

        def get(url: str = ep.url) -> Any:  # through the cloud's session: its CA bundle and TLS apply
            return conn.session.request(
                url, "GET", authenticated=False, raise_exc=False, connect_retries=0, timeout=timeout
            )

        try:
            response = _attempts(f"{ep.interface} endpoint", ep.url, get)
        except Unreachable as exc:
            unreachable.append(f"{key} -> {exc.__cause__.__class__.__name__}")
            continue
        except ks_exc.ConnectionError as exc:  # TLS and the like: it answered, wrongly
            broken.append(f"{key} -> {type(exc).__name__}")
            continue
        answers[key] = response.status_code
        if response.status_code >= 500:
            broken.append(f"{key} -> HTTP {response.status_code}")
    return answers, broken, unreachable


def status_command(inp: CheckInput, check: UpgradeStatusCheck) -> list[str]:
    """The plan's command, else the worker's STACKHOP_<SERVICE>_STATUS, else the recipe's."""
    recipe = service_recipe(inp.service)
    default = list(recipe.status) if recipe and recipe.status else [f"{inp.service}-status", "upgrade", "check"]
    command = list(check.command) if check.command else env_command(inp.service, "STATUS") or default
    if any("{version}" in part for part in command) and not inp.version:
        raise errors.permanent(
            errors.PLAN_INVALID, f"{inp.service}: the status command uses {{version}} but no version is known"
        )
    return [part.replace("{version}", inp.version).replace("{service}", inp.service) for part in command]


def interpret_status(exit_code: int) -> tuple[str, str]:
    """oslo.upgradecheck exit code -> (check status, meaning). Pure."""
    status = STATUS_CODES.get(exit_code, "inconclusive")
    return status, STATUS_MEANING.get(exit_code, f"undocumented exit code {exit_code}")


def upgrade_status_check(inp: CheckInput, check: UpgradeStatusCheck) -> CheckResult:
    command = status_command(inp, check)
    script = " ".join(q(p) for p in command) + f'; echo "{dbtools.MARKER} exit=$?"\n'
    ran = dbtools.run_local(script, step="checks.upgrade-status", timeout=inp.timeout_seconds)
    exit_code = int(ran.markers.get("exit", "-1"))
    status, meaning = interpret_status(exit_code)
    details = {
        "exit_code": exit_code,
        "meaning": meaning,
        "command": command,
        "output": ran.tail(60),
        "warning": exit_code == 1,
        "blocking": status == "fail",
    }
    message = f"{inp.service}-status upgrade check: {meaning} (exit {exit_code})"
    if exit_code == 1:
        message += "; proceeding, see the report"
    log.info("upgrade_status_check", service=inp.service, exit_code=exit_code, status=status)
    return CheckResult(status=status, message=message, details=details, seconds=round(ran.seconds, 3))


@activity.defn(name=CHECKS_RUN, no_thread_cancel_exception=True)
def run_check(inp: CheckInput) -> CheckResult:
    """Run one endpoint or upgrade-status check (tempest checks go through tempest.run)."""
    check = inp.check
    if isinstance(check, EndpointCheck):
        result = endpoint_check(inp, check)
    elif isinstance(check, UpgradeStatusCheck):
        result = upgrade_status_check(inp, check)
    else:
        raise errors.permanent(errors.PLAN_INVALID, f"checks.run does not run {check.kind} checks; tempest.run does")
    return result.model_copy(update={"seconds": round(result.seconds, 3)})
