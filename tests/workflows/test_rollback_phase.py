"""Rollback by phase: the pure choice (model/recipe.py), table-driven, and the workflow that obeys it."""

from __future__ import annotations

import pytest
from temporalio.client import Client

from cliapp import reports
from model import errors, io
from model.recipe import RECIPES, Mode, decide, service_steps
from tests.standins import Script
from tests.waiting import eventually
from tests.workflows.helpers import (
    blocked,
    make_plan,
    outcome_of,
    rejected,
    running,
    service,
    service_handle,
    start,
    update,
    wait_for,
    waiting_for_decision,
)

EC = ("snapshot", "verify", "check")  # expand-contract: what ran before any schema change

# (mode, completed steps, step that failed part-way, kind, previous images, scale back)
DECISIONS: list[tuple[Mode, tuple[str, ...], str | None, str, bool, bool]] = [
    # before any schema change: nothing, or previous images only
    ("expand-contract", (), "snapshot", "none", False, False),
    ("expand-contract", ("snapshot",), "verify", "none", False, False),
    ("expand-contract", ("snapshot", "verify"), "check", "none", False, False),
    ("expand-contract", ("gate",), None, "none", False, False),
    # a part-way schema change: the schema is in an unknown state, only the snapshot is a way back
    ("expand-contract", EC, "expand", "restore", False, True),
    ("expand-contract", (*EC, "expand"), "migrate", "restore", False, True),
    # after a complete expand/migrate the old release serves on the expanded schema
    ("expand-contract", (*EC, "expand", "migrate"), None, "none", False, False),
    ("expand-contract", (*EC, "expand", "migrate"), "roll", "images", True, False),
    ("expand-contract", (*EC, "expand", "migrate", "roll"), "rollout", "images", True, False),
    ("expand-contract", (*EC, "expand", "migrate", "roll", "rollout"), "validate", "images", True, False),
    ("expand-contract", (*EC, "expand", "migrate", "roll", "rollout"), None, "images", True, False),
    ("expand-contract", (*EC, "migrate", "roll", "rollout"), "validate", "images", True, False),  # expand skipped
    ("expand-contract", (*EC, "roll", "rollout", "validate"), "validate", "images", True, False),
    # the point of no return
    (
        "expand-contract",
        (*EC, "expand", "migrate", "roll", "rollout", "validate"),
        "contract",
        "forward-fix",
        False,
        False,
    ),
    (
        "expand-contract",
        (*EC, "expand", "migrate", "roll", "rollout", "contract"),
        "postcheck",
        "forward-fix",
        False,
        False,
    ),
    # offline: quiesced first; once the offline migration started, restore
    ("offline", (), "quiesce", "none", False, True),
    ("offline", ("quiesce",), "snapshot", "none", False, True),
    ("offline", ("quiesce", "snapshot"), "verify", "none", False, True),
    ("offline", ("quiesce", "snapshot", "verify"), "offline", "restore", False, True),
    ("offline", ("quiesce", "snapshot", "verify", "offline"), "roll", "restore", True, True),
    ("offline", ("quiesce", "snapshot", "verify", "offline", "roll"), "rollout", "restore", True, True),
    (
        "offline",
        ("quiesce", "snapshot", "verify", "offline", "roll", "rollout", "unquiesce"),
        "validate",
        "restore",
        True,
        True,
    ),
    # no migration: images only
    ("none", ("snapshot", "verify"), "roll", "images", True, False),
    ("none", ("snapshot", "verify", "roll", "rollout"), "validate", "images", True, False),
    ("none", ("snapshot",), "verify", "none", False, False),
]


@pytest.mark.parametrize(
    ("mode", "completed", "failed", "kind", "images", "scale_back"),
    DECISIONS,
    ids=[f"{d[0]}:{'+'.join(d[1]) or '-'}:{d[2]}" for d in DECISIONS],
)
def test_the_rollback_follows_the_phase(
    mode: Mode, completed: tuple[str, ...], failed: str | None, kind: str, images: bool, scale_back: bool
) -> None:
    choice = decide(RECIPES[mode], set(completed), failed)
    assert (choice.kind, choice.images, choice.scale_back) == (kind, images, scale_back), choice.reason


def test_every_step_of_every_recipe_is_decided() -> None:
    """Exhaustive over each recipe: failing at step i after steps 0..i-1 completed never crashes, and
    a restore is chosen exactly when a step that only the snapshot undoes has started."""
    for mode, recipe in RECIPES.items():
        names = [s.name for s in recipe.steps]
        for i, step in enumerate(names):
            choice = decide(recipe, set(names[:i]), step)
            started = recipe.steps[: i + 1]
            if recipe.point_of_no_return in [s.name for s in started]:
                assert choice.kind == "forward-fix", (mode, step)
            elif any(s.undo == "restore" and (not s.old_serves_after or s.name == step) for s in started):
                assert choice.kind == "restore", (mode, step)
            else:
                assert choice.kind in ("none", "images"), (mode, step)


