"""What the workflows share: calling activities with bounded retries, and recording steps.

No I/O here: only Temporal workflow APIs and the shared model.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, TimeoutError, TimeoutType
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from model import errors, io
    from model.plan import Policy

R = TypeVar("R", bound=BaseModel)

# The worker re-validates the plan before any step (activity plan.admit, activities/admission.py):
# the Upgrade workflow first thing; a service or data plane batch workflow only when started on its
# own (a child's plan was admitted by the Upgrade it belongs to).
ADMIT_PATCH = "plan-admit"


class StepFailed(Exception):
    """A step that did not succeed. ``kind`` is a name of model.errors: an activity error type or
    one of the workflows' step-failure kinds (``errors.STEP_KINDS``)."""

    def __init__(self, step: str, message: str, kind: str = ""):
        # The first line is the message (reports, UI details); the full text, often a tool's
        # output tail, stays in the step record.
        first = message.strip().splitlines()[0] if message.strip() else message
        super().__init__(first)
        self.step = step
        self.kind = kind
        self.detail = message


def retry_policy(policy: Policy) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=policy.max_attempts,
        non_retryable_error_types=sorted(errors.PERMANENT),
    )


class Recorder:
    """Keeps the step records of one workflow and runs its activities as cancellable tasks."""

    def __init__(self, service: str, policy: Policy):
        self.service = service
        self.policy = policy
        self.records: list[io.StepRecord] = []
        self.current: asyncio.Task[Any] | None = None

    def start(self, step: str, detail: str = "") -> io.StepRecord:
        rec = io.StepRecord(
            service=self.service,
            step=step,
            status="running",
            started_at=workflow.now().isoformat(),
            detail=detail,
        )
        self.records.append(rec)
        return rec

    def finish(self, rec: io.StepRecord, status: io.StepStatus, detail: str | None = None) -> None:
        i = self.records.index(rec)
        ended = workflow.now()
        started = ended if not rec.started_at else type(ended).fromisoformat(rec.started_at)
        self.records[i] = rec.model_copy(
            update={
                "status": status,
                "ended_at": ended.isoformat(),
                "seconds": round((ended - started).total_seconds(), 3),
                "detail": rec.detail if detail is None else detail,
            }
        )

    def compensated(self, *steps: str) -> None:
        """Mark done steps as undone by a compensation (reports show what was rolled back)."""
        self.records = [
            r.model_copy(update={"status": "compensated"}) if r.step in steps and r.status == "done" else r
            for r in self.records
        ]

    def passed(self, step: str) -> bool:
        """True once a record of ``step`` has ended (done, failed, skipped or compensated)."""
        return any(r.step == step and r.status != "running" for r in self.records)

    def skip(self, step: str, detail: str) -> None:
        self.finish(self.start(step, detail), "skipped")

    async def call(
        self,
        step: str,
        name: str,
        arg: BaseModel,
        result_type: type[R],
        *,
        summary: str,
        step_timeout: int | None = None,
        task_queue: str | None = None,
        schedule_to_start: int | None = None,
    ) -> R:
        """Run one activity; any failure becomes StepFailed(step, ...).

        Every activity runs under the heartbeat timeout, so a worker that dies mid-step is noticed
        within it (not at the end of the step timeout) and the retry goes to a live worker.
        ``task_queue`` pins it to one worker host (the one holding a snapshot file), and
        ``schedule_to_start`` bounds how long it waits for that host to poll."""
        handle = workflow.start_activity(
            name,
            arg,
            result_type=result_type,
            task_queue=task_queue,
            start_to_close_timeout=timedelta(seconds=(step_timeout or self.policy.step_timeout) + 60),
            schedule_to_start_timeout=timedelta(seconds=schedule_to_start) if schedule_to_start else None,
            heartbeat_timeout=timedelta(seconds=self.policy.heartbeat_timeout),
            retry_policy=retry_policy(self.policy),
            # A cancelled wait must have stopped before a compensation touches the same objects.
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            summary=summary,
        )
        self.current = handle
        try:
            result: R = await handle  # the activity's result, converted to result_type
            return result
        except (ActivityError, asyncio.CancelledError) as e:
            kind, message = errors.step_failure(e)
            if task_queue and isinstance(e, ActivityError) and _schedule_to_start(e):
                message = (
                    f"no worker of task queue {task_queue} (the host that holds the file) picked it up"
                    f" within {schedule_to_start}s; nothing was done — start that worker, then resume"
                )
            raise StepFailed(step, f"{name}: {message}", kind) from None
        finally:
            self.current = None

    def cancel_current(self) -> None:
        if self.current is not None and not self.current.done():
            self.current.cancel()


def _schedule_to_start(e: ActivityError) -> bool:
    cause = e.cause
    return isinstance(cause, TimeoutError) and cause.type == TimeoutType.SCHEDULE_TO_START
