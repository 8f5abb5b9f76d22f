"""The boundary of every activity: what it returns and what it raises passes the redaction filter.

Why an interceptor: tool output leaves an activity in its result (a migration's ``output_tail``, a
check's message and details, helm's values diff) and in its errors (``ApplicationError`` message
and details: mariadb's, db-sync's and helm's output tails). Applying ``model.redact`` at each of the
dozens of places that build those would miss the next one; the worker applies it once, here, to
everything an activity hands to Temporal, before the SDK serialises it into the history (and
before the upgrade report, which is built from results and error messages, ever sees it).

Heartbeat details are not filtered: they carry counters and resume points, which an activity's
next attempt reads back exactly.
"""

from __future__ import annotations

from typing import Any

from temporalio.exceptions import ApplicationError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from model.redact import redact, redact_value


class Redacting(Interceptor):
    """A worker interceptor (``Worker(interceptors=[Redacting()])``, see worker.build_worker)."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _RedactingInbound(next)


class _RedactingInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            result = await super().execute_activity(input)
        except ApplicationError as e:
            raise redacted_error(e) from None
        return redact_value(result)


def redacted_error(e: ApplicationError) -> ApplicationError:
    """The same error (type, retryability, next retry delay, category) with message and details
    redacted; the original is not chained: its text would travel as the cause."""
    message, details = redact(e.message), [redact_value(d) for d in e.details]
    if message == e.message and details == list(e.details) and e.__cause__ is None:
        return e
    out = ApplicationError(
        message,
        *details,
        type=e.type,
        non_retryable=e.non_retryable,
        next_retry_delay=e.next_retry_delay,
        category=e.category,
    )
    out.__traceback__ = e.__traceback__
    return out
