"""The one error tree of stackhop: what can fail, under which name, and who decides what follows.

Three levels, from the inside out:

1. **Activity errors.** Every failure an activity reports is a Temporal ``ApplicationError`` whose
   ``type`` is one of the names below, in one of two branches, as in kopf:

   * **permanent** (``non_retryable=True``, :func:`permanent`): retrying cannot help — the plan is
     wrong, a rollout exceeded its deadline, a migration failed, a check said no. The workflow fails
     fast and starts its compensation instead of retrying forever.
   * **temporary** (retryable, :func:`temporary`): the API server or the database is unreachable
     for a moment, a write conflicted. Temporal retries within the activity's bounded retry policy.

2. **Step-failure kinds.** A workflow step that did not succeed (``workflows.steps.StepFailed``)
   carries a ``kind``: either the activity error type above, or one of the workflow's own kinds
   (:data:`STEP_KINDS`). :func:`step_failure` says how any exception a step sees becomes a kind:

   * ``ApplicationError`` → its ``type`` (an activity error type above);
   * Temporal ``TimeoutError`` (start-to-close, heartbeat) → :data:`TIMEOUT`;
   * cancellation (``CancelledError``, ``asyncio.CancelledError``) → :data:`CANCELLED`;
   * anything else (a non-Temporal exception: a bug, a library error that escaped an activity
     without being mapped) → the exception's class name, e.g. ``"ValueError"``. Such an error is
     retried by Temporal (it is not in :data:`PERMANENT`) and, once the attempts are spent, handled
     as a failed step like any other.

3. **Outcomes.** An Upgrade that does not succeed ends FAILED with an ``ApplicationError`` whose
   type names the outcome (:data:`OUTCOME_ERROR`; readers map it back with :data:`OUTCOME_OF_ERROR`)
   and whose first detail is the full report. A failed canary run ends with :data:`CANARY_FAILED`.

Workflows match on these names (plain strings), so this module is import-safe inside the workflow
sandbox: it imports nothing but ``asyncio`` and ``temporalio.exceptions``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, TimeoutError

# --- 1. activity errors: permanent ---------------------------------------------------------------
PLAN_INVALID: Final = "PlanInvalid"  # the plan or its environment is wrong (missing workload, bad context)
WORKLOAD_NOT_FOUND: Final = "WorkloadNotFound"
ROLLOUT_FAILED: Final = "RolloutFailed"  # ProgressDeadlineExceeded or the plan's rollout timeout
JOB_FAILED: Final = "JobFailed"
SNAPSHOT_FAILED: Final = "SnapshotFailed"  # dump failed or did not verify: never migrate without it
RESTORE_FAILED: Final = "RestoreFailed"
MIGRATION_FAILED: Final = "MigrationFailed"
CHECK_FAILED: Final = "CheckFailed"  # a validation check answered "fail"
WORKLOAD_OWNED: Final = "WorkloadOwned"  # Helm, GitOps or an operator owns it: change what the owner reads
HELM_FAILED: Final = "HelmFailed"  # a helm command failed (chart not found, render error, ...)
# a node's servers could not all be moved away (a migration failed, a server cannot migrate, time ran out)
DRAIN_FAILED: Final = "DrainFailed"
# --- 1. activity errors: temporary ---------------------------------------------------------------
UNAVAILABLE: Final = "Unavailable"  # API/DB unreachable, 5xx, timeouts, conflicts
DB_IN_USE: Final = "DatabaseInUse"  # a session of the service still uses the database: restore waits
HELM_BUSY: Final = "HelmBusy"  # another operation on the release is in progress (recent, not ours)

PERMANENT = frozenset(
    {
        PLAN_INVALID,
        WORKLOAD_NOT_FOUND,
        ROLLOUT_FAILED,
        JOB_FAILED,
        SNAPSHOT_FAILED,
        RESTORE_FAILED,
        MIGRATION_FAILED,
        CHECK_FAILED,
        WORKLOAD_OWNED,
        HELM_FAILED,
        DRAIN_FAILED,
    }
)

TEMPORARY = frozenset({UNAVAILABLE, DB_IN_USE, HELM_BUSY})

# --- 2. step-failure kinds of the workflows ------------------------------------------------------
CANCELLED: Final = "cancelled"  # the activity was cancelled (an abort cancels the running step)
TIMEOUT: Final = "timeout"  # the activity timed out (start-to-close or heartbeat)
CHECK_FAIL: Final = "check-fail"  # a check answered "fail" (judged by the workflow)
INCONCLUSIVE: Final = "inconclusive"  # a check could not tell: the operator decides
GATE_TIMEOUT: Final = "gate-timeout"  # a gate was not approved in time: nothing was changed
ABORTED: Final = "aborted"  # the operator aborted the upgrade
RESTORE_APPROVAL: Final = "restore-approval"  # a restore would lose writes: it waits for approval
# the pre-flight refused: an earlier upgrade's online data migrations are unfinished (ledger or cloud)
UNFINISHED_MIGRATIONS: Final = "unfinished-migrations"
# the data plane (workflows/dataplane*.py): a batch refused by the capacity check (nothing of it was
# touched); more nodes failed than the plan's max_failed (no further batch started)
DATA_PLANE_REFUSED: Final = "data-plane-refused"
DATA_PLANE_FAILED: Final = "data-plane-failed"

STEP_KINDS = frozenset(
    {
        CANCELLED,
        TIMEOUT,
        CHECK_FAIL,
        INCONCLUSIVE,
        GATE_TIMEOUT,
        ABORTED,
        RESTORE_APPROVAL,
        UNFINISHED_MIGRATIONS,
        DATA_PLANE_REFUSED,
        DATA_PLANE_FAILED,
    }
)

# --- 3. outcomes ---------------------------------------------------------------------------------
UPGRADE_ROLLED_BACK: Final = "UpgradeRolledBack"
UPGRADE_FAILED: Final = "UpgradeFailed"
UPGRADE_ABORTED: Final = "UpgradeAborted"
CANARY_FAILED: Final = "CanaryFailed"

OUTCOME_ERROR: Final = {"rolled-back": UPGRADE_ROLLED_BACK, "failed": UPGRADE_FAILED, "aborted": UPGRADE_ABORTED}
"""Outcome of an upgrade that did not succeed → the type of the error its workflow ends with."""
OUTCOME_OF_ERROR: Final = {error: outcome for outcome, error in OUTCOME_ERROR.items()}
FLEET_OUTCOME_ERROR: Final = {"partial": "FleetPartial", "failed": "FleetFailed", "aborted": "FleetAborted"}
"""Outcome of a fleet that did not succeed (model.io_fleet.FleetOutcome) → the type of its error."""


def permanent(type: str, message: str, **details: Any) -> ApplicationError:
    """An error that must not be retried; ``details`` land in the workflow history."""
    if type not in PERMANENT:
        raise ValueError(f"{type!r} is not a permanent error type of stackhop")
    return ApplicationError(message, details or None, type=type, non_retryable=True)


def temporary(message: str, *, type: str = UNAVAILABLE, **details: Any) -> ApplicationError:
    """An error worth retrying (within the activity's bounded retry policy)."""
    if type not in TEMPORARY:
        raise ValueError(f"{type!r} is not a temporary error type of stackhop")
    return ApplicationError(message, details or None, type=type, non_retryable=False)


def step_failure(err: BaseException) -> tuple[str, str]:
    """(kind, message) of what a step's activity raised, innermost cause first (see level 2 above)."""
    cause: BaseException | None = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError):
        return cause.type or "ApplicationError", cause.message
    if isinstance(cause, TimeoutError):
        return TIMEOUT, f"timed out ({cause.type.name.lower() if cause.type else 'timeout'})"
    if isinstance(cause, CancelledError) or isinstance(err, asyncio.CancelledError):
        return CANCELLED, "cancelled"
    return type(cause).__name__, str(cause or err)
