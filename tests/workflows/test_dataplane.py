"""The data plane in the workflow (workflows/dataplane*.py), with stand-in activities under the real
names (tests/dataplane_standins.py): nova with four computes in two zones, upgraded after its control
plane rolled out, batch by batch (canary node-1, then node-2 + node-3, then node-4), each batch its
own DataPlaneBatch workflow; approve and pause between batches; a batch the capacity check refuses;
a failed node fenced and avoided; the failure threshold; the control plane's waits without the data
plane's DaemonSets."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from temporalio.client import Client

from cliapp import reports
from cliapp.control import route
from cliapp.render import report_view
from model import errors, io, visibility
from model.io_dataplane import CapacityInput, InventoryInput, NodeInput, NodeResult, ReplaceInput
from tests.dataplane_standins import NODES, DataPlaneScript
from tests.workflows.helpers import (
    blocked,
    outcome_of,
    rejected,
    running,
    service_handle,
    start,
    update,
    wait_for,
)
from tests.workflows.helpers import make_plan as _make_plan
from tests.workflows.test_recipes import nova

BATCHES = [["node-1"], ["node-2", "node-3"], ["node-4"]]
NODE_STEPS = ["dataplane.disable", "dataplane.drain", "dataplane.replace", "dataplane.enable", "dataplane.verify"]


def make_plan(**data_plane: Any) -> Any:
    rules = {
        "workloads": ["nova-compute"],
        "order": "name",
        "batch_size": 2,
        "max_per_zone": 1,
        "drain": "live",
        **data_plane,
    }
    return _make_plan([nova(data_plane=rules)])


def node_calls(script: DataPlaneScript, node: str) -> list[str]:
    return [
        c.rsplit(":", 1)[0]
        for c in script.calls
        if c.startswith("dataplane.") and not c.startswith("dataplane.capacity") and c.endswith(f":{node}")
    ]


def by_node(svc: io.ServiceResult) -> dict[str, NodeResult]:
    return {n.node: n for n in svc.data_plane}


async def test_batches_run_in_order_canary_first(client: Client) -> None:
    script = DataPlaneScript({**NODES, "node-5": "az-2"})
    script.upgraded("node-5")
    plan = make_plan()
    async with running(client, script) as tq:
        handle = await start(client, plan, tq)
        report = await handle.result()
        svc_id = io.service_workflow_id(plan.workflow_id, "nova")
        batch2 = await client.get_workflow_handle(f"{svc_id}/batch-2").describe()
    assert report.outcome == "succeeded"
    # each batch starts with its capacity check, after every call of the batch before it
    dp = [c for c in script.calls if c.startswith("dataplane.")]
    assert dp[0] == "dataplane.inventory"
    spans = []
    for batch in BATCHES:
        at = [i for i, c in enumerate(dp) if "capacity" not in c and any(c.endswith(f":{n}") for n in batch)]
        cap = dp.index(f"dataplane.capacity:{','.join(batch)}")
        assert cap < min(at)
        spans.append((cap, max(at)))
    assert spans[0][1] < spans[1][0] and spans[1][1] < spans[2][0]
    for n in ("node-1", "node-2", "node-3", "node-4"):
        assert node_calls(script, n) == NODE_STEPS
    assert node_calls(script, "node-5") == []  # already upgraded: reported, skipped
    # the control plane: the data plane after the rollout, before the unpin restart
    calls = script.calls
    assert calls.index("k8s.wait_rollout") < calls.index("dataplane.inventory") < calls.index("k8s.restart")
    # the rollout wait and the unpin restart's wait never include the OnDelete DaemonSet
    assert script.waits == [["nova-api", "nova-conductor"]] * 2
    (inv,) = script.inputs["dataplane.inventory"]
    assert isinstance(inv, InventoryInput)
    assert (inv.daemonsets, inv.selector, inv.images, inv.binary) == (
        ["nova-compute"],
        "",
        ["registry/nova:33.0.2"],
        "nova-compute",
    )
    (rep,) = script.inputs["dataplane.replace:node-2"]
    assert isinstance(rep, ReplaceInput) and rep.service_version == 72 and rep.daemonsets == ["nova-compute"]
    (drain,) = script.inputs["dataplane.drain:node-2"]
    assert isinstance(drain, NodeInput) and drain.drain == "live" and drain.avoid == ["node-2", "node-3"]
    # the report: every node
    (svc,) = report.services
    nodes = by_node(svc)
    assert sorted(nodes) == ["node-1", "node-2", "node-3", "node-4", "node-5"]
    assert [(nodes[n].batch, nodes[n].outcome) for n in ("node-1", "node-2", "node-3", "node-4")] == [
        (1, "upgraded"),
        (2, "upgraded"),
        (2, "upgraded"),
        (3, "upgraded"),
    ]
    assert nodes["node-1"].release_before == "2025.2" and nodes["node-1"].release_after == "2026.1"
    assert nodes["node-1"].servers_moved == 2 and {m.status for m in nodes["node-1"].moved} == {"completed"}
    assert nodes["node-5"].outcome == "skipped" and nodes["node-5"].message == "already upgraded"
    assert [r.step for r in svc.steps if r.step == "dataplane"] == ["dataplane"]
    # each batch its own workflow, named and searchable as the others
    assert await batch2.static_summary() == "nova batch 2/3: node-2, node-3 (az-1, az-2)"
    assert batch2.typed_search_attributes.get(visibility.SERVICE) == ["nova"]
    assert batch2.typed_search_attributes.get(visibility.CLOUD) == plan.cloud.name


async def test_approve_between_batches_and_pause(client: Client) -> None:
    script = DataPlaneScript()
    plan = make_plan(approve=True)
    async with running(client, script) as tq:
        handle = await start(client, plan, tq)
        st = await wait_for(client, handle, lambda st: st.services[0].decision == "nova/batch#2")
        p = st.services[0]
        assert p.answers == ["approve", "abort"] and p.state == "waiting"
        assert p.batch == "nova batch 2/3: node-2, node-3 (az-1, az-2)"
        assert "approve nova/batch#2 starts the batch" in p.message
        assert node_calls(script, "node-1") == NODE_STEPS and node_calls(script, "node-2") == []
        nova_wf = service_handle(client, plan, "nova")
        assert "'nova/batch#3' is not the decision waiting" in await rejected(
            nova_wf, "approve", io.ApproveRequest(gate="nova/batch#3")
        )
        # the upgrade's pause holds the approved batch too
        await update(handle, "pause", io.PauseRequest(reason="change freeze"))
        (target,) = await route(client, handle, "approve", io.ApproveRequest(gate="nova/batch#2"))
        assert target.id == nova_wf.id
        ack = await update(target, "approve", io.ApproveRequest(gate="nova/batch#2", by="ops"))
        assert ack.message == "nova/batch#2 approved: nova batch 2/3: node-2, node-3 (az-1, az-2) starts"
        await wait_for(client, handle, lambda st: st.services[0].state == "paused")
        assert not any(c.startswith("dataplane.capacity:node-2") for c in script.calls)
        await update(handle, "resume", io.ResumeRequest())
        await wait_for(client, handle, lambda st: st.services[0].decision == "nova/batch#3")
        assert node_calls(script, "node-3") == NODE_STEPS and node_calls(script, "node-4") == []
        await update(nova_wf, "approve", io.ApproveRequest(gate="nova/batch#3"))
        report = await handle.result()
    assert report.outcome == "succeeded"
    assert all(n.outcome == "upgraded" for n in report.services[0].data_plane)


async def test_abort_at_a_batch_approval_starts_no_batch_and_rolls_nothing_back(client: Client) -> None:
    script = DataPlaneScript()
    plan = make_plan(approve=True)
    async with running(client, script) as tq:
        handle = await start(client, plan, tq)
        await wait_for(client, handle, lambda st: st.services[0].decision == "nova/batch#2")
        await update(handle, "abort", io.AbortRequest(reason="the canary looks wrong"))
        kind, report = await outcome_of(handle)
    assert kind == errors.UPGRADE_FAILED
    (svc,) = report.services
    assert "the canary looks wrong" in svc.message and "nothing rolled back" in svc.message
    assert node_calls(script, "node-1") == NODE_STEPS
    assert not any(c.startswith("dataplane.capacity:node-2") for c in script.calls)
    assert not {"k8s.undo_images", "k8s.restart", "db.restore"} & set(script.calls) and svc.rollback is None
    assert [n.outcome for n in svc.data_plane] == ["upgraded", "skipped", "skipped", "skipped"]


async def test_the_upgrades_pause_holds_the_next_batch(client: Client) -> None:
    script = DataPlaneScript()
    release = blocked(script, "dataplane.verify:node-1")
    plan = make_plan()
    async with running(client, script) as tq:
        handle = await start(client, plan, tq)
        await wait_for(client, handle, lambda st: st.services[0].batch.startswith("nova batch 1/3"))
        await update(handle, "pause", io.PauseRequest(reason="look at the canary"))
        release.set()
        st = await wait_for(client, handle, lambda st: st.services[0].state == "paused")
        assert st.services[0].batch == "nova batch 2/3: node-2, node-3 (az-1, az-2)"
        assert "paused by the operator before nova batch 2/3" in st.services[0].message
        assert node_calls(script, "node-1") == NODE_STEPS
        assert not any(c.startswith("dataplane.capacity:node-2") for c in script.calls)
        await update(handle, "resume", io.ResumeRequest())
        report = await handle.result()
    assert report.outcome == "succeeded" and node_calls(script, "node-4") == NODE_STEPS


async def test_capacity_refusal_stops_before_the_batch_is_touched(client: Client) -> None:
    script = DataPlaneScript()
    why = "server node-2-vm1 (VCPU 1, MEMORY_MB 512) fits on no host outside the batch"
    script.unplaceable["dataplane.capacity:node-2,node-3"] = why
    plan = make_plan()
    async with running(client, script) as tq:
        kind, report = await outcome_of(await start(client, plan, tq))
    assert kind == errors.UPGRADE_FAILED
    (svc,) = report.services
    assert svc.outcome == "failed" and why in svc.message and "nothing was touched" in svc.message
    assert node_calls(script, "node-1") == NODE_STEPS
    assert node_calls(script, "node-2") == node_calls(script, "node-3") == node_calls(script, "node-4") == []
    # forward-only: no rollback, and nothing after the data plane
    assert not {"k8s.undo_images", "k8s.restart", "migration.db_sync:online", "db.restore"} & set(script.calls)
    nodes = by_node(svc)
    assert nodes["node-1"].outcome == "upgraded"
    assert nodes["node-2"].outcome == nodes["node-3"].outcome == "skipped" and why in nodes["node-2"].message
    assert nodes["node-4"].outcome == "skipped" and nodes["node-4"].message == "not started"
    assert nodes["node-4"].release_after == "2025.2"


async def test_failed_node_is_fenced_and_avoided_below_the_threshold(client: Client) -> None:
    script = DataPlaneScript()
    script.fail["dataplane.drain:node-2"] = errors.ROLLOUT_FAILED
    plan = make_plan(max_failed=1)
    async with running(client, script) as tq:
        report = await (await start(client, plan, tq)).result()
    assert report.outcome == "succeeded"
    # fenced: its service stays disabled (no enable), the rest of its batch went on
    assert node_calls(script, "node-2") == ["dataplane.disable", "dataplane.drain"]
    assert node_calls(script, "node-3") == node_calls(script, "node-4") == NODE_STEPS
    # the later batch avoids it: the capacity check and the drain send no server there
    (cap,) = script.inputs["dataplane.capacity:node-4"]
    assert isinstance(cap, CapacityInput) and cap.avoid == ["node-2"]
    (drain,) = script.inputs["dataplane.drain:node-4"]
    assert isinstance(drain, NodeInput) and "node-2" in drain.avoid
    # the service went on: the unpin restart, validation, online data migrations
    assert {"k8s.restart", "tempest.run", "migration.db_sync:online"} <= set(script.calls)
    nodes = by_node(report.services[0])
    assert nodes["node-2"].outcome == "failed" and nodes["node-2"].fenced
    assert nodes["node-2"].release_after == "2025.2" and "drain" in nodes["node-2"].message
    assert [n.node for n in report.services[0].data_plane if n.outcome == "upgraded"] == [
        "node-1",
        "node-3",
        "node-4",
    ]
    (rec,) = [r for r in report.services[0].steps if r.step == "dataplane"]
    assert rec.status == "done" and "fenced: node-2" in rec.detail


async def test_threshold_passed_stops_the_batches_without_rollback(client: Client) -> None:
    script = DataPlaneScript()
    script.fail["dataplane.verify:node-3"] = errors.CHECK_FAILED
    plan = make_plan(max_failed=0)
    async with running(client, script) as tq:
        kind, report = await outcome_of(await start(client, plan, tq))
    assert kind == errors.UPGRADE_FAILED
    (svc,) = report.services
    assert svc.outcome == "failed" and "1 of 4 nodes failed" in svc.message and "fix forward" in svc.message
    # node-3 was enabled before its verify failed: disabled again (fenced)
    assert node_calls(script, "node-3") == [*NODE_STEPS, "dataplane.disable"]
    assert node_calls(script, "node-2") == NODE_STEPS  # upgraded, stays upgraded
    assert not any("node-4" in c for c in script.calls)  # no further batch started
    assert not {"k8s.undo_images", "k8s.restart", "migration.db_sync:online", "db.restore"} & set(script.calls)
    assert svc.rollback is None
    nodes = by_node(svc)
    assert [(n, nodes[n].outcome, nodes[n].release_after) for n in sorted(nodes)] == [
        ("node-1", "upgraded", "2026.1"),
        ("node-2", "upgraded", "2026.1"),
        ("node-3", "failed", "2026.1"),
        ("node-4", "skipped", "2025.2"),
    ]
    assert nodes["node-3"].fenced and "verify" in nodes["node-3"].message
    # the report: a node table (Markdown, and the terminal's `start --wait` / `report`)
    md = reports.render_markdown(report)
    assert "### Data plane" in md
    assert "| node-3 | 2 | az-2 | 2025.2 → 2026.1 | 2 | " in md and "| failed, fenced | verify: " in md
    assert "| node-4 | 3 | az-2 | 2025.2 | 0 | 0.0 | skipped | not started |" in md
    console = Console(record=True, width=250)
    console.print(report_view(report, "failed", report.message))
    text = console.export_text()
    assert "nova data plane" in text and "failed, fenced" in text
    assert "data plane: 2 of 4 nodes upgraded; fenced: node-3" in "\n".join(reports.summary_lines(report))


async def test_a_failed_canary_stops_whatever_max_failed_says(client: Client) -> None:
    script = DataPlaneScript()
    script.fail["dataplane.replace:node-1"] = errors.ROLLOUT_FAILED
    plan = make_plan(max_failed=2)
    async with running(client, script) as tq:
        kind, report = await outcome_of(await start(client, plan, tq))
    assert kind == errors.UPGRADE_FAILED
    (svc,) = report.services
    assert "1 of 4 nodes failed (the canary failed)" in svc.message
    assert node_calls(script, "node-1") == ["dataplane.disable", "dataplane.drain", "dataplane.replace"]
    assert not any(c.startswith("dataplane.capacity:node-2") for c in script.calls)


async def test_rollback_before_the_data_plane_waits_without_it(client: Client) -> None:
    script = DataPlaneScript()
    script.fail["k8s.wait_rollout"] = errors.ROLLOUT_FAILED
    plan = make_plan()
    async with running(client, script) as tq:
        kind, report = await outcome_of(await start(client, plan, tq))
    assert kind == errors.UPGRADE_ROLLED_BACK
    assert report.services[0].rollback is not None and report.services[0].rollback.kind == "images"
    assert "k8s.undo_images" in script.calls and not any(c.startswith("dataplane.") for c in script.calls)
    assert script.waits == [["nova-api", "nova-conductor"]] * 2  # the rollout's, the undo's


async def test_inventory_refusal_stops_before_any_node(client: Client) -> None:
    script = DataPlaneScript()
    script.refusals = ["DaemonSet nova-compute rolls every node at once (fix: updateStrategy: OnDelete)"]
    selector = "application=nova,component=compute"
    plan = _make_plan([nova(data_plane={"selector": selector, "drain": "live"})])
    async with running(client, script) as tq:
        kind, report = await outcome_of(await start(client, plan, tq))
    assert kind == errors.UPGRADE_FAILED
    assert "fix: updateStrategy: OnDelete" in report.services[0].message
    (inv,) = script.inputs["dataplane.inventory"]
    assert isinstance(inv, InventoryInput) and (inv.daemonsets, inv.selector) == ([], selector)
    assert [c for c in script.calls if c.startswith("dataplane.")] == ["dataplane.inventory"]
