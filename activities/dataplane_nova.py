"""Nova and placement for the data plane activities: raw REST calls through openstacksdk's adapters
(the clouds.yaml entry, activities/validation.py's ``connect``), each with the microversion it needs,
and the cell database's ``services.version`` (nova's API does not show it).

Why raw calls: the microversion is part of the meaning (``required=!COMPUTE_STATUS_DISABLED`` needs
placement 1.22, ``host=`` on a server create compute 2.74, the migration records' uuids 2.59), and
plain dicts keep the field names of the API reference.

Errors: a connection failure or a 5xx is temporary (``Unavailable``, retried); a 401/403 is the
cloud entry's credentials or role (permanent, ``PlanInvalid``); other answers are the caller's.
"""

from __future__ import annotations

import re
from typing import Any

from keystoneauth1 import exceptions as ks_exc

from activities import database, dbtools, validation
from model import errors
from model.plan import Database, KubeTarget

COMPUTE_MV = "2.80"  # os-services uuids and zone (2.53), migrations' uuids (2.59), host= on create (2.74)
PLACEMENT_MV = "1.36"  # forbidden traits in allocation candidates (1.22), consumer generations (1.28)
HTTP_TIMEOUT = 30.0
LIVE_DONE = "completed"
COLD_DONE = "confirmed"
MIGRATION_FAILED = frozenset({"error", "failed", "cancelled"})
UNREACHABLE = (ks_exc.ConnectFailure, ks_exc.ConnectTimeout, ks_exc.RequestTimeout, ks_exc.DiscoveryFailure)


def connect(cloud: str) -> Any:
    return validation.connect(cloud, HTTP_TIMEOUT)


class Api:
    """One cloud's compute and placement, answering dicts (``None`` for an expected 404)."""

    def __init__(self, cloud: str) -> None:
        self.cloud = cloud
        self.conn = connect(cloud)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        body: Any = None,
        ok: tuple[int, ...] = (200,),
        missing_ok: bool = False,
    ) -> Any:
        adapter = getattr(self.conn, service)
        mv = COMPUTE_MV if service == "compute" else PLACEMENT_MV
        what = f"{service} {method} {path}"
        try:
            kwargs: dict[str, Any] = {"microversion": mv, "raise_exc": False}
            if body is not None:
                kwargs["json"] = body
            resp = adapter.request(path, method, **kwargs)
        except UNREACHABLE as exc:
            raise errors.temporary(f"{what}: {self.cloud} unreachable: {exc}") from None
        except ks_exc.EndpointNotFound as exc:
            raise errors.permanent(
                errors.PLAN_INVALID, f"{what}: no {service} endpoint in {self.cloud}: {exc}"
            ) from None
        except ks_exc.Unauthorized as exc:
            raise errors.permanent(errors.PLAN_INVALID, f"{what}: {self.cloud}'s credentials refused: {exc}") from None
        code = resp.status_code
        if code == 404 and missing_ok:
            return None
        if code in ok:
            return resp.json() if resp.content else {}
        text = (resp.text or "")[:400]
        if code >= 500 or code in (408, 409, 429):
            raise errors.temporary(f"{what}: HTTP {code}: {text}", status=code)
        if code in (401, 403):
            raise errors.permanent(
                errors.PLAN_INVALID,
                f"{what}: HTTP {code} (refused: {self.cloud!r} needs the admin role, or a quota): {text}",
            )
        raise errors.permanent(errors.PLAN_INVALID, f"{what}: HTTP {code}: {text}", status=code)

    # --- compute ---------------------------------------------------------------------------------
    def compute_services(self, binary: str) -> dict[str, dict[str, Any]]:
        """host -> its service record (id, zone, state, status, disabled_reason, forced_down)."""
        body = self.call("compute", "GET", f"/os-services?binary={binary}")
        return {s["host"]: s for s in body.get("services") or []}

    def set_service(self, service_id: str, *, disabled: bool, reason: str = "") -> dict[str, Any]:
        body: dict[str, Any] = {"status": "disabled" if disabled else "enabled"}
        if disabled and reason:
            body["disabled_reason"] = reason
        answer = self.call("compute", "PUT", f"/os-services/{service_id}", body=body)
        return dict(answer.get("service") or {})

    def servers(self, host: str = "") -> list[dict[str, Any]]:
        """Every server (all projects), of ``host`` when given; pages followed."""
        out: list[dict[str, Any]] = []
        marker = ""
        while True:
            query = (
                "all_tenants=1&limit=500" + (f"&host={host}" if host else "") + (f"&marker={marker}" if marker else "")
            )
            page = self.call("compute", "GET", f"/servers/detail?{query}").get("servers") or []
            out += page
            if len(page) < 500:
                return out
            marker = page[-1]["id"]

    def server(self, server_id: str) -> dict[str, Any] | None:
        answer = self.call("compute", "GET", f"/servers/{server_id}", missing_ok=True)
        return None if answer is None else dict(answer.get("server") or {})

    def action(self, server_id: str, body: dict[str, Any]) -> None:
        self.call("compute", "POST", f"/servers/{server_id}/action", body=body, ok=(202, 200, 204))

    def migrations(self, server_id: str) -> list[dict[str, Any]]:
        """The server's migration records, newest first."""
        body = self.call("compute", "GET", f"/os-migrations?instance_uuid={server_id}")
        return sorted(body.get("migrations") or [], key=lambda m: int(m.get("id") or 0), reverse=True)

    def unconfirmed(self, source: str) -> list[dict[str, Any]]:
        """Cold migrations from ``source`` that finished and wait for their confirmation."""
        query = f"source_compute={source}&migration_type=migration&status=finished"
        return list(self.call("compute", "GET", f"/os-migrations?{query}").get("migrations") or [])

    def hypervisor_hosts(self) -> dict[str, str]:
        """compute node uuid (= its resource provider's) -> the service host."""
        body = self.call("compute", "GET", "/os-hypervisors/detail")
        return {h["id"]: (h.get("service") or {}).get("host", "") for h in body.get("hypervisors") or []}

    # --- placement -------------------------------------------------------------------------------
    def allocation(self, consumer: str) -> dict[str, int]:
        """The consumer's resources summed over its providers, e.g. {"VCPU": 1, "MEMORY_MB": 64}."""
        body = self.call("placement", "GET", f"/allocations/{consumer}")
        total: dict[str, int] = {}
        for alloc in (body.get("allocations") or {}).values():
            for rc, amount in (alloc.get("resources") or {}).items():
                total[rc] = total.get(rc, 0) + int(amount)
        return total

    def candidates(self, resources: dict[str, int]) -> dict[str, Any]:
        wanted = ",".join(f"{rc}:{n}" for rc, n in sorted(resources.items()) if n > 0)
        return dict(
            self.call(
                "placement", "GET", f"/allocation_candidates?resources={wanted}&required=!COMPUTE_STATUS_DISABLED"
            )
        )


