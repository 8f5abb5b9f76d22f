"""Who owns a workload, and whether stackhop may change it the way the plan says.

Why: an object that Helm, a GitOps controller or an operator owns is put back by its owner — Helm's
next upgrade (three-way merge or server-side apply), Argo CD's self-heal, Flux's drift detection, an
operator's reconcile loop. Patching it directly makes `helm history` lie and is undone within
minutes. So stackhop changes what the owner reads (a Helm release's values) or refuses, naming the
owner and the way to upgrade it.

Pure functions over an object's metadata, so the activities (which refuse to patch), the workflow's
pre-flight and ``plan show --live`` judge the same way. Import-safe in the workflow sandbox.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

OwnerKind = Literal["none", "helm", "argocd", "flux", "operator"]
Adapter = Literal["objects", "helm"]

HELM_RELEASE_NAME = "meta.helm.sh/release-name"
HELM_RELEASE_NAMESPACE = "meta.helm.sh/release-namespace"
MANAGED_BY = "app.kubernetes.io/managed-by"
INSTANCE = "app.kubernetes.io/instance"
ARGOCD_TRACKING = "argocd.argoproj.io/tracking-id"
ARGOCD_INSTANCE = "argocd.argoproj.io/instance"
FLUX_HELM = ("helm.toolkit.fluxcd.io/name", "helm.toolkit.fluxcd.io/namespace")
FLUX_KUSTOMIZE = ("kustomize.toolkit.fluxcd.io/name", "kustomize.toolkit.fluxcd.io/namespace")
# Owner references of these kinds are Kubernetes' own (a ReplicaSet's Deployment), not an operator's.
BUILTIN_GROUPS = frozenset({"", "apps", "batch", "v1", "apps/v1", "batch/v1"})


class Owner(BaseModel):
    """What owns one workload. ``kind`` none: nothing does (stackhop may patch it)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: OwnerKind = "none"
    name: str = ""  # release, Argo CD application, Flux HelmRelease/Kustomization, or the CR's Kind/name
    namespace: str = ""
    via: str = ""  # the marker that told: an annotation, a label, an owner reference

    def __str__(self) -> str:
        where = f" in namespace {self.namespace}" if self.namespace else ""
        names = {
            "none": "nothing",
            "helm": f"Helm release {self.name}{where}" if self.name else f"Helm (release not recorded){where}",
            "argocd": f"Argo CD application {self.name}",
            "flux": f"Flux {self.name}{where}",
            "operator": f"the operator's {self.name}{where}",
        }
        return names[self.kind]

    def brief(self) -> str:
        """A short name for a table column: "Helm release keystone", "Argo CD application x", "—"."""
        return "—" if self.kind == "none" else str(self).split(" in namespace ")[0]


def owner_of(metadata: dict[str, Any] | None) -> Owner:
    """The owner an object's metadata names, strongest claim first: an operator's controller owner
    reference, then GitOps (which may drive Helm itself), then Helm."""
    meta = metadata or {}
    labels: dict[str, str] = meta.get("labels") or {}
    ann: dict[str, str] = meta.get("annotations") or {}
    namespace = str(meta.get("namespace") or "")
    for ref in meta.get("ownerReferences") or []:
        group = str(ref.get("apiVersion", "")).rpartition("/")[0]
        if ref.get("controller") and group not in BUILTIN_GROUPS:
            return Owner(
                kind="operator",
                name=f"{ref.get('kind')}/{ref.get('name')} ({ref.get('apiVersion')})",
                namespace=namespace,
                via="ownerReferences (controller)",
            )
    if ARGOCD_TRACKING in ann:
        app = ann[ARGOCD_TRACKING].split(":", 1)[0]
        return Owner(kind="argocd", name=app, via=f"annotation {ARGOCD_TRACKING}")
    if ARGOCD_INSTANCE in labels:
        return Owner(kind="argocd", name=labels[ARGOCD_INSTANCE], via=f"label {ARGOCD_INSTANCE}")
    for name_key, ns_key, what in (
        (*FLUX_HELM, "HelmRelease"),
        (*FLUX_KUSTOMIZE, "Kustomization"),
    ):
        if name_key in labels:
            return Owner(
                kind="flux",
                name=f"{what} {labels[name_key]}",
                namespace=labels.get(ns_key, ""),
                via=f"label {name_key}",
            )
    if HELM_RELEASE_NAME in ann:
        return Owner(
            kind="helm",
            name=ann[HELM_RELEASE_NAME],
            namespace=ann.get(HELM_RELEASE_NAMESPACE, namespace),
            via=f"annotation {HELM_RELEASE_NAME}",
        )
    if INSTANCE in labels:
        # Argo CD's tracking label before 3.0 (and with trackingMethod: label). Helm 3.2+ writes the
        # release annotation above on everything it installs or upgrades, so an instance label
        # without it is not a Helm release's — even with managed-by: Helm, which a chart rendered by
        # `helm template` (as Argo CD renders charts) carries too.
        return Owner(kind="argocd", name=labels[INSTANCE], via=f"label {INSTANCE}")
    if labels.get(MANAGED_BY) == "Helm":
        # Rendered by Helm, release unknown: nothing to name, but still not stackhop's to patch.
        return Owner(kind="helm", namespace=namespace, via=f"label {MANAGED_BY}=Helm")
    return Owner()


def how_to_upgrade(owner: Owner) -> str:
    """The way to upgrade what ``owner`` owns (the fix of a refusal)."""
    if owner.kind == "helm" and not owner.name:
        return (
            "find what renders it (`helm template` output applied by a pipeline or a GitOps tool) and change the "
            "image there, or install it as a Helm release and name that release in the plan's `helm:`"
        )
    if owner.kind == "helm":
        return (
            f"upgrade it through its release: add `helm: {{release: {owner.name or '<release>'}, chart: ..., "
            "version: ..., image_values: {...}}` to the service in the plan"
        )
    if owner.kind == "argocd":
        return (
            f"change the image values in the Git repository Argo CD application {owner.name} syncs from (or "
            "pause its automated sync) — a direct change is reverted by self-heal"
        )
    if owner.kind == "flux":
        return (
            f"change the values of Flux {owner.name} in its source repository (or suspend it with "
            "`flux suspend`) — a direct change is reverted by drift detection"
        )
    if owner.kind == "operator":
        return f"change the version field of {owner.name}: its operator reconciles the workloads from it"
    return "nothing to do: stackhop may patch it"


def refusal(adapter: Adapter, owner: Owner, workload: str, release: str = "", namespace: str = "") -> str | None:
    """Why ``adapter`` must not change ``workload`` (None: it may). ``release``/``namespace``: the
    Helm release the plan names for it (helm adapter)."""
    if owner.kind == "none":
        if adapter == "helm":
            return (
                f"{workload} is not part of Helm release {release} (no {HELM_RELEASE_NAME} annotation): "
                "drop `helm:` from the service to patch it as a plain object, or name the release that owns it"
            )
        return None
    if adapter == "helm" and owner.kind == "helm":
        if owner.name == release and (not owner.namespace or not namespace or owner.namespace == namespace):
            return None
        if not owner.name:
            return (
                f"{workload} is labelled {MANAGED_BY}=Helm but has no {HELM_RELEASE_NAME} annotation (rendered "
                f"by `helm template`, not installed by Helm): it is not part of release {release}"
            )
        return (
            f"{workload} belongs to {owner}, not to release {release}"
            f"{f' in namespace {namespace}' if namespace else ''}: name its release in helm.release"
        )
    return f"{workload} is owned by {owner} ({owner.via}): stackhop will not patch it; {how_to_upgrade(owner)}"
