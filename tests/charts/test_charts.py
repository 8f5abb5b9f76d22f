"""The lab's charts, rendered without a cluster (helm lint / helm template), and the helm build's
cache check. openstack-helm's conventions: hook Jobs switched off by values, update strategies from
pod.lifecycle.upgrades, per-node DaemonSet overrides with generated names, config-hash annotations."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.helm import CHARTS, KEYSTONE_NEW, KEYSTONE_OLD, LAB_VALUES, keystone_chart, lint, template
from lab.k8s import build
from lab.k8s.versions import HELM_VERSION, helm_bin
from tests.conftest import ROOT

NOVA = CHARTS / "nova-2025.2.0"
CLOUD_VALUES = ROOT / "examples" / "lab-cloud-values"
SERVICES = ("keystone", "placement", "glance", "neutron", "nova")
RELEASE_OF = {"2025.2.0": "2025.2", "2026.1.0": "2026.1"}


def objects(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def named(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_the_helm_build_is_warm_and_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    assert build.helm_is_warm(), f"run `python -m lab.k8s.build` first ({helm_bin()})"
    monkeypatch.setenv("PATH", "/nonexistent")  # a rebuild would need go: it must not try
    assert build.build_helm() == helm_bin()


def test_a_helm_binary_put_in_place_is_adopted_by_its_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = helm_bin()
    monkeypatch.setenv("STACKHOP_LAB_CACHE", str(tmp_path))
    placed = helm_bin()
    placed.parent.mkdir(parents=True)
    os.symlink(real, placed)
    assert build.helm_is_warm()  # reports HELM_VERSION: stamped and trusted
    assert (placed.parent / ".stamp").read_text().strip() == build._helm_stamp()
    (placed.parent / ".stamp").write_text("pins of another go.sum\n")
    assert not build.helm_is_warm()  # the wrapper module changed: rebuild
    (placed.parent / ".stamp").unlink()
    placed.unlink()
    shutil.copy("/bin/true", placed)  # a binary that does not say v4.3.1
    assert not build.helm_is_warm()
    assert HELM_VERSION.startswith("v4.")


@pytest.mark.parametrize(
    "chart", ["helm-toolkit", *(f"{service}-{version}" for service in SERVICES for version in RELEASE_OF)]
)
def test_helm_lint(chart: str) -> None:
    res = lint(CHARTS / chart)
    assert res.returncode == 0, res.stdout + res.stderr


def test_keystone_hook_jobs_are_on_by_default_and_off_in_the_lab_values() -> None:
    default = objects(template(keystone_chart()))
    jobs = named(default, "Job")
    assert set(jobs) == {"keystone-db-sync", "keystone-ks-user"}
    for job in jobs.values():
        assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    lab = objects(template(keystone_chart(), "keystone", [LAB_VALUES]))
    assert named(lab, "Job") == {}
    (test_pod,) = named(lab, "Pod").values()
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert test_pod["metadata"]["labels"]["component"] == "test"


def test_keystone_api_deployment_is_what_the_lab_controller_follows() -> None:
    """Same names as lab/demo.py's bare Deployment: keystone-api, container keystone-api, app=keystone-api."""
    d = named(objects(template(keystone_chart(), "keystone", [LAB_VALUES])), "Deployment")["keystone-api"]
    spec = d["spec"]
    assert spec["replicas"] == 2
    assert spec["selector"]["matchLabels"] == {"app": "keystone-api"}
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    assert spec["progressDeadlineSeconds"] == 45
    labels = spec["template"]["metadata"]["labels"]
    assert labels["app"] == "keystone-api" and labels["lab.stackhop.io/served-by"] == "controller"
    (container,) = spec["template"]["spec"]["containers"]
    assert (container["name"], container["image"]) == ("keystone-api", "registry.lab/keystone:28.1.0")
    assert len(spec["template"]["spec"]["tolerations"]) == 2  # the operator's list
    assert named(objects(template(keystone_chart(), "keystone", [LAB_VALUES])), "Service")["keystone-api"]


def test_config_hash_rolls_pods_on_config_change_only() -> None:
    def hash_of(*sets: str) -> str:
        docs = objects(template(keystone_chart(), "keystone", [LAB_VALUES], *sets))
        d = named(docs, "Deployment")["keystone-api"]
        value: str = d["spec"]["template"]["metadata"]["annotations"]["configmap-etc-hash"]
        return value

    base = hash_of()
    assert len(base) == 64
    assert hash_of("images.tags.keystone_api=registry.lab/keystone:29.1.0") == base  # not config
    assert hash_of("conf.keystone.token.expiration=3600") != base


