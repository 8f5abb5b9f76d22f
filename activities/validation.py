"""Validation activity `checks.run`: pre-flight and post-flight checks that *decide*.

A check answers pass, fail or inconclusive — never a guess.  `fail` means the service is broken
(the workflow rolls back); `inconclusive` means the check could not judge (a timeout, its own
credentials refused, an exit code nobody documented) and the workflow pauses for a human.

* endpoint — through openstacksdk: a token is issued, the service type is in the catalog, and each of
  its endpoints answers HTTP (< 500).
* upgrade-status — `<service>-status upgrade check` (oslo.upgradecheck): 0 success; 1 warning
  (proceed, and report it); 2 failure and 255 error stop the upgrade.
"""

from __future__ import annotations

import os
import time
from typing import Any

import structlog
from keystoneauth1 import exceptions as ks_exc
from temporalio import activity

from activities import dbtools
from activities.dbtools import q
from activities.migration import env_command
from model import errors
from model.io import CHECKS_RUN, CheckInput, CheckResult
from model.plan import EndpointCheck, UpgradeStatusCheck

log = structlog.get_logger(__name__)

HTTP_TIMEOUT = 10
STATUS_CODES = {0: "pass", 1: "pass", 2: "fail", 255: "fail"}
STATUS_MEANING = {0: "success", 1: "warning", 2: "failure", 255: "error running the checks"}


def connect(cloud: str) -> Any:
    """An openstacksdk connection for a clouds.yaml entry: the worker's OS_CLIENT_CONFIG_FILE, else
    openstacksdk's usual places (./clouds.yaml, ~/.config/openstack, /etc/openstack)."""
    import openstack
    from openstack import config as os_config

    path = os.environ.get("OS_CLIENT_CONFIG_FILE")
    if path and not os.path.isfile(path):
        raise errors.permanent(errors.PLAN_INVALID, f"clouds.yaml {path} does not exist")
    loader = os_config.OpenStackConfig(config_files=[path] if path else None, load_envvars=False)
    try:
        region = loader.get_one(cloud=cloud)
    except Exception as exc:
        raise errors.permanent(errors.PLAN_INVALID, f"cloud {cloud!r} not usable: {exc}") from None
    return openstack.connection.Connection(config=region)


def endpoint_check(inp: CheckInput, check: EndpointCheck) -> CheckResult:
    started = time.monotonic()
    details: dict[str, Any] = {"service_type": check.service_type, "stage": inp.stage}
    conn = connect(inp.cloud)
    try:
        try:
            conn.session.get_token()  # keystoneauth's own errors (conn.authorize wraps them)
        except (ks_exc.Unauthorized, ks_exc.Forbidden) as exc:
            return CheckResult(
                status="inconclusive",
                message=f"the check's credentials were refused: {exc}",
                details=details,
                seconds=time.monotonic() - started,
            )
        except ks_exc.ConnectFailure as exc:
            return CheckResult(
                status="fail",
                message=f"no token: identity unreachable ({exc})",
                details=details,
                seconds=time.monotonic() - started,
            )
        details["token"] = "issued"
        services = list(conn.identity.services())
        details["services"] = sorted(s.type for s in services)
        wanted = [s for s in services if s.type == check.service_type]
        if not wanted:
            return CheckResult(
                status="fail",
                message=f"no {check.service_type} service in the catalog",
                details=details,
                seconds=time.monotonic() - started,
            )
        endpoints = [e for s in wanted for e in conn.identity.endpoints(service_id=s.id)]
        if not endpoints:
            return CheckResult(
                status="fail",
                message=f"the {check.service_type} service has no endpoints",
                details=details,
                seconds=time.monotonic() - started,
            )
        answers, broken, slow = {}, [], []
        for ep in endpoints:
            key = f"{ep.interface} {ep.url}"
            try:  # through the cloud's session: its CA bundle and TLS settings apply
                response = conn.session.request(
                    ep.url, "GET", authenticated=False, raise_exc=False, connect_retries=0, timeout=HTTP_TIMEOUT
                )
                answers[key] = response.status_code
                if response.status_code >= 500:
                    broken.append(f"{key} -> HTTP {response.status_code}")
            except (ks_exc.ConnectTimeout, ks_exc.RequestTimeout):
                slow.append(key)
            except ks_exc.ConnectionError as exc:
                broken.append(f"{key} -> {type(exc).__name__}")
        details["endpoints"] = answers
    except ks_exc.ConnectFailure as exc:
        return CheckResult(
            status="fail",
            message=f"identity unreachable ({type(exc).__name__}): {exc}",
            details=details,
            seconds=time.monotonic() - started,
        )
    except ks_exc.ClientException as exc:
        return CheckResult(
            status="inconclusive",
            message=f"{type(exc).__name__}: {exc}",
            details=details,
            seconds=time.monotonic() - started,
        )
    finally:
        conn.close()
    seconds = time.monotonic() - started
    if broken:
        details["broken"] = broken
        return CheckResult(
            status="fail",
            message=f"{len(broken)} endpoints do not answer: {'; '.join(broken)}",
            details=details,
            seconds=seconds,
        )
    if slow:
        details["timeouts"] = slow
        return CheckResult(
            status="inconclusive",
            message=f"{len(slow)} endpoints timed out: {'; '.join(slow)}",
            details=details,
            seconds=seconds,
        )
    return CheckResult(
        status="pass",
        message=f"token issued; {len(endpoints)} {check.service_type} endpoints answer",
        details=details,
        seconds=seconds,
    )


def status_command(inp: CheckInput, check: UpgradeStatusCheck) -> list[str]:
    command = (
        list(check.command)
        if check.command
        else env_command(inp.service, "STATUS") or [f"{inp.service}-status", "upgrade", "check"]
    )
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
