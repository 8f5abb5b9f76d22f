"""`stackhop plan show PLAN --live` against the Kubernetes lab: current -> target image, flagged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from model.plan import KubeTarget
from tests.cli.conftest import Cli
from tests.k8s.helpers import create, workload

pytestmark = pytest.mark.k8s


def write(tmp_path: Path, target: KubeTarget, services: list[dict[str, Any]]) -> Path:
    doc = {
        "apiVersion": "stackhop/v1alpha1",
        "kind": "UpgradePlan",
        "metadata": {"name": "live"},
        "cloud": {
            "name": "lab",
            "openstack": {"cloud": "lab-admin"},
            "kubernetes": target.model_dump(exclude_none=True),
        },
        "release": {"from": "2025.2", "to": "2026.1"},
        "services": services,
    }
    path = tmp_path / "live.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def wl(name: str, image: str) -> dict[str, str]:
    return {"kind": "Deployment", "name": name, "container": "app", "image": image}


def test_show_live_flags_changes_targets_and_missing_workloads(
    offline_cli: Cli, kube_target: KubeTarget, tmp_path: Path
) -> None:
    create(kube_target, workload("Deployment", "keystone-api", "registry.lab/keystone:28.1.0"))
    create(kube_target, workload("Deployment", "glance-api", "registry.lab/glance:31.0.0"))
    plan = write(
        tmp_path,
        kube_target,
        [
            {"name": "keystone", "workloads": [wl("keystone-api", "registry.lab/keystone:29.1.0")]},
            {
                "name": "glance",
                "workloads": [
                    wl("glance-api", "registry.lab/glance:31.0.0"),
                    wl("glance-registry", "registry.lab/glance:31.0.0"),
                ],
            },
        ],
    )
    res = offline_cli.run("plan", "show", "--live", str(plan))
    assert res.exit_code == 2, res.output
    rows = {
        line.split("│")[2].strip(): line for line in res.stdout.splitlines() if line.count("│") >= 6 and "/" in line
    }
    assert (
        "registry.lab/keystone:28.1.0" in rows["Deployment/keystone-api (app)"]
        and "will change" in rows["Deployment/keystone-api (app)"]
    )
    assert "already at target" in rows["Deployment/glance-api (app)"]
    assert "MISSING" in rows["Deployment/glance-registry (app)"]
    assert "1 workload(s) missing" in res.stderr


def test_show_live_all_present_exits_0(offline_cli: Cli, kube_target: KubeTarget, tmp_path: Path) -> None:
    create(kube_target, workload("Deployment", "keystone-api", "registry.lab/keystone:28.1.0"))
    plan = write(
        tmp_path, kube_target, [{"name": "keystone", "workloads": [wl("keystone-api", "registry.lab/keystone:29.1.0")]}]
    )
    res = offline_cli.run("plan", "show", "--live", str(plan))
    assert res.exit_code == 0, res.output
    assert "registry.lab/keystone:28.1.0" in res.stdout and "registry.lab/keystone:29.1.0" in res.stdout
