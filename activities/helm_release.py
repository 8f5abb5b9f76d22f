"""The history of a Helm release as stackhop reads it: which revision a change made, and how a
release left pending by a killed helm is recovered (activities/helm.py runs the commands).

* **Change id.** Every upgrade's description is ``stackhop <change id> from <revision before>``. A
  retried upgrade finds the revision its earlier attempt made (deployed or superseded) and returns it
  (``already``) instead of making another; the ``from`` part tells it (and an unquiesce's
  ``restore_of``) which revision the change started from.
* **Pending recovery.** A helm killed mid-operation (SIGKILL, a dead worker) leaves the latest
  revision ``pending-upgrade`` (its description is then Helm's "Preparing upgrade", not ours) and
  every later upgrade fails with "another operation is in progress". When that revision is ours — a
  release label ``stackhop-change=<hash of the change id>.r<revision>`` that the upgrade sets (labels
  are stored with the pending revision; an inherited label names another revision), the revision
  the previous attempt heartbeated, or a pending rollback to the very revision a rollback asks for
  (Helm writes "Rollback to N" as it starts) — or older than 2x helm.timeout, it is rolled back (to
  the last deployed revision, or to the rollback's own target) and the change goes on (Helm 4 allows
  ``helm rollback`` of a pending release; the pending revision stays in the history as it is). A
  fresh pending operation of someone else is HelmBusy (temporary: retried).
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

import structlog
from temporalio import activity

from activities.helm_cli import Helm
from activities.kube_watch import in_activity
from model import errors
from model.io import HelmRevision

log = structlog.get_logger(__name__)

DESCRIPTION_RE = re.compile(r"^stackhop (?P<change>\S+) from (?P<rev>\d+)$")
ROLLBACK_RE = re.compile(r"^Rollback to (?P<rev>\d+)$")
PENDING = frozenset({"pending-upgrade", "pending-install", "pending-rollback"})
DONE = frozenset({"deployed", "superseded"})
LABEL = "stackhop-change"
STALE_FACTOR = 2  # a pending revision older than this many helm.timeout is abandoned


def revisions(h: Helm) -> list[HelmRevision]:
    return [
        HelmRevision(
            revision=int(r["revision"]),
            status=str(r.get("status", "")),
            chart=str(r.get("chart", "")),
            app_version=str(r.get("app_version", "")),
            description=str(r.get("description", "")),
            updated=str(r.get("updated", "")),
        )
        for r in h.history()
    ]


def last_deployed(hist: list[HelmRevision]) -> HelmRevision | None:
    """The revision that runs: the deployed one — else the last superseded one. An upgrade that
    gets SIGTERM can mark the revision it replaces superseded just before it marks its own failed
    (Helm 4 records the two from racing goroutines), leaving no deployed revision; Helm then
    upgrades from the last one that succeeded, and so does stackhop (values, rollback target)."""
    deployed = next((r for r in reversed(hist) if r.status == "deployed"), None)
    return deployed or next((r for r in reversed(hist) if r.status == "superseded"), None)


def by_revision(hist: list[HelmRevision], rev: int) -> HelmRevision | None:
    return next((r for r in hist if r.revision == rev), None)


def ours(hist: list[HelmRevision], change: str) -> tuple[HelmRevision, int] | None:
    """(the revision made under ``change``, the revision it started from), latest first."""
    for r in reversed(hist):
        m = DESCRIPTION_RE.match(r.description)
        if m and m["change"] == change:
            return r, int(m["rev"])
    return None


def ours_by_label(h: Helm, hist: list[HelmRevision], change: str) -> tuple[HelmRevision, int] | None:
    """The revision that runs, when ``change`` made it although its description does not say so: a
    SIGTERM that reaches helm as it completes makes two goroutines record the revision, one as
    failed with Helm's "Upgrade ... failed: context canceled", one as deployed — the record can keep
    the status of one and the description of the other. The release label (set when the revision
    was created) still names the change; the revision before is the last good one under it."""
    runs = last_deployed(hist)
    if runs is None or runs.status != "deployed":
        return None
    labels = h.metadata(runs.revision).get("labels") or {}
    if labels.get(LABEL) != label_value(change, runs.revision):
        return None
    before = next((r for r in reversed(hist) if r.revision < runs.revision and r.status in DONE), None)
    return runs, before.revision if before else runs.revision


def label_value(change: str, revision: int) -> str:
    return f"{hashlib.sha256(change.encode()).hexdigest()[:20]}.r{revision}"


def make_change_id(explicit: str, purpose: str) -> str:
    if explicit:
        return explicit
    if in_activity():
        info = activity.info()
        return f"{info.workflow_id}/{info.workflow_run_id}/{purpose}"
    raise errors.permanent(errors.PLAN_INVALID, "helm.upgrade outside an activity needs an explicit change_id")


def _age(updated: str) -> float:
    """Seconds since a helm timestamp (RFC 3339 with nanoseconds); 0 when unreadable."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", updated.strip())
    if not m:
        return 0.0
    frac = (m[2] or "")[:7]
    tz = "+00:00" if (m[3] or "Z") == "Z" else m[3]
    when = datetime.fromisoformat(f"{m[1]}{frac}{tz}")
    return max(0.0, (datetime.now(UTC) - when).total_seconds())


