"""The plan's ``data_plane`` block (model/dataplane.py): what the validation refuses (each refusal at
its field with a fix), how the nodes are cut into batches, when failures stop the upgrade, and what
`stackhop plan show` / `plan schema` say about it.

The valid plan is tests/plans/data-plane.yaml (nova with every data_plane field set); each bad case
is that plan with one change. The batch rules are checked on examples and as properties over random
node sets and rules (hypothesis): every node exactly once, the canary first, no batch over its size,
its zone limit or its group, no batch smaller than it had to be, the same batches for any input order.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli import app
from model.dataplane import DataPlane, count_of, order_key, plan_batches, selector_problem, too_many_failed
from model.loading import PlanError, parse_plan
from model.plan import UpgradePlan

ROOT = Path(__file__).resolve().parents[1]
PLAN = ROOT / "tests" / "plans" / "data-plane.yaml"
DOC: dict[str, Any] = yaml.safe_load(PLAN.read_text())
AT = "services[0].data_plane"
Change = Callable[[dict[str, Any]], None]


def load(doc: dict[str, Any]) -> UpgradePlan | PlanError:
    try:
        return parse_plan(json.dumps(doc, indent=1), "plan.yaml")
    except PlanError as e:
        return e


def changed(change: Change) -> dict[str, Any]:
    doc = copy.deepcopy(DOC)
    change(doc)
    return doc


def dp(**fields: Any) -> Change:
    """Set (or with ``...``, remove) fields of nova's data_plane block."""

    def change(doc: dict[str, Any]) -> None:
        block = doc["services"][0]["data_plane"]
        for name, value in fields.items():
            if value is ...:
                block.pop(name, None)
            else:
                block[name] = value

    return change


def nova(change: Callable[[dict[str, Any]], None]) -> Change:
    return lambda doc: change(doc["services"][0])


def _mode_none(svc: dict[str, Any]) -> None:
    svc["migration"] = {"mode": "none"}
    svc.pop("databases")


def _quiesce_unset(svc: dict[str, Any]) -> None:
    _mode_none(svc)  # else the quiesce set's own rule refuses it first
    svc["workloads"][1].pop("quiesce")


def _selector_only_without_daemonset(svc: dict[str, Any]) -> None:
    svc["data_plane"].pop("workloads")
    svc["workloads"].pop(1)


def _renamed(name: str) -> Callable[[dict[str, Any]], None]:
    def change(svc: dict[str, Any]) -> None:
        _mode_none(svc)
        svc["name"] = name

    return change


def _release(doc: dict[str, Any]) -> None:
    doc["release"] = {"from": "2026.1", "to": "2026.2"}