def test_offline_quiesces_before_the_snapshot() -> None:
    plan = make_plan([service("placement", migration={"mode": "offline"})])
    assert service_steps(plan.services[0]) == [
        "status",
        "quiesce",
        "snapshot",
        "verify",
        "offline",
        "roll",
        "rollout",
        "unquiesce",
        "validate",
        "online",
        "postcheck",
    ]
    # the generic offline recipe, which runs started before the per-service recipes keep
    assert service_steps(plan.services[0], per_service=False) == [
        "quiesce",
        "snapshot",
        "verify",
        "offline",
        "roll",
        "rollout",
        "unquiesce",
        "validate",
    ]


async def test_images_only_rollback_keeps_the_expanded_schema_and_says_so(client: Client) -> None:
    script = Script()
    script.fail["k8s.wait_rollout"] = errors.ROLLOUT_FAILED
    async with running(client, script) as tq:
        kind, report = await outcome_of(await start(client, make_plan(), tq))
    assert kind == errors.UPGRADE_ROLLED_BACK
    assert not {"db.inspect", "db.restore", "k8s.scale:down"} & set(script.calls)
    (svc,) = report.services
    assert svc.rollback and svc.rollback.kind == "images" and svc.restore is None
    assert svc.rollback.schema_state == (
        "expanded to 2026.1 (29.1.0); the contract did not run; the next upgrade's expand finds it done"
    )
    assert "previous images" in svc.message and ("expand", "done") in [(r.step, r.status) for r in svc.steps]


async def test_the_next_upgrade_finds_the_expand_done_and_runs_the_contract_once(client: Client) -> None:
    script = Script()
    script.answers["migration.db_sync:check"] = io.MigrateResult(phase="check", state="contract-needed")
    async with running(client, script) as tq:
        kind, report = await outcome_of(await start(client, make_plan(), tq))
    assert kind == "succeeded"
    assert "migration.db_sync:expand" not in script.calls
    assert script.calls.count("migration.db_sync:contract") == 1
    assert "migration.db_sync:migrate" not in script.calls  # keystone's --migrate: a no-op since Yoga
    (expand,) = [r for r in report.services[0].steps if r.step == "expand"]
    assert expand.status == "skipped" and "already expanded" in expand.detail


async def test_a_session_stops_the_restore_before_anything_is_dropped(client: Client) -> None:
    script = Script()
    script.fail["migration.db_sync:expand"] = errors.MIGRATION_FAILED
    busy = io.DbInspection(at="2026-01-01T00:05:00+00:00", sessions=["42 keystone@10.0.0.7 keystone Sleep 3"])
    script.answers["db.inspect"] = [busy, io.DbInspection(at="2026-01-01T00:06:00+00:00")]
    async with running(client, script) as tq:
        handle = await start(client, plan := make_plan(), tq)
        st = await wait_for(client, handle, waiting_for_decision)
        assert "42 keystone@10.0.0.7" in st.services[0].message and "nothing was dropped" in st.services[0].message
        assert "db.restore" not in script.calls
        await update(service_handle(client, plan, "keystone"), "resume", io.ResumeRequest())
        kind, report = await outcome_of(handle)
    assert kind == errors.UPGRADE_ROLLED_BACK
    assert script.calls[-5:] == ["db.inspect", "db.inspect", "db.restore", "k8s.scale:up", "k8s.wait_rollout"]
    rb = report.services[0].rollback
    assert rb and rb.kind == "restore" and rb.loss_to == "2026-01-01T00:06:00+00:00"


WRITERS = io.DbInspection(
    at="2026-01-01T00:05:00+00:00",
    changes=[
        io.TableChange(table="revocation_event", change="unknown"),
        io.TableChange(table="user", change="writers"),
        io.TableChange(table="migrate_version", change="migration"),
    ],
)


async def test_a_restore_that_discards_writes_waits_for_approval(client: Client) -> None:
    script = Script()
    script.fail["migration.db_sync:expand"] = errors.MIGRATION_FAILED
    script.answers["db.inspect"] = WRITERS
    async with running(client, script) as tq:
        handle = await start(client, plan := make_plan(), tq)
        st = await wait_for(client, handle, waiting_for_decision)
        assert "revocation_event, user" in st.services[0].message and "db.restore" not in script.calls
        assert st.services[0].decision == "keystone/restore#1"
        svc = service_handle(client, plan, "keystone")
        assert "not a failed step to retry" in await rejected(svc, "resume", io.ResumeRequest())
        ack = await update(svc, "approve", io.ApproveRequest(gate="keystone/restore#1"))
        assert ack.message == "keystone/restore#1 approved"
        kind, report = await outcome_of(handle)
    assert kind == errors.UPGRADE_ROLLED_BACK and "db.restore" in script.calls
    rb = report.services[0].rollback
    assert rb and rb.kind == "restore"
    assert (rb.loss_from, rb.loss_to) == ("2026-01-01T00:00:00+00:00", "2026-01-01T00:05:00+00:00")
    assert [c.table for c in rb.table_changes] == ["revocation_event", "user", "migrate_version"]
    assert rb.lost == "2 table(s) had writers' changes: revocation_event, user"
    assert [r.step for r in report.services[0].steps if r.status == "failed"] == ["expand"]


