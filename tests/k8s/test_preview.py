"""Plan preview from live state (`stackhop plan show PLAN --live`)."""

from __future__ import annotations

import pytest

from activities.preview import live_preview
from model.plan import KubeTarget, UpgradePlan
from tests.k8s.helpers import create, workload

pytestmark = pytest.mark.k8s


def plan_for(target: KubeTarget) -> UpgradePlan:
    def wl(name: str, image: str) -> dict[str, str]:
        return {"kind": "Deployment", "name": name, "container": "app", "image": image}

    return UpgradePlan.model_validate(
        {
            "apiVersion": "stackhop/v1alpha1",
            "kind": "UpgradePlan",
            "metadata": {"name": "preview"},
            "cloud": {"name": "lab", "openstack": {"cloud": "lab-admin"}, "kubernetes": target.model_dump()},
            "release": {"from": "2025.2", "to": "2026.1"},
            "services": [
                {"name": "keystone", "workloads": [wl("keystone-api", "registry.lab/keystone:29.1.0")]},
                {
                    "name": "glance",
                    "workloads": [
                        wl("glance-api", "registry.lab/glance:31.0.0"),
                        wl("glance-registry", "registry.lab/glance:31.0.0"),
                    ],
                },
            ],
        }
    )


def test_live_preview_rows(kube_target: KubeTarget) -> None:
    create(kube_target, workload("Deployment", "keystone-api", "registry.lab/keystone:28.1.0"))
    create(kube_target, workload("Deployment", "glance-api", "registry.lab/glance:31.0.0"))
    rows = live_preview(plan_for(kube_target))
    by_name = {r.name: r for r in rows}
    assert [r.service for r in rows] == ["keystone", "glance", "glance"]
    assert by_name["keystone-api"].state == "change"
    assert by_name["keystone-api"].current == "registry.lab/keystone:28.1.0"
    assert by_name["keystone-api"].target == "registry.lab/keystone:29.1.0"
    assert by_name["glance-api"].at_target
    assert by_name["glance-registry"].missing and by_name["glance-registry"].current is None
    assert by_name["keystone-api"].owner is not None and by_name["keystone-api"].owner.kind == "none"
    assert by_name["glance-registry"].owner is None and not any(r.refusal for r in rows)


def test_live_preview_bad_context_is_a_clear_error(kube_target: KubeTarget) -> None:
    from temporalio.exceptions import ApplicationError

    from model import errors

    bad = kube_target.model_copy(update={"context": "prod-typo"})
    with pytest.raises(ApplicationError) as ei:
        live_preview(plan_for(bad))
    assert ei.value.type == errors.PLAN_INVALID and "prod-typo" in ei.value.message