# change -> (the path refused, words of the message, words of the fix)
REFUSED: dict[str, tuple[Change, str, str, str]] = {
    "no DaemonSet named": (dp(workloads=..., selector=...), f"{AT}.workloads", "names no DaemonSet", "selector:"),
    "an empty selector and no workloads": (
        dp(workloads=[], selector="  "),
        f"{AT}.workloads",
        "names no",
        "workloads:",
    ),
    "a workload the service lacks": (
        dp(workloads=["nova-compute"]),
        f"{AT}.workloads[0]",
        "nova-compute is not a workload of nova",
        "nova-compute-default",
    ),
    "a Deployment": (
        dp(workloads=["nova-compute-default", "nova-conductor"]),
        f"{AT}.workloads[1]",
        "is a Deployment of nova, not a DaemonSet",
        "quiesce: false",
    ),
    "a DaemonSet twice": (
        dp(workloads=["nova-compute-default"] * 2),
        f"{AT}.workloads",
        "listed twice",
        "once",
    ),
    "a DaemonSet without quiesce: false": (
        nova(_quiesce_unset),
        "services[0].workloads[1].quiesce",
        "in the data plane of nova and does not say quiesce: false",
        "set quiesce: false on DaemonSet nova-compute-default",
    ),
    "a selector and no DaemonSet in workloads": (
        nova(_selector_only_without_daemonset),
        f"{AT}.selector",
        "nova lists no DaemonSet in workloads",
        "kind: DaemonSet",
    ),
    "a selector with an empty requirement": (
        dp(selector="application=nova,,component=compute"),
        f"{AT}.selector",
        "empty requirement",
        "key in (a,b)",
    ),
    "a selector's open parenthesis": (dp(selector="component in (compute"), f"{AT}.selector", "'('", "key=value"),
    "a selector's bad key": (
        dp(selector="-app=nova"),
        f"{AT}.selector",
        "'-app' in '-app=nova' is not a label key",
        "e.g.",
    ),
    "a selector's bad value": (
        dp(selector="app=a=b"),
        f"{AT}.selector",
        "'a=b' in 'app=a=b' is not a label value",
        "e.g.",
    ),
    "a selector that requires no label": (
        dp(selector="application!=keystone,!legacy"),
        f"{AT}.selector",
        "requires no label",
        "application=nova,component=compute",
    ),
    "a selector's empty set": (dp(selector="component in ()"), f"{AT}.selector", "lists no value", "notin"),
    "keystone (no data plane in its recipe)": (
        nova(_renamed("keystone")),
        AT,
        "keystone has no recipe with a data plane",
        "services whose recipe has one: nova",
    ),
    "a service without a recipe": (nova(_renamed("ironic")), AT, "ironic has no recipe with a data plane", "nova"),
    "a release whose service version nova's recipe lacks": (
        _release,
        AT,
        "knows no service version of 2026.2",
        "SERVICE_VERSION",
    ),
    "batch_size 0": (dp(batch_size=0), f"{AT}.batch_size", "batch_size 0 is less than 1", "25%"),
    "batch_size 0%": (dp(batch_size="0%"), f"{AT}.batch_size", "'0%' is not from 1% to 100%", "1% to 100%"),
    "batch_size 150%": (dp(batch_size="150%"), f"{AT}.batch_size", "not from 1% to 100%", "25%"),
    "batch_size as a fraction": (dp(batch_size=0.25), f"{AT}.batch_size", "0.25 is a fraction", "write 25%"),
    "batch_size as an odd fraction": (
        dp(batch_size=0.125),
        f"{AT}.batch_size",
        "a fraction",
        "whole percentage, e.g. 13%",
    ),
    "batch_size 2.5": (dp(batch_size=2.5), f"{AT}.batch_size", "not a whole number", "count of nodes"),
    "batch_size true": (dp(batch_size=True), f"{AT}.batch_size", "a number of nodes, not True", "count"),
    "batch_size text": (dp(batch_size="half"), f"{AT}.batch_size", "neither a count nor a percentage", "25%"),
    "batch_size 12.5%": (dp(batch_size="12.5%"), f"{AT}.batch_size", "neither a count nor a percentage", "whole"),
    "batch_size null": (dp(batch_size=None), f"{AT}.batch_size", "not None", "count"),
    "max_failed -1": (dp(max_failed=-1), f"{AT}.max_failed", "less than 0", "0 or more"),
    "max_failed 101%": (dp(max_failed="101%"), f"{AT}.max_failed", "not from 0% to 100%", "0% to 100%"),
    "max_failed as a fraction": (dp(max_failed=0.1), f"{AT}.max_failed", "0.1 is a fraction", "write 10%"),
    "canary -1": (dp(canary=-1), f"{AT}.canary", "canary -1 is negative", "0 or more"),
    "canary true": (dp(canary=True), f"{AT}.canary", "number of nodes, not True", "canary as a whole number"),
    "canary as a percentage": (dp(canary="10%"), f"{AT}.canary", "is a percentage", "whole number of nodes"),
    "max_per_zone 1.5": (dp(max_per_zone=1.5), f"{AT}.max_per_zone", "not a whole number", "0 or more"),
    "order zones": (dp(order="zones"), f"{AT}.order", "'zones' is not zone, name or label:<key>", "label:rack"),
    "order label without a key": (dp(order="label:"), f"{AT}.order", "'' is not a Kubernetes label key", "label:"),
    "order label with a bad key": (dp(order="label:my rack"), f"{AT}.order", "'my rack'", "label:rack"),
    "drain none under a libvirt change": (
        dp(drain="none"),
        f"{AT}.drain",
        "libvirt/ovs/reboot stops the servers under it",
        "set drain: live or cold",
    ),
    "drain left out under a reboot": (
        dp(drain=..., disruptive=["reboot", "ovs"]),
        f"{AT}.drain",
        "drain: none, but the change is disruptive (reboot, ovs)",
        "set drain: live or cold",
    ),
    "a disruption twice": (dp(disruptive=["libvirt", "libvirt"]), f"{AT}.disruptive", "listed twice", "once"),
    "an unknown disruption": (dp(disruptive=["kernel"]), f"{AT}.disruptive[0]", "'libvirt'", "use one of"),
    "node_timeout in words": (dp(node_timeout="15 minutes"), f"{AT}.node_timeout", "not a duration", ""),
    "node_timeout 0s": (dp(node_timeout="0s"), f"{AT}.node_timeout", "must be positive", ""),
    "an unknown field": (dp(batch="2"), f"{AT}.batch", "unknown field", "plan schema"),
}