async def test_an_automatic_restore_policy_does_not_wait(client: Client) -> None:
    script = Script()
    script.fail["migration.db_sync:expand"] = errors.MIGRATION_FAILED
    script.answers["db.inspect"] = WRITERS
    async with running(client, script) as tq:
        kind, report = await outcome_of(await start(client, make_plan(restore="automatic"), tq))
    assert kind == errors.UPGRADE_ROLLED_BACK and "db.restore" in script.calls
    assert report.services[0].rollback and "2 table(s)" in report.services[0].rollback.lost


async def test_offline_rollback_restores_first_and_loses_nothing(client: Client) -> None:
    """Quiesced before the snapshot: the restore undoes only the migration, and needs no approval
    even where a table's rows changed (nobody but the migration could write)."""
    script = Script()
    script.fail["k8s.wait_rollout"] = errors.ROLLOUT_FAILED
    script.fail_times["k8s.wait_rollout"] = 1  # the rollback's own wait succeeds
    script.answers["db.inspect"] = WRITERS
    plan = make_plan([service("placement", migration={"mode": "offline"}, checks=[])])
    async with running(client, script) as tq:
        kind, report = await outcome_of(await start(client, plan, tq))
    assert kind == errors.UPGRADE_ROLLED_BACK
    # restore → previous images → scale back → wait
    assert script.calls[-6:] == [
        "k8s.wait_rollout",
        "db.inspect",
        "db.restore",
        "k8s.undo_images",
        "k8s.scale:up",
        "k8s.wait_rollout",
    ]
    assert script.calls.count("k8s.scale:down") == 1
    rb = report.services[0].rollback
    assert rb and rb.kind == "restore" and rb.lost.startswith("nothing: the service was quiesced before the snapshot")


async def test_offline_snapshot_failure_scales_back_and_changes_nothing(client: Client) -> None:
    script = Script()
    script.fail["db.snapshot"] = errors.SNAPSHOT_FAILED
    plan = make_plan([service("placement", migration={"mode": "offline"}, checks=[])])
    async with running(client, script) as tq:
        kind, report = await outcome_of(await start(client, plan, tq))
    assert kind == errors.UPGRADE_FAILED and "nothing was changed" in report.message
    assert script.calls[-3:] == ["k8s.scale:down", "db.snapshot", "k8s.scale:up"]


def test_the_report_shows_the_rollback_kind_schema_window_and_tables() -> None:
    rb = io.RollbackReport(
        kind="restore",
        reason="expand failed part-way: the schema is in an unknown state; only the snapshot is a way back",
        schema_state="restored from the snapshot of 2026-01-01T00:00:00+00:00",
        loss_from="2026-01-01T00:00:00+00:00",
        loss_to="2026-01-01T00:05:00+00:00",
        table_changes=WRITERS.changes,
        lost="2 table(s) had writers' changes: revocation_event, user",
    )
    svc = io.ServiceResult(service="keystone", outcome="rolled-back", rollback=rb)
    report = io.UpgradeReport(
        plan="p", cloud="c", release_from="2025.2", release_to="2026.1", outcome="rolled-back", services=[svc]
    )
    md = reports.render_markdown(report)
    assert "### Rollback" in md and "- rollback: restore (expand failed part-way" in md
    assert "- data-loss window: 2026-01-01T00:00:00+00:00 → 2026-01-01T00:05:00+00:00" in md
    assert "- lost: 2 table(s) had writers' changes: revocation_event, user" in md
    assert "| `user` | writers |" in md and "| `migrate_version` | migration |" in md
    junit = reports.render_junit(report)
    assert 'name="rollback.kind" value="restore"' in junit and 'name="rollback.table.user" value="writers"' in junit
    assert any(line.strip().startswith("lost: 2 table(s)") for line in reports.summary_lines(report))


async def test_an_abort_during_the_expand_restores(client: Client) -> None:
    """Cancelled mid-expand, the schema is in an unknown state: only the snapshot is a way back."""
    script = Script()
    blocked(script, "migration.db_sync:expand")
    async with running(client, script) as tq:
        handle = await start(client, make_plan(), tq)
        await wait_for(client, handle, lambda st: st.services[0].step == "expand")
        await eventually(lambda: "migration.db_sync:expand" in script.calls or None, what="the expand started")
        await update(handle, "abort", io.AbortRequest(reason="wrong maintenance window", by="ops"))
        kind, report = await outcome_of(handle)
    assert kind == errors.UPGRADE_ABORTED
    assert script.calls[-5:] == ["k8s.scale:down", "db.inspect", "db.restore", "k8s.scale:up", "k8s.wait_rollout"]
    rb = report.services[0].rollback
    assert rb and rb.kind == "restore" and rb.reason.startswith("expand failed part-way")
