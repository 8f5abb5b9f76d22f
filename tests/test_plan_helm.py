"""The plan's `helm:` block: what `plan validate` refuses, naming the field and the fix, and how
chart paths and local repositories are read (relative to the plan file, version checked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from model.loading import PlanError, parse_plan

CHARTS = Path(__file__).resolve().parent / "k8s" / "charts"
IMAGE = "registry.lab/tiny:2"


def plan(helm: dict[str, Any], **svc: Any) -> str:
    service = {
        "name": "keystone",
        "database": {"name": "keystone"},
        "migration": {"mode": "expand-contract"},
        "workloads": [{"kind": "Deployment", "name": "tiny-api", "container": "api", "image": IMAGE}],
        "helm": helm,
        **svc,
    }
    return yaml.safe_dump(
        {
            "apiVersion": "stackhop/v1alpha1",
            "kind": "UpgradePlan",
            "metadata": {"name": "p"},
            "cloud": {"name": "lab", "kubernetes": {"context": "lab"}, "openstack": {"cloud": "lab"}},
            "release": {"from": "2025.2", "to": "2026.1"},
            "services": [service],
        }
    )


GOOD = {
    "release": "tiny",
    "chart": "tiny",
    "repo": "./charts",
    "version": "0.2.0",
    "image_values": {"images.tags.api": IMAGE},
    "replica_values": {"tiny-api": "pod.replicas.api"},
}


def problems(helm: dict[str, Any]) -> str:
    with pytest.raises(PlanError) as info:
        parse_plan(plan(helm), "plan.yaml", base=CHARTS.parent)
    return str(info.value)


def test_a_local_repository_is_read_relative_to_the_plan_file() -> None:
    got = parse_plan(plan(GOOD), "plan.yaml", base=CHARTS.parent).services[0].helm
    assert got is not None and got.repo == str(CHARTS) and got.local_repo


def test_a_chart_path_becomes_absolute_and_must_hold_the_version() -> None:
    ok = {**GOOD, "repo": None, "chart": "./charts/tiny-0.2.0"}
    got = parse_plan(plan(ok), "plan.yaml", base=CHARTS.parent).services[0].helm
    assert got is not None and got.chart == str(CHARTS / "tiny-0.2.0")
    assert "is version 0.2.0, not 0.1.0 (fix: set version: 0.2.0" in problems({**ok, "version": "0.1.0"})


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"version": "9.9.9"}, "services[0].helm.repo: no chart at"),
        ({"repo": "./nowhere"}, "services[0].helm.repo: no directory"),
        (
            {"image_values": {"images.tags.api": "registry.lab/tiny:1"}},
            "no helm.image_values entry sets registry.lab/tiny:2",
        ),
        ({"replica_values": {}}, "tiny-api may be quiesced (scaled to 0) but helm.replica_values has no value path"),
        ({"replica_values": {"tiny-api": "pod.replicas.api", "other": "x"}}, "names other, which is not a workload"),
        ({"image_values": {"images tags": IMAGE}}, "services[0].helm.image_values"),
    ],
)
def test_what_plan_validate_refuses(change: dict[str, Any], says: str) -> None:
    assert says in problems({**GOOD, **change})