# --- the cell database -----------------------------------------------------------------------------
HOST_RE = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")


def versions_script(db: str, binary: str, defaults_file: str) -> str:
    """``host:version,...`` of the live service records of ``binary`` in cell database ``db``."""
    dbtools.sql_name(db)
    if not re.match(r"^[a-z0-9-]{1,64}$", binary):
        raise errors.permanent(errors.PLAN_INVALID, f"binary {binary!r}: letters, digits and - only")
    sql = f"SELECT CONCAT(host, ':', version) FROM services WHERE deleted = 0 AND `binary` = '{binary}' ORDER BY host"
    return (
        "set -euo pipefail\n"
        f"rows=$(mariadb --defaults-file={dbtools.q(defaults_file)} -N -B {db} -e {dbtools.q(sql)})\n"
        f'echo "{dbtools.MARKER} versions=$(printf %s "$rows" | paste -sd, -)"\n'
    )


def parse_versions(value: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in filter(None, value.split(",")):
        host, _, version = item.rpartition(":")
        if HOST_RE.match(host) and version.isdigit():
            out[host] = int(version)
    return out


def service_versions(db: Database, binary: str, target: KubeTarget | None, key: str) -> dict[str, int]:
    """host -> services.version of ``binary`` in the cell database ``db`` (through its runner)."""
    script = versions_script(db.name, binary, database.defaults_file(db))
    ran = database._run("service-versions", "dataplane", key, db, target, script)
    if ran.exit_code or "versions" not in ran.markers:
        raise database._failure(errors.PLAN_INVALID, f"reading {binary} service versions from {db.name}", ran)
    return parse_versions(ran.markers["versions"])


def fresh_key(what: str) -> str:
    """A Job runner key unique to this activity attempt: a read is never answered by an earlier one."""
    from temporalio import activity

    if activity.in_activity():
        info = activity.info()
        return f"{what}#{info.workflow_run_id}#{info.activity_id}#{info.attempt}"
    return what
