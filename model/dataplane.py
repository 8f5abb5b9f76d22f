"""The data plane of a service: the per-node workloads (nova-compute; libvirt and the OVS/OVN agents
in a full deployment) that run under the tenants' servers, upgraded node batch by node batch.

A service's ``data_plane`` block names its per-node DaemonSets (by name, or by a label selector so
that helm-toolkit's per-node override DaemonSets are included) and the rules of its batches:

* ``canary``: the first batch, alone (default one node); ``batch_size`` the later ones (a count or a
  percentage of the data plane's nodes), at most ``max_per_zone`` nodes of one availability zone in
  one batch, in ``order`` (by zone, by a node label, by name);
* ``max_failed``: the failed nodes the upgrade tolerates (a count, or a percentage of the data
  plane's nodes rounded down: ``10%`` of 4 nodes tolerates none); one more and it starts no batch.
  A failed canary node stops it whatever ``max_failed`` says (:func:`too_many_failed`);
* ``drain``: what happens to a node's servers before its pod is replaced: ``live`` or ``cold``
  migration to hosts outside the batch, or ``none`` (a restart of the nova-compute container alone
  does not stop the servers under it). A change the plan marks ``disruptive`` (libvirt/qemu, OVS/OVN,
  a host reboot) can stop them: ``drain: none`` is refused for it;
* ``approve``: whether each batch after the first waits for ``stackhop approve ID <service>/batch#<n>``.

How :func:`plan_batches` cuts the nodes into batches (deterministic: the same nodes, in any order,
give the same batches):

* ``order: zone`` upgrades one availability zone after the other (zones by name), and **a batch
  never holds nodes of two zones**: a zone is the failure domain the cloud was built around, so a
  bad release reaches one zone at a time and the others stay whole; and servers started in a zone
  can only move within it, so a batch drains into the rest of its own zone. The last batch of a
  zone may be smaller than ``batch_size``; it is not topped up from the next zone.
* ``order: label:<key>`` does the same with the nodes' value of that Kubernetes node label (a rack,
  an upgrade wave): groups by value, a batch within one group, nodes without the label last.
* ``order: name`` takes the nodes by name and fills each batch across zones.
* Names, zones and label values sort naturally (compute-2 before compute-10).
* The canary is the first batch and follows the same rules (``canary: 3`` in a first zone of two
  nodes is a canary of two). ``batch_size`` as a percentage is of all the data plane's nodes,
  rounded up, at least one. ``max_per_zone`` caps the nodes of one zone in every batch, the canary
  included (with ``order: zone`` it caps the batch); a node it keeps out goes into a later batch.

Pure and without I/O: the plan's validation, the workflow and the tests use the same rules.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from model.plan_base import AT, FIX, DurationField, Strict, parse_duration

Drain = Literal["live", "cold", "none"]
Disruption = Literal["libvirt", "qemu", "ovs", "ovn", "reboot"]
PERCENT_RE = r"^(100|[1-9][0-9]?)%$"  # a batch: 1% to 100%
FAILED_PERCENT_RE = r"^(100|[1-9]?[0-9])%$"  # failures tolerated: 0% to 100%

# Kubernetes label keys and values (apimachinery's validation): [prefix/]name, the prefix a DNS
# subdomain, the name and a value at most 63 alphanumerics, '-', '_' and '.', alphanumeric at each end.
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_DNS_PREFIX = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
LABEL_KEY_RE = re.compile(rf"({_DNS_PREFIX}/)?{_LABEL_NAME}")
LABEL_VALUE_RE = re.compile(rf"({_LABEL_NAME})?")
ORDER_RE = rf"^(zone|name|label:({_DNS_PREFIX}/)?{_LABEL_NAME})$"
SELECTOR_SYNTAX = "key=value, key!=value, key in (a,b), key notin (a,b), key or !key, joined by commas"

CountOrPercent = Annotated[int, Field(ge=1)] | Annotated[str, Field(pattern=PERCENT_RE)]
FailedCountOrPercent = Annotated[int, Field(ge=0)] | Annotated[str, Field(pattern=FAILED_PERCENT_RE)]


def _refuse(kind: str, message: str, fix: str, at: str = "", **values: object) -> PydanticCustomError:
    """A refusal with its fix (model.loading reports both); ``at``: the field below the model that
    raises it (for a field's own validator, none: the error is already at that field)."""
    ctx: dict[str, object] = {**{k: repr(v) for k, v in values.items()}, FIX: fix}
    if at:
        ctx[AT] = at
    return PydanticCustomError(kind, message, ctx)


def label_key_ok(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    return bool(LABEL_KEY_RE.fullmatch(key)) and len(prefix) <= 253 and len(name) <= 63


def selector_problem(selector: str) -> str | None:
    """What is wrong with a Kubernetes label selector (None: nothing). A selector must also require a
    label (``k=v``, ``k in (...)`` or ``k``): one of only ``!=``, ``notin`` and ``!k`` matches every
    other DaemonSet of the namespace."""
    parts: list[str] = []
    depth, start = 0, 0
    for i, c in enumerate(selector):
        if c == "(":
            depth += 1
            if depth > 1:
                return "nested parentheses"
        elif c == ")":
            depth -= 1
            if depth < 0:
                return "a ')' without its '('"
        elif c == "," and depth == 0:
            parts.append(selector[start:i])
            start = i + 1
    if depth:
        return "a '(' without its ')'"
    parts.append(selector[start:])
    positive = False
    for raw in parts:
        req = raw.strip()
        if not req:
            return "an empty requirement (two commas in a row, or one at an end)"
        values: list[str] = []
        if m := re.fullmatch(r"(\S+?)\s+(in|notin)\s*\((.*)\)", req):
            key, op = m.group(1), m.group(2)
            values = [v.strip() for v in m.group(3).split(",")]
            if not any(values):
                return f"{req!r} lists no value"
        elif m := re.fullmatch(r"(.+?)\s*(==|!=|=)\s*(.*)", req):
            key, op, values = m.group(1), m.group(2), [m.group(3)]
        elif req.startswith("!"):
            key, op = req[1:].strip(), "!"
        else:
            key, op = req, "exists"
        if not label_key_ok(key):
            return f"{key!r} in {req!r} is not a label key"
        for v in values:
            if len(v) > 63 or not LABEL_VALUE_RE.fullmatch(v):
                return f"{v!r} in {req!r} is not a label value"
        positive = positive or op in ("in", "=", "==", "exists")
    if not positive:
        return "it requires no label (only !=, notin or !key): it would select every other DaemonSet too"
    return None


def _count_or_percent(value: object, least: int, what: str) -> int | str:
    """A count of nodes (at least ``least``) or a whole percentage, else a refusal that says which to
    write: a fraction (0.25) or a bool is how an operator gets a percentage or a count wrong."""
    low = f"{least}%"
    fix = f"write a count of nodes ({least} or more) or a whole percentage from {low} to 100%, e.g. 25%"
    if isinstance(value, bool):
        raise _refuse("dataplane_count", f"{what} is a number of nodes, not {{value}}", fix, value=value)
    if isinstance(value, float):
        if value.is_integer():
            value = int(value)
        elif 0 < value < 1:
            pct = value * 100
            whole = round(pct) if math.isclose(pct, round(pct)) else None
            raise _refuse(
                "dataplane_fraction",
                f"{what} {{value}} is a fraction: a percentage is written with %",
                f"write {whole}%" if whole else f"write a whole percentage, e.g. {math.ceil(pct)}%",
                value=value,
            )
        else:
            raise _refuse("dataplane_count", f"{what} {{value}} is not a whole number of nodes", fix, value=value)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+", text):
            value = int(text)
        elif m := re.fullmatch(r"(\d+)\s*%", text):
            pct = int(m.group(1))
            if not least <= pct <= 100:
                raise _refuse("dataplane_percent", f"{what} {{value}} is not from {low} to 100%", fix, value=value)
            return f"{pct}%"
        else:
            raise _refuse("dataplane_count", f"{what} {{value}} is neither a count nor a percentage", fix, value=value)
    if not isinstance(value, int):
        raise _refuse("dataplane_count", f"{what} is a count or a percentage, not {{value}}", fix, value=value)
    if value < least:
        raise _refuse("dataplane_count", f"{what} {{value}} is less than {least}", fix, value=value)
    return value


def _count(value: object, what: str) -> int:
    """A count of nodes, 0 or more (a bool, a fraction or a percentage refused with the fix)."""
    fix = f"write {what} as a whole number of nodes, 0 or more"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _refuse("dataplane_count", f"{what} is a number of nodes, not {{value}}", fix, value=value)
    if isinstance(value, str) and "%" in value:
        raise _refuse("dataplane_count", f"{what} {{value}} is a percentage", fix, value=value)
    if isinstance(value, float) and not value.is_integer():
        raise _refuse("dataplane_count", f"{what} {{value}} is not a whole number of nodes", fix, value=value)
    try:
        number = int(value)
    except (ValueError, OverflowError):
        raise _refuse("dataplane_count", f"{what} {{value}} is not a number of nodes", fix, value=value) from None
    if number < 0:
        raise _refuse("dataplane_count", f"{what} {{value}} is negative", fix, value=value)
    return number


class DataPlane(Strict):
    """How a service's per-node workloads are upgraded: batches of nodes, each drained first
    (model/dataplane.py says how the batches are cut)."""

    workloads: list[str] = Field(
        default_factory=list,
        description="The data plane's DaemonSets by name: each a DaemonSet of the service's `workloads` with "
        "quiesce: false. With or instead of `selector`.",
    )
    selector: str = Field(
        default="",
        description="A label selector of the data plane's DaemonSets, e.g. application=nova,component=compute: "
        "includes the per-node override DaemonSets whose names the chart derives (the service's `workloads` still "
        f"lists its DaemonSet: its image is the target). Syntax: {SELECTOR_SYNTAX}.",
    )
    canary: int = Field(
        default=1,
        ge=0,
        description="Nodes in the first batch, upgraded alone before any other (0: no canary); a failed canary "
        "node stops the upgrade whatever max_failed says.",
    )
    batch_size: CountOrPercent = Field(
        default=1,
        description="Nodes per later batch: a count (at least 1) or a percentage of all the data plane's nodes "
        "(25%: rounded up).",
    )
    max_per_zone: int = Field(
        default=0, ge=0, description="Nodes of one availability zone in a batch, the canary included (0: any)."
    )
    max_failed: FailedCountOrPercent = Field(
        default=0,
        description="Failed nodes tolerated: a count or a percentage of the data plane's nodes (rounded down); "
        "one more and no further batch starts. A failed node is fenced: its service stays disabled.",
    )
    order: str = Field(
        default="zone",
        pattern=ORDER_RE,
        description="zone (one availability zone after the other, a batch within one zone), label:<key> (the same "
        "by a node label's value, unlabelled nodes last) or name (batches across zones).",
    )
    drain: Drain = Field(
        default="none",
        description="What moves a node's servers away before its pod is replaced: live or cold migration to hosts "
        "outside the batch, or none (enough for a new nova-compute image only). Required (live or cold) when "
        "`disruptive` is set.",
    )
    disruptive: list[Disruption] = Field(
        default_factory=list,
        description="What the change replaces under the servers (libvirt, qemu, ovs, ovn, reboot): it can stop "
        "them, so drain: none is refused.",
    )
    approve: bool = Field(
        default=False,
        description="Each batch after the first waits for `stackhop approve ID <service>/batch#<n>`.",
    )
    node_timeout: DurationField = Field(
        default=900, description="Per node: disable, drain, replace and verify (e.g. 15m)."
    )

    @field_validator("node_timeout", mode="before")
    @classmethod
    def _duration(cls, v: object) -> int:
        try:
            return parse_duration(v)
        except ValueError as e:
            raise _refuse(
                "dataplane_duration", f"node_timeout: {e}", "write a duration, e.g. 900, 15m or 1h30m"
            ) from None

    @field_validator("canary", "max_per_zone", mode="before")
    @classmethod
    def _counts(cls, v: object, info: ValidationInfo) -> int:
        return _count(v, info.field_name or "a count")

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch_size(cls, v: object) -> int | str:
        return _count_or_percent(v, 1, "batch_size")

    @field_validator("max_failed", mode="before")
    @classmethod
    def _max_failed(cls, v: object) -> int | str:
        return _count_or_percent(v, 0, "max_failed")

    @field_validator("order", mode="before")
    @classmethod
    def _order(cls, v: object) -> object:
        if not isinstance(v, str):
            return v  # pydantic's own type error
        if v in ("zone", "name"):
            return v
        key = v.removeprefix("label:") if v.startswith("label:") else None
        if key is None or not label_key_ok(key):
            raise _refuse(
                "dataplane_order",
                "order {value} is not zone, name or label:<key>"
                if key is None
                else f"order {{value}}: {key!r} is not a Kubernetes label key",
                "write zone (zone by zone), name, or label:<key> with a node label's key, e.g. label:rack or "
                "label:topology.kubernetes.io/zone",
                value=v,
            )
        return v

    @field_validator("selector")
    @classmethod
    def _selector(cls, v: str) -> str:
        if not v.strip():
            return ""
        problem = selector_problem(v)
        if problem:
            raise _refuse(
                "dataplane_selector",
                f"selector {{value}} is not a label selector: {problem}",
                f"write {SELECTOR_SYNTAX}, e.g. application=nova,component=compute",
                value=v,
            )
        return v.strip()

    @field_validator("workloads")
    @classmethod
    def _workloads_once(cls, v: list[str]) -> list[str]:
        for j, name in enumerate(v):
            if name in v[:j]:
                raise _refuse(
                    "dataplane_workload_twice", "{value} is listed twice", "list each DaemonSet once", value=name
                )
        return v

    @field_validator("disruptive")
    @classmethod
    def _disruptive_once(cls, v: list[Disruption]) -> list[Disruption]:
        for j, what in enumerate(v):
            if what in v[:j]:
                raise _refuse("dataplane_disruptive_twice", "{value} is listed twice", "list each once", value=what)
        return v

    @model_validator(mode="after")
    def _rules(self) -> DataPlane:
        if not self.workloads and not self.selector:
            raise _refuse(
                "dataplane_unnamed",
                "the data plane names no DaemonSet: neither workloads nor selector",
                "name its DaemonSets (workloads: [nova-compute]) or select them by label (selector: "
                "application=nova,component=compute, which includes the per-node override DaemonSets)",
                at="workloads",
            )
        if self.drain == "none" and self.disruptive:
            raise _refuse(
                "dataplane_drain_none",
                f"drain: none, but the change is disruptive ({', '.join(self.disruptive)}): "
                "libvirt/ovs/reboot stops the servers under it",
                "set drain: live or cold",
                at="drain",
            )
        return self

    def describe(self, service: str = "<service>") -> list[str]:
        """The rules in words, one line each (``stackhop plan show``)."""
        daemonsets = ", ".join(self.workloads)
        if self.selector:
            daemonsets += (" and " if daemonsets else "") + f"the DaemonSets selected by {self.selector}"
        per_zone = f", at most {self.max_per_zone} of one zone" if self.max_per_zone else ""
        size = (
            f"{self.batch_size} of the nodes (rounded up)"
            if isinstance(self.batch_size, str)
            else f"{self.batch_size} node(s)"
        )
        order = {
            "zone": "zone by zone (a batch within one zone)",
            "name": "by node name (batches across zones)",
        }.get(self.order, f"by node label {self.order.removeprefix('label:')} (a batch within one value)")
        canary = f"canary of {self.canary} node(s), then " if self.canary else "no canary; "
        failed = (
            f"{self.max_failed} of the nodes (rounded down)"
            if isinstance(self.max_failed, str)
            else f"{self.max_failed} node(s)"
        )
        drain = {"live": "live migration", "cold": "cold migration", "none": "none: servers stay on the node"}
        lines = [
            f"DaemonSets: {daemonsets}",
            f"batches: {canary}{size} each{per_zone}, {order}",
            f"stops after more than {failed} failed",
            f"drain: {drain[self.drain]}" + (f" (disruptive: {', '.join(self.disruptive)})" if self.disruptive else ""),
            f"approve: each batch after the first waits for `stackhop approve ID {service}/batch#<n>`"
            if self.approve
            else "approve: no (batches follow each other)",
            f"node timeout: {_duration_text(self.node_timeout)}",
        ]
        return lines


def _duration_text(seconds: int) -> str:
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return "".join(f"{n}{unit}" for n, unit in ((h, "h"), (m, "m"), (s, "s")) if n) or "0s"


def count_of(value: int | str, total: int, up: bool = True) -> int:
    """A count, or a percentage of ``total``: rounded up and at least 1 of a non-empty set (a batch),
    or rounded down (``up=False``: the failures tolerated, ``10%`` of 4 nodes is none)."""
    if isinstance(value, int):
        return value
    pct = int(value.strip().rstrip("%"))
    if not up:
        return total * pct // 100
    return max(1, math.ceil(total * pct / 100)) if total else 0


def too_many_failed(rules: DataPlane, failed: int, total: int, *, canary_failed: int = 0) -> bool:
    """Whether ``failed`` nodes of ``total`` passed the plan's ``max_failed``: the upgrade stops.
    A percentage is of ``total`` rounded down, as Ansible's max_fail_percentage: more than 10% of 4
    nodes failed is one. A failed canary node (``canary_failed``, of the first batch when the plan has
    a canary) stops it whatever ``max_failed`` says: that is what a canary is for."""
    return (rules.canary > 0 and canary_failed > 0) or failed > count_of(rules.max_failed, total, up=False)


def _natural(text: str) -> tuple[tuple[int, str], ...]:
    """Sort key of a name in natural order: compute-2 before compute-10 (digits compare as numbers;
    the text breaks ties, so the order is total)."""
    return tuple((int(p), p) if i % 2 else (-1, p) for i, p in enumerate(re.split(r"(\d+)", text)))


def _group(rules: DataPlane, zone: str, labels: dict[str, str]) -> tuple[int, tuple[tuple[int, str], ...]] | None:
    """The group a batch stays within (its zone, its label's value; nodes without the label last);
    None for ``order: name``."""
    if rules.order == "zone":
        return (0, _natural(zone))
    if rules.order.startswith("label:"):
        value = labels.get(rules.order.removeprefix("label:"))
        return (0, _natural(value)) if value is not None else (1, ())
    return None


def order_key(
    rules: DataPlane, node: str, zone: str, labels: dict[str, str]
) -> tuple[tuple[int, tuple[tuple[int, str], ...]], tuple[tuple[int, str], ...], str]:
    """Where a node comes in the plan's order: its group, then its name (naturally, then exactly)."""
    return (_group(rules, zone, labels) or (0, ()), _natural(node), node)


def plan_batches(rules: DataPlane, nodes: Sequence[tuple[str, str, dict[str, str]]]) -> list[list[str]]:
    """The batches of ``nodes`` ((name, zone, labels) each; a name given twice counts once), in order:
    the canary first (if any), then batches of ``batch_size`` nodes; each batch within one group of
    the order (zone, label value) and with at most ``max_per_zone`` nodes of one zone. Every node is
    in exactly one batch; no batch is empty. The module's docstring has the rules in words."""
    unique: dict[str, tuple[str, str, dict[str, str]]] = {}
    for name, zone, labels in nodes:
        unique.setdefault(name, (name, zone, labels))
    remaining = sorted(unique.values(), key=lambda n: order_key(rules, *n))
    size = count_of(rules.batch_size, len(remaining))
    batches: list[list[str]] = []
    if rules.canary and remaining:
        batches.append(_take(rules, remaining, rules.canary))
    while remaining:
        batches.append(_take(rules, remaining, size))
    return batches


def _take(rules: DataPlane, remaining: list[tuple[str, str, dict[str, str]]], limit: int) -> list[str]:
    """The next batch, removed from ``remaining`` (sorted): up to ``limit`` nodes in order, of the
    first node's group only, skipping the nodes of a zone that has ``max_per_zone`` in it already.
    The first node always fits, so every call takes at least one."""
    group = _group(rules, remaining[0][1], remaining[0][2])
    batch: list[str] = []
    per_zone: dict[str, int] = {}
    kept: list[tuple[str, str, dict[str, str]]] = []
    for node in remaining:
        name, zone, labels = node
        full = len(batch) >= limit or (rules.max_per_zone and per_zone.get(zone, 0) >= rules.max_per_zone)
        if full or (group is not None and _group(rules, zone, labels) != group):
            kept.append(node)
            continue
        batch.append(name)
        per_zone[zone] = per_zone.get(zone, 0) + 1
    remaining[:] = kept
    return batch


__all__ = [
    "AT",
    "FIX",
    "DataPlane",
    "Disruption",
    "Drain",
    "count_of",
    "order_key",
    "plan_batches",
    "selector_problem",
    "too_many_failed",
]
