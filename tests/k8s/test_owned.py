"""Owned workloads on the real lab: read_images names the owner, and set_images, undo_images and
scale refuse (WorkloadOwned) before patching anything — Helm's release annotations, Argo CD's
tracking annotation and instance label, Flux's helm-controller and kustomize-controller labels, and
an operator's custom resource (a real CRD, as Rockoon's OpenStackDeployment, owning the Deployment
through a controller reference; the lab's garbage collector would delete it without that owner)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from temporalio.exceptions import ApplicationError

from activities.kube import read_images, scale, set_images, undo_images
from activities.kube_client import api_client, call
from lab.k8s.cluster import KubeLab
from lab.k8s.pytest_plugin import kube_context
from model import errors
from model.io import ReadImagesInput, ScaleInput, SetImagesInput, UndoImagesInput, WorkloadImage
from model.plan import KubeTarget
from tests.k8s.helpers import Recorder, create, read, ref, workload
from tests.waiting import eventually_sync

pytestmark = pytest.mark.k8s

GROUP, VERSION, PLURAL, KIND = "lcm.mirantis.com", "v1alpha1", "openstackdeployments", "OpenStackDeployment"
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": PLURAL, "singular": "openstackdeployment", "kind": KIND, "shortNames": ["osdpl"]},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            }
        ],
    },
}
OLD = "registry.lab/keystone:28.1.0"
NEW = "registry.lab/keystone:29.1.0"

# name -> (labels, annotations, what the refusal must name)
MARKED: dict[str, tuple[dict[str, str], dict[str, str], str]] = {
    "helm": (
        {"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": "keystone"},
        {"meta.helm.sh/release-name": "keystone", "meta.helm.sh/release-namespace": "NS"},
        "Helm release keystone",
    ),
    "argocd-tracking": (
        {},
        {"argocd.argoproj.io/tracking-id": "cloud-keystone:apps/Deployment:NS/argocd-tracking"},
        "Argo CD application cloud-keystone",
    ),
    "argocd-label": ({"app.kubernetes.io/instance": "cloud-glance"}, {}, "Argo CD application cloud-glance"),
    "flux-helm": (
        {
            "app.kubernetes.io/managed-by": "Helm",
            "helm.toolkit.fluxcd.io/name": "keystone",
            "helm.toolkit.fluxcd.io/namespace": "flux-system",
        },
        {"meta.helm.sh/release-name": "keystone", "meta.helm.sh/release-namespace": "NS"},
        "Flux HelmRelease keystone",
    ),
    "flux-kustomize": (
        {"kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"},
        {},
        "Flux Kustomization apps",
    ),
    "operator": ({}, {}, "OpenStackDeployment/osh-dev"),
}


def _owned(name: str, ns: str, owner_ref: dict[str, Any] | None) -> dict[str, Any]:
    labels, annotations, _ = MARKED[name]
    obj = workload("Deployment", name, OLD, replicas=0)
    meta = obj["metadata"]
    meta["labels"] = labels
    meta["annotations"] = {k: v.replace("NS", ns) for k, v in annotations.items()}
    if owner_ref:
        meta["ownerReferences"] = [owner_ref]
    return obj


@pytest.fixture(scope="module")
def owned(k8s_lab: KubeLab) -> Iterator[KubeTarget]:
    """One namespace with one Deployment per kind of owner (replicas 0: no pods needed) and a plain one."""
    ns = f"t-own-{uuid.uuid4().hex[:6]}"
    k8s_lab.kubectl_run("create", "namespace", ns)
    target = KubeTarget(context=kube_context(k8s_lab), namespace=ns, kubeconfig=str(k8s_lab.kubeconfig))
    with api_client(target) as api:
        ext = client.ApiextensionsV1Api(api)
        try:
            call(ext.create_custom_resource_definition, CRD)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
        custom = client.CustomObjectsApi(api)
        cr = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": {"name": "osh-dev"}}
        cr["spec"] = {"openstack_version": "2025.2"}

        def created() -> dict[str, Any]:
            """The CR, once the CRD is served (a moment after it is created: 404, {} until then)."""
            try:
                out: dict[str, Any] = call(custom.create_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, cr)
                return out
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
                return {}

        made = eventually_sync(created, within=10, what="the OpenStackDeployment CRD to be served")
    owner_ref = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "name": "osh-dev",
        "uid": made["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": False,
    }
    for name in MARKED:
        create(target, _owned(name, ns, owner_ref if name == "operator" else None))
    create(target, workload("Deployment", "plain", OLD, replicas=0))

    def synced() -> bool:
        """The controller manager has taken up every Deployment: it writes their revision annotation
        and status once, and _versions must not see that as a patch of ours."""
        for name in [*MARKED, "plain"]:
            obj = read(target, "Deployment", name)
            revision = (obj["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision")
            if not revision or (obj.get("status") or {}).get("observedGeneration") != obj["metadata"]["generation"]:
                return False
        return True

    eventually_sync(synced, within=30, what="the Deployments taken up by the deployment controller")
    yield target
    k8s_lab.kubectl_run("delete", "namespace", ns, "--wait=false", check=False)


def test_read_images_names_every_owner(owned: KubeTarget) -> None:
    names = [*MARKED, "plain"]
    res = Recorder().run(read_images, ReadImagesInput(target=owned, workloads=[ref("Deployment", n) for n in names]))
    got = {img.name: img.owner for img in res.images}
    assert got["plain"] is not None and got["plain"].kind == "none"
    for name, (_, _, words) in MARKED.items():
        owner = got[name]
        assert owner is not None and words in str(owner), (name, owner)
    assert got["operator"] is not None and got["operator"].kind == "operator"  # the GC kept it: its owner exists


def _refused(exc: ApplicationError, name: str, ns: str) -> None:
    assert exc.type == errors.WORKLOAD_OWNED and exc.non_retryable
    assert MARKED[name][2] in exc.message and "stackhop will not patch it" in exc.message
    details = exc.details[0]
    assert (details["kind"], details["name"], details["namespace"]) == ("Deployment", name, ns)
    assert MARKED[name][2].split()[-1] in str(details["owner"])


def _versions(target: KubeTarget) -> dict[str, Any]:
    """What any patch of ours would change: the spec (its generation), the labels and annotations. Not
    the resourceVersion: the controller manager still writes the new Deployments' status meanwhile."""
    objs = {n: read(target, "Deployment", n) for n in [*MARKED, "plain"]}
    return {
        n: (o["metadata"]["generation"], o["metadata"].get("labels"), o["metadata"].get("annotations"), o["spec"])
        for n, o in objs.items()
    }


@pytest.mark.parametrize("name", list(MARKED))
def test_direct_patches_are_refused_and_nothing_is_patched(owned: KubeTarget, name: str) -> None:
    """The plain Deployment comes first in each call: it is not patched either."""
    before = _versions(owned)
    images = [WorkloadImage(kind="Deployment", name=n, container="app", image=NEW) for n in ("plain", name)]
    old = [img.model_copy(update={"image": OLD}) for img in images]
    calls: list[tuple[Callable[[Any], Any], Any]] = [
        (set_images, SetImagesInput(target=owned, images=images)),
        (undo_images, UndoImagesInput(target=owned, previous=old, timeout_seconds=10)),
        (scale, ScaleInput(target=owned, workloads=[ref("Deployment", "plain"), ref("Deployment", name)])),
        (
            scale,
            ScaleInput(target=owned, workloads=[ref("Deployment", n) for n in ("plain", name)], replicas={name: 2}),
        ),
    ]
    for fn, arg in calls:
        with pytest.raises(ApplicationError) as ei:
            Recorder().run(fn, arg)
        _refused(ei.value, name, owned.namespace)
    assert _versions(owned) == before