def test_the_plan_with_every_data_plane_field_loads() -> None:
    plan = load(copy.deepcopy(DOC))
    assert isinstance(plan, UpgradePlan), str(plan)
    rules = plan.services[0].data_plane
    assert rules is not None
    assert rules.node_timeout == 900 and rules.batch_size == "25%" and rules.drain == "live"
    assert rules.disruptive == ["libvirt"] and rules.approve and rules.max_per_zone == 2


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_data_plane_rule_that_cannot_work_is_refused_at_its_field_with_a_fix(case: str) -> None:
    change, path, message, fix = REFUSED[case]
    result = load(changed(change))
    assert isinstance(result, PlanError), f"{case}: loaded"
    problem = next((p for p in result.problems if p.path == path), None)
    assert problem is not None, f"{case}: refused elsewhere:\n{result}"
    assert message in problem.message, str(result)
    assert fix in problem.fix and problem.fix not in ("correct the value", ""), str(result)
    assert problem.line and 1 <= problem.line <= len(json.dumps(changed(change), indent=1).splitlines())


ACCEPTED: dict[str, tuple[Change, str, object]] = {
    "batch_size as a quoted count": (dp(batch_size="3"), "batch_size", 3),
    "batch_size with a space before %": (dp(batch_size=" 25 %"), "batch_size", "25%"),
    "batch_size 100%": (dp(batch_size="100%"), "batch_size", "100%"),
    "batch_size 2.0": (dp(batch_size=2.0), "batch_size", 2),
    "max_failed 0%": (dp(max_failed="0%"), "max_failed", "0%"),
    "max_failed 100%": (dp(max_failed="100%"), "max_failed", "100%"),
    "canary 0 (none)": (dp(canary=0), "canary", 0),
    "order by a prefixed label": (
        dp(order="label:topology.kubernetes.io/zone"),
        "order",
        "label:topology.kubernetes.io/zone",
    ),
    "order by name": (dp(order="name"), "order", "name"),
    "a set-based selector": (
        dp(selector="application in (nova), component notin (api), !legacy"),
        "selector",
        "application in (nova), component notin (api), !legacy",
    ),
    "a selector only": (dp(workloads=...), "workloads", []),
    "node_timeout 1h30m": (dp(node_timeout="1h30m"), "node_timeout", 5400),
    "cold drain": (dp(drain="cold"), "drain", "cold"),
    "drain none for a nova-compute image only": (dp(drain="none", disruptive=[]), "drain", "none"),
    "max_per_zone above batch_size": (dp(max_per_zone=10, batch_size=1), "max_per_zone", 10),
}


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_rules_an_operator_may_write_load(case: str) -> None:
    change, field, value = ACCEPTED[case]
    result = load(changed(change))
    assert isinstance(result, UpgradePlan), f"{case}: refused:\n{result}"
    rules = result.services[0].data_plane
    assert rules is not None and getattr(rules, field) == value


def test_a_data_plane_changes_nothing_of_a_plan_without_one() -> None:
    doc = changed(nova(lambda svc: svc.pop("data_plane")))
    plan = load(doc)
    assert isinstance(plan, UpgradePlan) and plan.services[0].data_plane is None


@pytest.mark.parametrize(
    ("selector", "problem"),
    [
        ("application=nova,component=compute", None),
        ("application==nova", None),
        ("example.com/role=compute", None),
        ("component", None),
        ("component in (compute, compute-ironic)", None),
        ("a=", None),  # an empty value is a value
        ("a in ((b))", "nested parentheses"),
        ("a in (b))", "')' without"),
        ("a,", "empty requirement"),
        ("A_/b=c", "not a label key"),
        ("a=" + "v" * 64, "not a label value"),
        ("!a", "requires no label"),
        ("a notin (b)", "requires no label"),
    ],
)
def test_label_selectors(selector: str, problem: str | None) -> None:
    found = selector_problem(selector)
    assert (found is None) if problem is None else (found is not None and problem in found), found


# --- batches -------------------------------------------------------------------------------------
def rules(**fields: Any) -> DataPlane:
    return DataPlane.model_validate({"workloads": ["nova-compute"], **fields})


def node(name: str, zone: str = "az1", **labels: str) -> tuple[str, str, dict[str, str]]:
    return (name, zone, labels)


FOUR = [node("cmp-4", "az2"), node("cmp-1", "az1"), node("cmp-3", "az2"), node("cmp-2", "az1")]


def test_zone_order_upgrades_a_zone_at_a_time_canary_first() -> None:
    assert plan_batches(rules(batch_size=2), FOUR) == [["cmp-1"], ["cmp-2"], ["cmp-3", "cmp-4"]]
    assert plan_batches(rules(batch_size=4, canary=0), FOUR) == [["cmp-1", "cmp-2"], ["cmp-3", "cmp-4"]]