def test_the_newer_keystone_chart_changes_templates_and_config() -> None:
    old = objects(template(keystone_chart(KEYSTONE_OLD), "keystone", [LAB_VALUES]))
    new = objects(template(keystone_chart(KEYSTONE_NEW), "keystone", [LAB_VALUES]))
    assert "keystone-api" not in named(old, "PodDisruptionBudget")
    assert "keystone-api" in named(new, "PodDisruptionBudget")
    hashes = [
        named(docs, "Deployment")["keystone-api"]["spec"]["template"]["metadata"]["annotations"]["configmap-etc-hash"]
        for docs in (old, new)
    ]
    assert hashes[0] != hashes[1]  # [oslo_policy] enforce_new_defaults: the pods roll on the chart upgrade


def test_daemonset_update_strategy_from_values_ondelete_possible() -> None:
    (ds,) = named(objects(template(NOVA, "nova")), "DaemonSet").values()
    assert ds["metadata"]["name"] == "nova-compute-default"  # no overrides: helm-toolkit's name, no hash
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
    assert ds["spec"]["minReadySeconds"] == 0
    (ds,) = named(
        objects(template(NOVA, "nova", None, "pod.lifecycle.upgrades.daemonsets.pod_replacement_strategy=OnDelete")),
        "DaemonSet",
    ).values()
    assert ds["spec"]["updateStrategy"] == {"type": "OnDelete"}


