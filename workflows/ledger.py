"""Ledger: what each upgrade of a cloud leaves pending, kept between upgrades.

One long-lived workflow per cloud (id ``ledger/<cloud>``: model.io.ledger_workflow_id). An upgrade
ends by recording, per service it touched, the release the service reached and its debts: online
data migrations not yet complete (nova, placement: the next upgrade needs them done), a schema
expanded but not contracted (a rollback with previous images after a complete expand). Records
arrive as the ``record`` signal, sent with signal-with-start by the ``ledger.record`` activity (so
the first record starts the ledger); a record already kept (the activity's retry) changes nothing.
The ``state`` query returns the ledger; the next upgrade's pre-flight reads it (``ledger.read``).

The ledger outlives the retention of the upgrades it remembers: after ``records_per_run`` records,
or when Temporal suggests it (history size), it continues as new with its state as the input. The
history it keeps is small: the last LEDGER_HISTORY records, one line each.

The rules that turn an upgrade's results into entries (:func:`entries_from`) and that weigh the
ledger against the cloud's own answers (:func:`reconcile`) are pure: the Upgrade workflow, the CLI
and the tests use them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from model import io
    from model.plan import UpgradePlan
    from model.recipes import service_recipe, service_steps

LEDGER_HISTORY = 20
LEDGER_PATCH = "ledger"  # workflows/upgrade.py: reading and recording the ledger


@workflow.defn(name="Ledger")
class LedgerWorkflow:
    @workflow.init
    def __init__(self, inp: io.LedgerInput) -> None:
        self.ledger = inp.state or io.LedgerState(cloud=inp.cloud)
        self.recorded_this_run = 0

    @workflow.run
    async def run(self, inp: io.LedgerInput) -> None:
        await workflow.wait_condition(
            lambda: self.recorded_this_run >= inp.records_per_run or workflow.info().is_continue_as_new_suggested()
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        state = self.ledger.model_copy(update={"runs": self.ledger.runs + 1})
        workflow.continue_as_new(io.LedgerInput(cloud=inp.cloud, state=state, records_per_run=inp.records_per_run))

    @workflow.query
    def state(self) -> io.LedgerState:
        return self.ledger

    @workflow.signal
    def record(self, rec: io.LedgerRecord) -> None:
        problem = invalid(self.ledger, rec)
        if problem:
            workflow.logger.warning("ledger record ignored: %s", problem)
            return
        services = dict(self.ledger.services)
        for entry in rec.entries:
            services[entry.service] = entry
        event = io.LedgerEvent(
            upgrade_id=rec.upgrade_id, run_id=rec.run_id, outcome=rec.outcome, at=rec.recorded_at, summary=summary(rec)
        )
        self.ledger = self.ledger.model_copy(
            update={
                "services": services,
                "history": [*self.ledger.history, event][-LEDGER_HISTORY:],
                "records": self.ledger.records + 1,
            }
        )
        self.recorded_this_run += 1


def invalid(state: io.LedgerState, rec: io.LedgerRecord) -> str:
    """Why a record is not kept ("" when it is): another cloud's, or one kept already (a retry)."""
    if rec.cloud != state.cloud:
        return f"record of cloud {rec.cloud!r} sent to the ledger of {state.cloud!r}"
    if not rec.upgrade_id:
        return "a record names the upgrade that left it"
    if any(
        e.upgrade_id == rec.upgrade_id and e.run_id == rec.run_id and e.outcome == rec.outcome for e in state.history
    ):
        return f"{rec.upgrade_id} ({rec.run_id}) is recorded already"
    return ""


def summary(rec: io.LedgerRecord) -> str:
    what = [f"{e.service} at {e.release or '?'}" + "".join(f", {d}" for d in debts(e)) for e in rec.entries]
    head = "cloud check" if rec.source == "cloud" else f"{rec.release_from} -> {rec.release_to} {rec.outcome}"
    return f"{head}: {'; '.join(what) or 'no service touched'}"


def debts(e: io.LedgerEntry) -> list[str]:
    out = ["online data migrations unfinished"] if e.online_pending else []
    return out + (["expanded, not contracted"] if e.expanded_not_contracted else [])


def command(service: str, phase: str) -> str:
    """The recipe's command of a migration phase, in words (e.g. ``placement-manage db online_data_migrations``)."""
    recipe = service_recipe(service)
    if recipe is None or phase not in recipe.commands:
        return ""
    return " ".join([*recipe.tool, *recipe.commands[phase][0]])