def test_a_canary_larger_than_its_zone_stays_in_it() -> None:
    assert plan_batches(rules(canary=3, batch_size=2), FOUR) == [["cmp-1", "cmp-2"], ["cmp-3", "cmp-4"]]


def test_name_order_fills_batches_across_zones_within_the_zone_limit() -> None:
    got = plan_batches(rules(order="name", batch_size=2, max_per_zone=1), FOUR)
    assert got == [["cmp-1"], ["cmp-2", "cmp-3"], ["cmp-4"]]
    got = plan_batches(rules(order="name", batch_size=3, canary=0), FOUR)
    assert got == [["cmp-1", "cmp-2", "cmp-3"], ["cmp-4"]]


def test_the_zone_limit_caps_the_canary_and_a_zone_batch() -> None:
    nodes = [node(f"cmp-{i}", "az1") for i in range(1, 6)]
    got = plan_batches(rules(canary=2, batch_size=4, max_per_zone=1), nodes)
    assert got == [["cmp-1"], ["cmp-2"], ["cmp-3"], ["cmp-4"], ["cmp-5"]]


def test_names_sort_naturally() -> None:
    nodes = [node(f"compute-{i}") for i in (10, 2, 1, 11)]
    assert plan_batches(rules(canary=0, order="name"), nodes) == [
        ["compute-1"],
        ["compute-2"],
        ["compute-10"],
        ["compute-11"],
    ]


def test_label_order_groups_by_value_unlabelled_last() -> None:
    nodes = [
        node("a", rack="r10"),
        node("b", rack="r2"),
        node("c"),
        node("d", rack="r2"),
        node("e", rack="r10"),
    ]
    got = plan_batches(rules(order="label:rack", canary=1, batch_size=3), nodes)
    assert got == [["b"], ["d"], ["a", "e"], ["c"]]


def test_a_percentage_is_of_all_nodes_rounded_up() -> None:
    nodes = [node(f"cmp-{i}", "az1") for i in range(1, 11)]
    got = plan_batches(rules(batch_size="25%"), nodes)
    assert [len(b) for b in got] == [1, 3, 3, 3]
    assert count_of("25%", 10) == 3 and count_of("1%", 10) == 1 and count_of("100%", 3) == 3
    assert count_of("50%", 0) == 0 and count_of(4, 10) == 4


def test_no_nodes_no_batches_and_a_node_given_twice_counts_once() -> None:
    assert plan_batches(rules(), []) == []
    assert plan_batches(rules(canary=0, batch_size=5), [node("a"), node("a"), node("b")]) == [["a", "b"]]


@pytest.mark.parametrize(
    ("max_failed", "total", "tolerated"),
    [(0, 4, 0), (1, 4, 1), ("0%", 4, 0), ("10%", 4, 0), ("25%", 4, 1), ("30%", 10, 3), ("100%", 4, 4), (5, 2, 5)],
)
def test_failures_pass_the_threshold_one_past_it(max_failed: int | str, total: int, tolerated: int) -> None:
    r = rules(max_failed=max_failed)
    assert not too_many_failed(r, tolerated, total)
    assert too_many_failed(r, tolerated + 1, total)


def test_a_failed_canary_stops_the_upgrade_whatever_max_failed_says() -> None:
    assert too_many_failed(rules(canary=1, max_failed="50%"), 1, 10, canary_failed=1)
    assert not too_many_failed(rules(canary=1, max_failed="50%"), 1, 10, canary_failed=0)
    assert not too_many_failed(rules(canary=0, max_failed="50%"), 1, 10, canary_failed=1)  # no canary: a batch


ZONES = ["az1", "az2", "az3", ""]
ORDERS = ["zone", "name", "label:rack"]


@st.composite
def node_sets(draw: st.DrawFn) -> list[tuple[str, str, dict[str, str]]]:
    numbers = draw(st.lists(st.integers(0, 300), unique=True, max_size=40))
    out = []
    for n in numbers:
        zone = draw(st.sampled_from(ZONES))
        rack = draw(st.none() | st.sampled_from(["r1", "r2", "r10"]))
        out.append((f"cmp-{n}", zone, {"rack": rack} if rack else {}))
    return out


RULES = st.builds(
    lambda canary, size, per_zone, order: rules(canary=canary, batch_size=size, max_per_zone=per_zone, order=order),
    st.integers(0, 4),
    st.integers(1, 6) | st.integers(1, 100).map(lambda p: f"{p}%"),
    st.integers(0, 3),
    st.sampled_from(ORDERS),
)