def test_per_node_daemonset_overrides(tmp_path: Path) -> None:
    values = tmp_path / "overrides.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "conf": {
                    "overrides": {
                        "nova_compute": {
                            "hosts": [
                                {"name": "node-1", "conf": {"nova": {"DEFAULT": {"cpu_allocation_ratio": 4.0}}}},
                            ],
                            "labels": [
                                {
                                    "label": {"key": "compute_type", "values": ["gpu"]},
                                    "conf": {"nova": {"libvirt": {"virt_type": "qemu"}}},
                                },
                            ],
                        }
                    }
                }
            }
        )
    )
    docs = objects(template(NOVA, "nova", [values]))
    daemonsets = named(docs, "DaemonSet")
    secrets = named(docs, "Secret")
    prefixes = {"nova-compute-node-1-", "nova-compute-compute-type-", "nova-compute-default-"}
    assert len(daemonsets) == 3
    for prefix in prefixes:
        (name,) = [n for n in daemonsets if n.startswith(prefix)]
        assert len(name) == len(prefix) + 8  # 8 hex digits of the affinity's sha256, as helm-toolkit
        ds = daemonsets[name]
        assert ds["spec"]["template"]["spec"]["containers"][0]["name"] == name
        assert ds["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"] == name
        assert name in secrets  # each DaemonSet its own config
    by_prefix = {p: next(d for n, d in daemonsets.items() if n.startswith(p)) for p in prefixes}

    def terms(ds: dict[str, Any]) -> list[dict[str, Any]]:
        affinity = ds["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
        expressions: list[dict[str, Any]] = affinity["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"
        ][0]["matchExpressions"]
        return expressions

    assert terms(by_prefix["nova-compute-node-1-"]) == [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-1"]}
    ]
    assert {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["node-1"]} in terms(
        by_prefix["nova-compute-compute-type-"]
    )
    assert {e["operator"] for e in terms(by_prefix["nova-compute-default-"])} == {"NotIn"}
    hashes = {d["spec"]["template"]["metadata"]["annotations"]["configmap-etc-hash"] for d in daemonsets.values()}
    assert len(hashes) == 3  # the merged per-node configs differ


def test_the_worker_image_builds_the_helm_the_lab_pins() -> None:
    """deploy/Containerfile puts helm in the worker image: the version the lab runs the tests with."""
    text = (ROOT / "deploy" / "Containerfile").read_text()
    assert f"helm.sh/helm/v4/cmd/helm@{HELM_VERSION}" in text and f"version.version={HELM_VERSION}" in text


def cloud(service: str, version: str, *sets: str) -> list[dict[str, Any]]:
    """A service's chart rendered with the cloud lab's values (as `stackhop lab openstack up` installs it)."""
    return objects(template(CHARTS / f"{service}-{version}", service, [CLOUD_VALUES / f"{service}.yaml"], *sets))


def workloads(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {**named(docs, "Deployment"), **named(docs, "DaemonSet")}


WORKLOADS = {
    ("keystone", "2025.2.0"): {"keystone-api"},
    ("placement", "2025.2.0"): {"placement-api"},
    ("glance", "2025.2.0"): {"glance-api"},
    ("neutron", "2025.2.0"): {"neutron-server", "neutron-rpc-server", "neutron-periodic-workers"},
    ("nova", "2025.2.0"): {"nova-api-osapi", "nova-conductor", "nova-scheduler", "nova-compute-default"},
}


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("version", list(RELEASE_OF))
def test_cloud_pods_name_their_service_workload_and_release(service: str, version: str) -> None:
    """What the cloud controller reads from a pod: served-by, application + component = the workload
    (the Deployment's name; a DaemonSet's before its per-node suffix), the release in the image tag."""
    docs = cloud(service, version)
    found = workloads(docs)
    assert set(found) == WORKLOADS.get((service, version), WORKLOADS.get((service, "2025.2.0")))
    assert named(docs, "Job") == {}  # stackhop migrates, the lab bootstraps: no hook Jobs
    for name, workload in found.items():
        pod = workload["spec"]["template"]
        labels = pod["metadata"]["labels"]
        assert labels["lab.stackhop.io/served-by"] == "controller"
        assert labels["application"] == service
        assert name.startswith(f"{labels['application']}-{labels['component']}")
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()
        (container,) = pod["spec"]["containers"]
        tag = container["image"].rsplit(":", 1)[1]
        assert tag.startswith(RELEASE_OF[version] + "-"), container["image"]
        assert len(pod["metadata"]["annotations"]["configmap-etc-hash"]) == 64


@pytest.mark.parametrize("service", ["placement", "glance", "neutron", "nova"])
def test_cloud_deployments_roll_one_surge_pod_at_a_time(service: str) -> None:
    for d in named(cloud(service, "2025.2.0"), "Deployment").values():
        assert d["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
        assert d["spec"]["progressDeadlineSeconds"] == 120


def test_the_cloud_values_leave_the_release_to_the_chart_version() -> None:
    """No image tags in the operator's values: the chart upgrade 2025.2.0 -> 2026.1.0 changes every
    image to the 2026.1 one (`helm upgrade --reset-then-reuse-values` keeps the values, not the tags)."""
    for service in SERVICES:
        values = yaml.safe_load((CLOUD_VALUES / f"{service}.yaml").read_text())
        assert "images" not in values, service
    old = named(cloud("placement", "2025.2.0"), "Deployment")["placement-api"]["spec"]["template"]
    new = named(cloud("placement", "2026.1.0"), "Deployment")["placement-api"]["spec"]["template"]
    assert old["spec"]["containers"][0]["image"].endswith(":2025.2-ubuntu_noble")
    assert new["spec"]["containers"][0]["image"].endswith(":2026.1-ubuntu_noble")
    assert old["metadata"]["labels"] == new["metadata"]["labels"]  # the selector does not change


def test_neutron_has_the_same_three_workloads_in_both_chart_versions() -> None:
    """Both releases: the API as WSGI under the Deployment name neutron-server, neutron-rpc-server and
    neutron-periodic-workers beside it without a Service of their own (neutron 27.0.4 already has no
    neutron-server program: the 2025.2 -> 2026.1 hop changes no workload)."""
    old, new = cloud("neutron", "2025.2.0"), cloud("neutron", "2026.1.0")
    assert set(named(old, "Deployment")) == set(named(new, "Deployment"))
    assert set(named(old, "Service")) == set(named(new, "Service")) == {"neutron-server"}
    for docs in (old, new):
        for name in ("neutron-rpc-server", "neutron-periodic-workers"):
            assert "ports" not in named(docs, "Deployment")[name]["spec"]["template"]["spec"]["containers"][0]


def test_nova_compute_runs_on_the_compute_nodes_with_the_served_by_label() -> None:
    docs = cloud("nova", "2025.2.0")
    (ds,) = named(docs, "DaemonSet").values()
    spec = ds["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"openstack-compute-node": "enabled"}
    assert ds["spec"]["template"]["metadata"]["labels"]["component"] == "compute"
    assert set(named(docs, "Service")) == {"nova-api"}
    osapi = named(docs, "Deployment")["nova-api-osapi"]["spec"]["template"]["spec"]["containers"][0]
    assert osapi["ports"] == [{"name": "api", "containerPort": 8774}]


@pytest.mark.parametrize("version", list(RELEASE_OF))
def test_nova_pod_annotations_reach_every_pod_template(version: str) -> None:
    """The unpin restart under Helm (examples/lab-cloud.yaml: helm.restart_value pod.annotations.restart):
    a new value of pod.annotations.restart changes every nova pod template, the DaemonSet's too, and
    nothing else; unset, the templates carry only the config hash."""
    plain = workloads(cloud("nova", version))
    restarted = workloads(cloud("nova", version, "pod.annotations.restart=run-1/unpin"))
    assert set(plain) == set(restarted) == WORKLOADS[("nova", "2025.2.0")]
    for name, workload in restarted.items():
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations == {**plain[name]["spec"]["template"]["metadata"]["annotations"], "restart": "run-1/unpin"}
        assert set(plain[name]["spec"]["template"]["metadata"]["annotations"]) == {"configmap-etc-hash"}
        workload["spec"]["template"]["metadata"]["annotations"].pop("restart")
        assert workload == plain[name]