def _heartbeat_revision(release: str) -> int:
    """The revision the previous attempt of this activity was making (its heartbeats), or 0."""
    if not in_activity():
        return 0
    details = activity.info().heartbeat_details
    if details and isinstance(details[0], dict) and details[0].get("release") == release:
        return int(details[0].get("making") or 0)
    return 0


def recover(h: Helm, hist: list[HelmRevision], changes: set[str], to: int = 0) -> tuple[list[HelmRevision], list[str]]:
    """Roll back a pending latest revision that is ours or stale (module docstring); HelmBusy for a
    fresh foreign one. Returns the history afterwards and what was done. ``to``: the revision to
    roll back to (a rollback's own target: going through the last deployed revision first would
    flap the workloads back to it); default the last deployed one."""
    if not hist or hist[-1].status not in PENDING:
        return hist, []
    latest = hist[-1]
    labels = (h.metadata(latest.revision).get("labels") or {}) if changes else {}
    # Helm writes a rollback's description ("Rollback to N") as it starts, so a pending rollback to
    # the same revision is this one's killed attempt (or one with the same end: resolved the same way)
    same_rollback = (m := ROLLBACK_RE.match(latest.description)) is not None and int(m["rev"]) == to
    mine = (
        any(labels.get(LABEL) == label_value(c, latest.revision) for c in changes)
        or _heartbeat_revision(h.release) == latest.revision
        or (latest.status == "pending-rollback" and same_rollback)
    )
    age = _age(latest.updated)
    bound = STALE_FACTOR * h.timeout
    if not mine and age < bound:
        raise errors.temporary(
            f"{h.describe()}: revision {latest.revision} is {latest.status} since {age:.0f}s, not by this change: "
            f"another helm operation is running (abandoned after {bound}s, then rolled back)",
            type=errors.HELM_BUSY,
            release=h.release,
            namespace=h.namespace,
            revision=latest.revision,
        )
    deployed = last_deployed(hist)
    if deployed is None and not to:
        raise errors.permanent(
            errors.HELM_FAILED,
            f"{h.describe()}: revision {latest.revision} is {latest.status} and no revision was ever deployed: "
            f"nothing to roll back to (helm uninstall {h.release} -n {h.namespace}, then install it again)",
        )
    back_to = to or (deployed.revision if deployed else 0)
    why = "left by an earlier attempt of this change" if mine else f"abandoned ({age:.0f}s old)"
    h.run(
        "rollback",
        h.release,
        str(back_to),
        "--timeout",
        f"{h.timeout}s",
        beat={"step": "helm", "release": h.release, "recovering": latest.revision},
    )
    note = f"revision {latest.revision} {latest.status} ({why}), rolled back to {back_to}"
    log.warning("helm release recovered", release=h.release, namespace=h.namespace, what=note)
    return revisions(h), [note]


def chart_name(hist: list[HelmRevision], rev: int) -> str:
    r = by_revision(hist, rev)
    return r.chart if r else ""