def group_of(r: DataPlane, zone: str, labels: dict[str, str]) -> object:
    if r.order == "zone":
        return zone
    if r.order == "label:rack":
        return labels.get("rack", "<none>")
    return None


@settings(derandomize=True, max_examples=200, deadline=None, database=None)
@given(RULES, node_sets(), st.randoms(use_true_random=False))
def test_batch_properties(r: DataPlane, nodes: list[tuple[str, str, dict[str, str]]], rnd: Any) -> None:
    batches = plan_batches(r, nodes)
    by_name = {n[0]: n for n in nodes}
    flat = [name for b in batches for name in b]
    # every node exactly once, no empty batch
    assert sorted(flat) == sorted(by_name) and len(flat) == len(set(flat))
    assert all(batches)
    # the canary first: the first node of the order, alone up to its size
    if nodes:
        assert flat[0] == min(nodes, key=lambda n: order_key(r, *n))[0]
    size = count_of(r.batch_size, len(nodes))
    limits = [r.canary if r.canary and i == 0 else size for i in range(len(batches))]
    groups = []
    for i, (batch, limit) in enumerate(zip(batches, limits, strict=True)):
        assert len(batch) <= limit
        zones = [by_name[name][1] for name in batch]
        if r.max_per_zone:
            assert max(zones.count(z) for z in zones) <= r.max_per_zone
        batch_groups = {repr(group_of(r, by_name[n][1], by_name[n][2])) for n in batch}
        assert len(batch_groups) == 1 or r.order == "name", batch  # within one zone / label value
        groups.append(batch_groups.pop())
        # no batch smaller than it had to be: each later node was of another group or of a full zone
        if len(batch) < limit:
            for later in (n for b in batches[i + 1 :] for n in b):
                zone, labels = by_name[later][1], by_name[later][2]
                other_group = r.order != "name" and repr(group_of(r, zone, labels)) != groups[-1]
                full_zone = bool(r.max_per_zone) and zones.count(zone) >= r.max_per_zone
                assert other_group or full_zone, (batch, later)
    # a group's batches follow each other (zone by zone)
    if r.order != "name":
        seen: list[str] = []
        for g in groups:
            assert g == (seen[-1] if seen else g) or g not in seen, groups
            seen.append(g)
    # deterministic: the same batches for the nodes in any order
    shuffled = list(nodes)
    rnd.shuffle(shuffled)
    assert plan_batches(r, shuffled) == batches


# --- plan show / plan schema ---------------------------------------------------------------------
def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


def test_plan_show_prints_the_data_plane_rules() -> None:
    res = invoke("plan", "show", str(PLAN))
    assert res.exit_code == 0, res.output
    text = re.sub(r"\s+", " ", res.stdout.replace("│", " "))
    for words in (
        "DaemonSets: nova-compute-default and the DaemonSets selected by application=nova,component=compute",
        "canary of 1 node(s), then 25% of the nodes (rounded up) each, at most 2 of one zone, zone by zone",
        "stops after more than 1 node(s) failed",
        "drain: live migration (disruptive: libvirt)",
        "stackhop approve ID nova/batch#<n>",
        "node timeout: 15m",
        "rollout → dataplane →",
    ):
        assert words in text, words


def test_plan_show_of_a_plan_without_a_data_plane_has_no_such_table() -> None:
    res = invoke("plan", "show", str(ROOT / "examples" / "lab-keystone.yaml"))
    assert res.exit_code == 0 and "data plane" not in res.stdout


def test_plan_validate_names_file_line_field_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN.read_text().replace("drain: live", "drain: none"))
    res = invoke("plan", "validate", str(path))
    assert res.exit_code == 2
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "drain: none" in text)
    assert f"{path}:{line}: {AT}.drain: " in res.stderr and "(fix: set drain: live or cold)" in res.stderr


def test_plan_schema_documents_the_block() -> None:
    res = invoke("plan", "schema")
    assert res.exit_code == 0
    schema = json.loads(res.stdout)
    block = schema["$defs"]["DataPlane"]["properties"]
    assert set(block) == set(DataPlane.model_fields)
    assert all(p.get("description") for p in block.values()), block
    assert {b["type"] for b in block["batch_size"]["anyOf"]} == {"integer", "string"}
    assert re.fullmatch(block["order"]["pattern"], "label:topology.kubernetes.io/zone")
    assert not re.fullmatch(block["order"]["pattern"], "zones")
    assert "drain: none is refused" in block["disruptive"]["description"]
    assert "DataPlane" in json.dumps(schema["$defs"]["Service"]["properties"]["data_plane"])
