"""Who owns a workload (model/ownership.py): the markers Helm, Argo CD, Flux and operators leave on
the objects they manage, and what each adapter may change."""

from __future__ import annotations

from typing import Any

import pytest

from model.ownership import Owner, how_to_upgrade, owner_of, refusal

NS = "openstack"
HELM_ANN = {"meta.helm.sh/release-name": "keystone", "meta.helm.sh/release-namespace": NS}
HELM_LABEL = {"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": "keystone"}
FLUX_HR = {"helm.toolkit.fluxcd.io/name": "keystone", "helm.toolkit.fluxcd.io/namespace": "flux-system"}
FLUX_KS = {"kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}
OSDPL = {
    "apiVersion": "lcm.mirantis.com/v1alpha1",
    "kind": "OpenStackDeployment",
    "name": "osh-dev",
    "uid": "5f0c",
    "controller": True,
}


def meta(
    labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    return {"name": "keystone-api", "namespace": NS, "labels": labels or {}, "annotations": annotations or {}, **extra}


CASES = {
    "plain": (meta({"app": "keystone-api"}), Owner()),
    "none at all": (None, Owner()),
    "helm release": (
        meta(HELM_LABEL, HELM_ANN),
        Owner(kind="helm", name="keystone", namespace=NS, via="annotation meta.helm.sh/release-name"),
    ),
    "helm release in another namespace": (
        meta(HELM_LABEL, {**HELM_ANN, "meta.helm.sh/release-namespace": "infra"}),
        Owner(kind="helm", name="keystone", namespace="infra", via="annotation meta.helm.sh/release-name"),
    ),
    "managed-by Helm only": (
        meta({"app.kubernetes.io/managed-by": "Helm"}),
        Owner(kind="helm", namespace=NS, via="label app.kubernetes.io/managed-by=Helm"),
    ),
    "argocd tracking annotation": (
        meta(annotations={"argocd.argoproj.io/tracking-id": "cloud-keystone:apps/Deployment:openstack/keystone-api"}),
        Owner(kind="argocd", name="cloud-keystone", via="annotation argocd.argoproj.io/tracking-id"),
    ),
    "argocd tracking over a chart's labels": (
        meta(HELM_LABEL, {"argocd.argoproj.io/tracking-id": "cloud:apps/Deployment:openstack/keystone-api"}),
        Owner(kind="argocd", name="cloud", via="annotation argocd.argoproj.io/tracking-id"),
    ),
    "argocd custom instance label": (
        meta({"argocd.argoproj.io/instance": "cloud-keystone"}),
        Owner(kind="argocd", name="cloud-keystone", via="label argocd.argoproj.io/instance"),
    ),
    "argocd default instance label": (
        meta({"app.kubernetes.io/instance": "cloud-keystone"}),
        Owner(kind="argocd", name="cloud-keystone", via="label app.kubernetes.io/instance"),
    ),
    # Argo CD renders charts with `helm template`: the chart's managed-by label, no release annotation
    "argocd-rendered chart (label tracking)": (
        meta(HELM_LABEL),
        Owner(kind="argocd", name="keystone", via="label app.kubernetes.io/instance"),
    ),
    "flux helmrelease (helm markers too)": (
        meta({**HELM_LABEL, **FLUX_HR}, HELM_ANN),
        Owner(
            kind="flux", name="HelmRelease keystone", namespace="flux-system", via="label helm.toolkit.fluxcd.io/name"
        ),
    ),
    "flux kustomization": (
        meta(FLUX_KS),
        Owner(
            kind="flux",
            name="Kustomization apps",
            namespace="flux-system",
            via="label kustomize.toolkit.fluxcd.io/name",
        ),
    ),
    "operator CR": (
        meta(HELM_LABEL, HELM_ANN, ownerReferences=[OSDPL]),
        Owner(
            kind="operator",
            name="OpenStackDeployment/osh-dev (lcm.mirantis.com/v1alpha1)",
            namespace=NS,
            via="ownerReferences (controller)",
        ),
    ),
    "non-controller reference": (meta(ownerReferences=[{**OSDPL, "controller": False}]), Owner()),
    "built-in controller": (
        meta(ownerReferences=[{"apiVersion": "apps/v1", "kind": "Deployment", "name": "x", "controller": True}]),
        Owner(),
    ),
}


@pytest.mark.parametrize(("metadata", "owner"), CASES.values(), ids=CASES.keys())
def test_owner_of(metadata: dict[str, Any] | None, owner: Owner) -> None:
    assert owner_of(metadata) == owner


def test_names_for_people() -> None:
    helm, argocd, flux, op = (
        CASES[k][1] for k in ("helm release", "argocd tracking annotation", "flux kustomization", "operator CR")
    )
    assert str(helm) == "Helm release keystone in namespace openstack" and helm.brief() == "Helm release keystone"
    assert argocd.brief() == "Argo CD application cloud-keystone"
    assert flux.brief() == "Flux Kustomization apps"
    assert "OpenStackDeployment/osh-dev" in op.brief()
    assert Owner().brief() == "—"
    assert str(CASES["managed-by Helm only"][1]) == "Helm (release not recorded) in namespace openstack"


def owner(case: str) -> Owner:
    return CASES[case][1]


@pytest.mark.parametrize("case", [k for k, (_, o) in CASES.items() if o.kind != "none"])
def test_objects_adapter_refuses_every_owner_naming_it_and_the_fix(case: str) -> None:
    o = owner(case)
    message = refusal("objects", o, "Deployment/keystone-api")
    assert message is not None
    assert message.startswith("Deployment/keystone-api is owned by ") and str(o) in message and o.via in message
    assert how_to_upgrade(o) in message


def test_objects_adapter_refusal_of_a_helm_release_names_release_and_plan_fix() -> None:
    message = refusal("objects", owner("helm release"), "Deployment/keystone-api")
    assert message is not None
    assert "Helm release keystone" in message and "helm: {release: keystone" in message


def test_objects_adapter_refusal_without_a_release_name_says_where_to_look() -> None:
    message = refusal("objects", owner("managed-by Helm only"), "Deployment/keystone-api")
    assert message is not None and "Helm (release not recorded)" in message and "helm template" in message


def test_objects_adapter_patches_what_nothing_owns() -> None:
    assert refusal("objects", Owner(), "Deployment/keystone-api") is None


def test_helm_adapter_accepts_its_own_release() -> None:
    assert refusal("helm", owner("helm release"), "Deployment/keystone-api", "keystone", NS) is None
    assert refusal("helm", owner("helm release"), "Deployment/keystone-api", "keystone") is None


@pytest.mark.parametrize(
    ("case", "release", "namespace", "words"),
    [
        ("helm release", "glance", NS, "belongs to Helm release keystone"),
        ("helm release in another namespace", "keystone", NS, "Helm release keystone in namespace infra"),
        ("managed-by Helm only", "keystone", NS, "no meta.helm.sh/release-name annotation"),
        ("plain", "keystone", NS, "is not part of Helm release keystone"),
        ("argocd tracking annotation", "keystone", NS, "Argo CD application cloud-keystone"),
        ("argocd default instance label", "cloud-keystone", NS, "Argo CD application cloud-keystone"),
        ("flux helmrelease (helm markers too)", "keystone", NS, "Flux HelmRelease keystone"),
        ("flux kustomization", "keystone", NS, "Flux Kustomization apps"),
        ("operator CR", "keystone", NS, "OpenStackDeployment/osh-dev"),
    ],
)
def test_helm_adapter_refuses_what_is_not_its_release(case: str, release: str, namespace: str, words: str) -> None:
    message = refusal("helm", owner(case), "Deployment/keystone-api", release, namespace)
    assert message is not None and words in message
