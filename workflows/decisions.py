"""Asking the operator, for ServiceUpgradeWorkflow: one grammar and one life cycle for every decision.

Every wait for a person — a gate, a failed or inconclusive step, a rollback step that failed, a
restore that needs approval — is a *decision* with an id ``<service>/<step>#<n>`` (``n`` counts the
decisions of that service and step from 1: ``keystone/validate#2``). The status query and the UI
details show the id of the decision waiting and the commands that answer it. An answer names what
it answers: an approval is recorded against that one id, so it is consumed by that decision and can
never accept a later one (a stale ``approve`` is refused: the id no longer waits).

Which commands answer a decision depends on its kind and on when it is asked:

* a gate, an inconclusive check, a restore approval, the next data plane batch (:data:`APPROVABLE`):
  approve (a batch's decision is numbered by the batch, ``nova/batch#2``, not by how many were asked);
* a failed forward step: resume retries it, abort rolls back (approving it is refused: a failure
  is not accepted by a person, it is fixed and retried, or undone);
* during a rollback: resume retries the failed compensation, abandon ends the rollback with a report
  of what is left undone (:class:`Abandoned`). An abort there changes nothing: the rollback is
  already on its way, and compensations are never cancelled.

Deterministic code only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from model import errors, io
    from model.plan import Service, UpgradePlan
    from workflows.steps import StepFailed

GATE = "gate"  # the kind of a gate's decision (the other kinds are those of StepFailed)
# the kind of a data plane batch's approval (``nova/batch#2``: its n is the batch's number)
BATCH = "batch"
APPROVABLE = frozenset({GATE, BATCH, errors.INCONCLUSIVE, errors.RESTORE_APPROVAL})


@dataclass(frozen=True)
class Decision:
    """One question to the operator, open until it is answered."""

    id: str  # <service>/<step>#<n>
    step: str
    kind: str  # GATE or a step-failure kind of model.errors
    during_rollback: bool  # asked by a compensation: abandon may end it, abort cannot

    @property
    def answers(self) -> list[io.Answer]:
        if self.during_rollback:
            return [io.APPROVE, io.ABANDON] if self.kind in APPROVABLE else [io.RESUME, io.ABANDON]
        if self.kind in (GATE, BATCH):
            return [io.APPROVE, io.ABORT]
        return [io.APPROVE, io.RESUME, io.ABORT] if self.kind in APPROVABLE else [io.RESUME, io.ABORT]


class Abandoned(Exception):
    """The operator abandoned the rollback at a decision: the compensations left stay undone."""

    def __init__(self, decision: str):
        super().__init__(decision)
        self.decision = decision


class _Accepted(Exception):
    """The operator approved an inconclusive check: carry on."""


class Decisions:
    """The decisions of one service (state set by ServiceUpgradeWorkflow.__init__)."""

    plan: UpgradePlan
    svc: Service
    abort_reason: str | None
    deciding: StepFailed | None  # the failure the operator is asked about
    progress: io.ServiceProgress
    rolling_back: bool  # the compensations run: a decision now belongs to the rollback
    asking: Decision | None  # the decision waiting, if any
    asked: dict[str, int]  # step -> decisions asked so far
    answered: dict[str, io.Answer]  # decision id -> how the operator answered it

    def _report(self, **changes: Any) -> None:
        raise NotImplementedError  # ServiceSteps._report

    @property
    def _past_ponr(self) -> bool:
        return self.progress.past_point_of_no_return

    @property
    def _past_what(self) -> str:
        """How the point of no return is named to the operator (ServiceSteps names the recipe's)."""
        return "past the contract"

    async def _decide_retry(self, failure: StepFailed) -> bool:
        """True: retry the failed step. Asks the operator where policy or safety say so."""
        inconclusive = failure.kind == errors.INCONCLUSIVE
        must_ask = self._past_ponr or self.plan.policy.on_failure == "pause" or inconclusive
        if not must_ask:
            return False
        note = f" ({self._past_what}: fix forward, then resume)" if self._past_ponr else ""
        self._report(state="waiting", waiting_for=io.DECISION, message=f"{failure.step} failed: {failure}{note}")
        answer = await self._decision(failure, lambda: self.abort_reason is not None)
        self._report(state="running", waiting_for=None, message="")
        if answer == io.APPROVE:
            raise _Accepted()
        return answer == io.RESUME

    async def _decision(self, failure: StepFailed, or_else: Callable[[], bool] = lambda: False) -> io.Answer | None:
        """Ask the operator about ``failure`` and wait for the answer, or for ``or_else()`` (an abort).

        Returns the answer (approve: only for an approvable kind; resume), or None when ``or_else``
        ended the wait. Raises :class:`Abandoned` when the operator abandoned the rollback."""
        asked = self._open(failure.step, failure.kind)
        self.deciding = failure
        await workflow.wait_condition(lambda: asked.id in self.answered or or_else())
        self.deciding = None
        self._close()
        answer = self.answered.get(asked.id)
        if answer == io.ABANDON:
            raise Abandoned(asked.id)
        return answer

    def _open(self, step: str, kind: str, message: str | None = None, n: int | None = None) -> Decision:
        """A new decision about ``step``: its id, shown with the commands that answer it. ``n``: the
        number the id carries when something else counts it (a data plane batch's)."""
        n = n if n is not None else self.asked.get(step, 0) + 1
        self.asked[step] = n
        asked = Decision(io.decision_id(self.svc.name, step, n), step, kind, self.rolling_back)
        self.asking = asked
        text = self.progress.message if message is None else message
        self._report(decision=asked.id, answers=asked.answers, message=f"{text} — {asked.id}: {self._hints(asked)}")
        return asked

    def _close(self, message: str | None = None) -> None:
        self.asking = None
        self._report(decision="", answers=[], **({} if message is None else {"message": message}))

    def _hints(self, asked: Decision) -> str:
        what = {
            io.APPROVE: f"approve {asked.id} "
            + {GATE: "opens it", BATCH: "starts the batch"}.get(asked.kind, "accepts it"),
            io.RESUME: "resume retries it",
            io.ABORT: "abort rolls back"
            if not (self._past_ponr or asked.kind in (GATE, BATCH))
            else "abort stops here",
            io.ABANDON: "abandon --reason ends the rollback, leaving the rest undone",
        }
        return ", ".join(what[a] for a in asked.answers)

    # --- the operator's answers (validated by ServiceUpgradeWorkflow's update validators) ---------
    def _refusal(self, answer: io.Answer, named: str = "") -> str | None:
        """Why ``answer`` (to the decision ``named``, for approve) cannot be taken now, or None."""
        asked = self.asking
        if named and named == self.svc.gate_name:  # a gate is also named as `start --approve GATE` names it
            named = io.decision_id(self.svc.name, GATE, 1)
        if named and (asked is None or named != asked.id):
            now = f"{self.svc.name} waits for {asked.id}" if asked else f"{self.svc.name} is not waiting for a decision"
            if named in self.answered:
                done = self.answered[named]
                return f"{named} was answered already ({done}): an answer applies to one decision only; {now}"
            return f"{named!r} is not the decision waiting: {now}"
        if asked is None:
            return f"nothing to {answer}: {self.svc.name} is not waiting for a decision"
        if answer in asked.answers:
            return None
        if answer == io.APPROVE:
            return (
                f"{asked.id} is a failed {asked.step} ({asked.kind}), not an inconclusive check: it cannot be"
                f" approved; {self._hints(asked)}"
            )
        if answer == io.ABANDON:
            return (
                f"{asked.id} is not a rollback step: abandon is accepted only while a rollback step waits for a"
                f" decision; {self._hints(asked)}"
            )
        return f"nothing to resume: {asked.id} is not a failed step to retry; {self._hints(asked)}"
