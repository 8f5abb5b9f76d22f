"""The data plane of a service: the per-node workloads (nova-compute; libvirt and the OVS/OVN agents
in a full deployment) that run under the tenants' servers, upgraded node batch by node batch.

A service's ``data_plane`` block names its per-node DaemonSets (by name, or by a label selector so
that helm-toolkit's per-node override DaemonSets are included) and the rules of its batches:

* ``canary``: the first batch, alone (default one node); ``batch_size`` the later ones (a count or a
  percentage of the data plane's nodes), at most ``max_per_zone`` nodes of one availability zone in
  one batch, in ``order`` (by zone, by a node label, by name);
* ``max_failed``: the failed nodes the upgrade tolerates; one more and it stops starting batches;
* ``drain``: what happens to a node's servers before its pod is replaced: ``live`` or ``cold``
  migration to hosts outside the batch, or ``none`` (a restart of the nova-compute container alone
  does not stop the servers under it). A change the plan marks ``disruptive`` (libvirt/qemu, OVS/OVN,
  a host reboot) can stop them: ``drain: none`` is refused for it;
* ``approve``: whether each batch after the canary waits for ``stackhop approve <service>/batch#<n>``.

Pure and without I/O: the plan's validation, the workflow and the tests use the same rules.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from model.plan_base import AT, FIX, DurationField, Strict

Drain = Literal["live", "cold", "none"]
Disruption = Literal["libvirt", "qemu", "ovs", "ovn", "reboot"]
PERCENT_RE = r"^(100|[1-9][0-9]?)%$"


class DataPlane(Strict):
    """How a service's per-node workloads are upgraded: batches of nodes, each drained first."""

    workloads: list[str] = Field(
        default_factory=list, description="The data plane's DaemonSets by name (each also in `workloads`)."
    )
    selector: str = Field(
        default="",
        description="A label selector of the data plane's DaemonSets, e.g. application=nova,component=compute: "
        "includes the per-node override DaemonSets whose names the chart derives.",
    )
    canary: int = Field(default=1, ge=0, description="Nodes in the first batch, upgraded alone (0: no canary).")
    batch_size: int | str = Field(default=1, description="Nodes per later batch: a count or a percentage (25%).")
    max_per_zone: int = Field(default=0, ge=0, description="Nodes of one availability zone in a batch (0: any).")
    max_failed: int | str = Field(
        default=0, description="Failed nodes tolerated (a count or a percentage); one more stops the upgrade."
    )
    order: str = Field(default="zone", description="zone, name, or label:<key> (nodes sorted by that label).")
    drain: Drain = Field(default="none", description="live, cold or none: what moves a node's servers away first.")
    disruptive: list[Disruption] = Field(
        default_factory=list,
        description="What the change replaces under the servers (libvirt, qemu, ovs, ovn, reboot): drain required.",
    )
    approve: bool = Field(default=False, description="Each batch after the canary waits for `stackhop approve`.")
    node_timeout: DurationField = Field(default=900, description="Per node: drain, replace and verify.")


def count_of(value: int | str, total: int) -> int:
    """A count, or a percentage of ``total`` rounded up (at least 1 of a non-empty set)."""
    if isinstance(value, int):
        return value
    pct = int(value.rstrip("%"))
    return max(1, math.ceil(total * pct / 100)) if total else 0


def too_many_failed(rules: DataPlane, failed: int, total: int) -> bool:
    """Whether ``failed`` nodes of ``total`` passed the plan's ``max_failed``: the upgrade stops."""
    return failed > count_of(rules.max_failed, total)


def order_key(rules: DataPlane, node: str, zone: str, labels: dict[str, str]) -> tuple[str, str]:
    if rules.order == "zone":
        return (zone, node)
    if rules.order.startswith("label:"):
        return (labels.get(rules.order.removeprefix("label:"), ""), node)
    return ("", node)


def plan_batches(rules: DataPlane, nodes: Sequence[tuple[str, str, dict[str, str]]]) -> list[list[str]]:
    """The batches of ``nodes`` ((name, zone, labels) each), in order: the canary first, then batches
    of ``batch_size`` nodes with at most ``max_per_zone`` of one zone each."""
    ordered = sorted(nodes, key=lambda n: order_key(rules, *n))
    zone_of = {name: zone for name, zone, _ in ordered}
    names = [name for name, _, _ in ordered]
    batches: list[list[str]] = []
    if rules.canary and names:
        batches.append(names[: rules.canary])
        names = names[rules.canary :]
    size = max(1, count_of(rules.batch_size, len(nodes)))
    while names:
        batch: list[str] = []
        per_zone: dict[str, int] = {}
        for name in list(names):
            zone = zone_of[name]
            if rules.max_per_zone and per_zone.get(zone, 0) >= rules.max_per_zone:
                continue
            batch.append(name)
            per_zone[zone] = per_zone.get(zone, 0) + 1
            names.remove(name)
            if len(batch) == size:
                break
        batches.append(batch)
    return batches


__all__ = ["AT", "FIX", "DataPlane", "Disruption", "Drain", "count_of", "plan_batches", "too_many_failed"]