def entries_from(
    plan: UpgradePlan, results: list[io.ServiceResult], upgrade_id: str, run_id: str, at: str
) -> list[io.LedgerEntry]:
    """What each service the upgrade touched is left with (services it did not reach: nothing)."""
    out = []
    for r in results:
        svc = plan.service(r.service)
        steps = service_steps(svc)
        status = {s.step: s.status for s in r.steps if s.service == r.service}
        if not any(v in ("done", "failed") for v in status.values()):
            continue  # nothing ran (or only skipped steps): the ledger keeps what it knew
        rolled_back = r.rollback is not None and r.rollback.kind != "none"
        rolled = status.get("roll") in ("done", "failed")
        at_target = r.outcome == "succeeded" or (rolled and not rolled_back)
        online_pending = "online" in steps and at_target and status.get("online") != "done"
        expanded = status.get("expand") == "done" or (
            status.get("check") == "done" and status.get("expand") == "skipped"
        )
        contract_pending = "contract" in steps and expanded and status.get("contract") != "done"
        if r.rollback is not None and r.rollback.kind == "restore":
            contract_pending = False  # the snapshot is back: the schema is the old release's
        out.append(
            io.LedgerEntry(
                service=r.service,
                release=plan.release.to if at_target else plan.release.from_,
                version=svc.workloads[0].tag if at_target and svc.workloads else "",
                online_pending=online_pending,
                online_command=command(r.service, "online") if online_pending else "",
                expanded_not_contracted=contract_pending,
                contract_command=command(r.service, "contract") if contract_pending else "",
                outcome=r.outcome,
                upgrade_id=upgrade_id,
                run_id=run_id,
                recorded_at=at,
            )
        )
    return out


@dataclass
class Reconciled:
    """The ledger weighed against the cloud: what holds (the cloud wins where it answered)."""

    entries: dict[str, io.LedgerEntry] = field(default_factory=dict)  # per service of the plan
    disagreements: list[str] = field(default_factory=list)  # "placement: the ledger says …, the cloud …"
    refusals: list[str] = field(default_factory=list)  # why the upgrade may not start
    notes: list[str] = field(default_factory=list)  # what the pre-flight saw, per service


def reconcile(plan: UpgradePlan, ledger: io.LedgerState | None, cloud: io.CloudCheck) -> Reconciled:
    out = Reconciled()
    known = ledger.services if ledger else {}
    checked = {c.service: c for c in cloud.services}
    for svc in plan.services:
        name = svc.name
        entry = known.get(name) or io.LedgerEntry(service=name)
        check = checked.get(name) or io.ServiceCloudCheck(service=name, online="unknown")
        said = entry
        if check.online in ("pending", "done") and (check.online == "pending") != entry.online_pending:
            out.disagreements.append(
                f"{name}: the ledger says online data migrations "
                f"{'unfinished' if entry.online_pending else 'complete'}, the cloud says {check.online}"
                f" ({check.online_detail or 'its check'}): the cloud wins"
            )
            entry = entry.model_copy(
                update={
                    "online_pending": check.online == "pending",
                    "online_command": check.online_command if check.online == "pending" else "",
                    "source": "cloud",
                }
            )
        if check.expanded_not_contracted is not None and check.expanded_not_contracted != entry.expanded_not_contracted:
            out.disagreements.append(
                f"{name}: the ledger says the schema is "
                f"{'expanded, not contracted' if entry.expanded_not_contracted else 'not left expanded'}, "
                f"the schema check says {check.schema_state}: the cloud wins"
            )
            entry = entry.model_copy(
                update={
                    "expanded_not_contracted": check.expanded_not_contracted,
                    "contract_command": command(name, "contract") if check.expanded_not_contracted else "",
                    "source": "cloud",
                }
            )
        out.entries[name] = entry
        if entry.online_pending:
            left_by = f" left by {said.upgrade_id}" if said.online_pending and said.upgrade_id else ""
            out.refusals.append(
                f"{name}: the online data migrations{left_by} are unfinished; run "
                f"`{entry.online_command or check.online_command or command(name, 'online')}` until it exits 0"
                " (or resume that upgrade's online step), then start this upgrade again"
            )
        seen = [f"online data migrations: {check.online}"]
        if check.schema_state:
            seen.append(f"schema check: {check.schema_state}")
        if entry.expanded_not_contracted:
            seen.append(f"expanded, not contracted (the {plan.release.to} upgrade's contract finishes it)")
        out.notes.append(f"{name}: {'; '.join(seen)}")
    return out
