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
        line.split("│")[2].strip(): line for line in res.stdout.splitlines() if line.count("│") >= 7 and "/" in line
    }
    assert (
        "registry.lab/keystone:28.1.0" in rows["Deployment/keystone-api (app)"]
        and "will change" in rows["Deployment/keystone-api (app)"]
    )
    assert "already at target" in rows["Deployment/glance-api (app)"]
    assert "MISSING" in rows["Deployment/glance-registry (app)"]
    owners = {
        rows[f"Deployment/{n} (app)"].split("│")[-2].strip() for n in ("keystone-api", "glance-api", "glance-registry")
    }
    assert owners == {"—"}  # the owner column: nothing owns them
    assert "1 workload(s) missing" in res.stderr


def test_show_live_all_present_exits_0(offline_cli: Cli, kube_target: KubeTarget, tmp_path: Path) -> None:
    create(kube_target, workload("Deployment", "keystone-api", "registry.lab/keystone:28.1.0"))
    plan = write(
        tmp_path, kube_target, [{"name": "keystone", "workloads": [wl("keystone-api", "registry.lab/keystone:29.1.0")]}]
    )
    res = offline_cli.run("plan", "show", "--live", str(plan))
    assert res.exit_code == 0, res.output
    assert "registry.lab/keystone:28.1.0" in res.stdout and "registry.lab/keystone:29.1.0" in res.stdout


def helm_owned(name: str, image: str, release: str, namespace: str) -> dict[str, Any]:
    obj = workload("Deployment", name, image, replicas=0)
    obj["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": release}
    obj["metadata"]["annotations"] = {"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": namespace}
    return obj


def test_show_live_names_owners_and_refuses_what_the_plan_may_not_change(
    offline_cli: Cli, kube_target: KubeTarget, tmp_path: Path
) -> None:
    """keystone's Deployment belongs to Helm release keystone: a plain-objects service is refused
    (naming the release and the fix), a `helm:` service naming the release is not; glance's release
    is not the one its service names."""
    ns = kube_target.namespace
    create(kube_target, helm_owned("keystone-api", "registry.lab/keystone:28.1.0", "keystone", ns))
    create(kube_target, helm_owned("glance-api", "registry.lab/glance:30.0.0", "glance", ns))
    create(kube_target, workload("Deployment", "placement-api", "registry.lab/placement:12.0.0", replicas=0))

    def helm(release: str, path: str, image: str) -> dict[str, Any]:
        return {"release": release, "chart": "openstack-helm/x", "version": "1.0.0", "image_values": {path: image}}

    keystone: dict[str, Any] = {"name": "keystone", "workloads": [wl("keystone-api", "registry.lab/keystone:29.1.0")]}
    glance: dict[str, Any] = {
        "name": "glance",
        "workloads": [wl("glance-api", "registry.lab/glance:31.0.0")],
        "helm": helm("glance-2", "images.tags.glance_api", "registry.lab/glance:31.0.0"),
    }
    placement = {"name": "placement", "workloads": [wl("placement-api", "registry.lab/placement:13.0.0")]}

    def rows(res: Any) -> dict[str, str]:
        return {
            line.split("│")[2].strip(): line for line in res.stdout.splitlines() if line.count("│") >= 7 and "/" in line
        }

    res = offline_cli.run("plan", "show", "--live", str(write(tmp_path, kube_target, [keystone, glance, placement])))
    assert res.exit_code == 2, res.output
    got = rows(res)
    assert "Helm release keystone" in got["Deployment/keystone-api (app)"]
    assert "Helm release glance" in got["Deployment/glance-api (app)"]
    assert got["Deployment/placement-api (app)"].split("│")[-2].strip() == "—"
    out = " ".join(res.stdout.split())
    assert "REFUSED Deployment/keystone-api is owned by Helm release keystone" in out
    assert "helm: {release: keystone" in out  # the fix
    assert "REFUSED Deployment/glance-api belongs to Helm release glance" in out
    assert "placement-api is owned" not in out and "REFUSED Deployment/placement-api" not in out
    assert "2 workload(s) owned" in res.stderr

    keystone["helm"] = helm("keystone", "images.tags.keystone_api", "registry.lab/keystone:29.1.0")
    glance["helm"] = helm("glance", "images.tags.glance_api", "registry.lab/glance:31.0.0")
    res = offline_cli.run("plan", "show", "--live", str(write(tmp_path, kube_target, [keystone, glance, placement])))
    # the owners are accepted now; these objects only carry Helm's markers, no release stores them
    assert res.exit_code == 2 and "owned" not in res.stderr and "2 Helm release(s) not found" in res.stderr, res.output
    assert "REFUSED" not in res.stdout and "Helm release keystone" in rows(res)["Deployment/keystone-api (app)"]
