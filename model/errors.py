"""The one error tree of stackhop.

Every failure an activity reports is a Temporal ``ApplicationError`` whose ``type`` is one of the
names below. There are two branches, as in kopf:

* **permanent** (``non_retryable=True``): retrying cannot help — the plan is wrong, a rollout
  exceeded its deadline, a migration failed, a check said no. The workflow fails fast and starts its
  compensation instead of retrying forever.
* **temporary** (retryable): the API server or the database is unreachable for a moment, a write
  conflicted. Temporal retries within the activity's bounded retry policy.

Workflows match on ``type`` (a plain string), so this module is import-safe inside the workflow
sandbox: it imports nothing but ``temporalio.exceptions``.
"""

from __future__ import annotations

from typing import Any

from temporalio.exceptions import ApplicationError

# --- permanent ---------------------------------------------------------------------------------
PLAN_INVALID = "PlanInvalid"  # the plan or its environment is wrong (missing workload, bad context)
NOT_IMPLEMENTED = "NotImplemented"  # an activity that has no real implementation yet
WORKLOAD_NOT_FOUND = "WorkloadNotFound"
ROLLOUT_FAILED = "RolloutFailed"  # ProgressDeadlineExceeded or the plan's rollout timeout
JOB_FAILED = "JobFailed"
SNAPSHOT_FAILED = "SnapshotFailed"  # dump failed or did not verify: never migrate without it
RESTORE_FAILED = "RestoreFailed"
MIGRATION_FAILED = "MigrationFailed"
CHECK_FAILED = "CheckFailed"  # a validation check answered "fail"
# --- temporary ---------------------------------------------------------------------------------
UNAVAILABLE = "Unavailable"  # API/DB unreachable, 5xx, timeouts, conflicts

PERMANENT = frozenset(
    {
        PLAN_INVALID,
        NOT_IMPLEMENTED,
        WORKLOAD_NOT_FOUND,
        ROLLOUT_FAILED,
        JOB_FAILED,
        SNAPSHOT_FAILED,
        RESTORE_FAILED,
        MIGRATION_FAILED,
        CHECK_FAILED,
    }
)
TEMPORARY = frozenset({UNAVAILABLE})


def permanent(type: str, message: str, **details: Any) -> ApplicationError:
    """An error that must not be retried; ``details`` land in the workflow history."""
    if type not in PERMANENT:
        raise ValueError(f"{type!r} is not a permanent error type of stackhop")
    return ApplicationError(message, details or None, type=type, non_retryable=True)


def temporary(message: str, **details: Any) -> ApplicationError:
    """An error worth retrying (within the activity's bounded retry policy)."""
    return ApplicationError(message, details or None, type=UNAVAILABLE, non_retryable=False)


def not_implemented(activity_name: str) -> ApplicationError:
    """What an activity without a real implementation raises: a plain, final failure."""
    return permanent(
        NOT_IMPLEMENTED,
        f"activity {activity_name!r} is not implemented yet",
        activity=activity_name,
    )
