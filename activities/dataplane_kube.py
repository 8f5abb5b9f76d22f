"""Kubernetes side of the data plane: its DaemonSets (by name and label selector), their pods per
node, and ``dataplane.replace`` (a node's pods deleted; the DaemonSet controller creates the new ones).

Why OnDelete and a delete per node: an OnDelete DaemonSet never replaces a pod by itself, so the
Helm upgrade that changed its template touched no node; deleting the pod of one node makes the
controller create that node's new pod from the new template, and nothing else moves. A RollingUpdate
DaemonSet would roll every node at once (``dataplane.inventory`` refuses it).

The wait is a Kubernetes watch of the node's pods (field selector ``spec.nodeName``), resumed from
its resourceVersion through apiserver restarts as activities/kube_watch.py does for one object.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from activities.kube_client import call
from activities.kube_watch import follow_all
from model.plan import KubeTarget

ONDELETE_FIX = "set `pod.lifecycle.upgrades.daemonsets.pod_replacement_strategy: OnDelete` in the release's values"


def strategy(ds: dict[str, Any]) -> str:
    return str(((ds.get("spec") or {}).get("updateStrategy") or {}).get("type") or "RollingUpdate")


def template_images(ds: dict[str, Any]) -> list[str]:
    spec = ((ds.get("spec") or {}).get("template") or {}).get("spec") or {}
    return [c.get("image", "") for c in spec.get("containers") or []]


def pod_images(pod: dict[str, Any]) -> list[str]:
    return [c.get("image", "") for c in (pod.get("spec") or {}).get("containers") or []]


def repository(image: str) -> str:
    """The image without its tag or digest: ``reg:5000/nova:2026.1`` -> ``reg:5000/nova``."""
    name = image.split("@", 1)[0]
    head, sep, tail = name.rpartition(":")
    return head if sep and "/" not in tail else name


def runs_targets(images: list[str], targets: list[str]) -> bool:
    """Every container whose repository a target names runs that target, and one does at least."""
    wanted = {repository(t): t for t in targets}
    matched = [i for i in images if repository(i) in wanted]
    return bool(matched) and all(wanted[repository(i)] == i for i in matched)


def is_ready(pod: dict[str, Any]) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def owner_uid(pod: dict[str, Any]) -> str:
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == "DaemonSet" and ref.get("controller"):
            return str(ref.get("uid") or "")
    return ""


def find_daemonsets(
    api: client.ApiClient, target: KubeTarget, names: list[str], selector: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """The data plane's DaemonSets (by name, and by ``selector``), and a refusal per name not found."""
    apps = client.AppsV1Api(api)
    found: dict[str, dict[str, Any]] = {}
    missing: list[str] = []
    for name in names:
        try:
            found[name] = call(apps.read_namespaced_daemon_set, name, target.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            missing.append(
                f"DaemonSet {name!r} not found in namespace {target.namespace!r}: "
                "fix the service's data_plane.workloads (or its selector)"
            )
    if selector:
        listed = call(apps.list_namespaced_daemon_set, target.namespace, label_selector=selector)
        for ds in listed.get("items") or []:
            found.setdefault(ds["metadata"]["name"], ds)
    return [found[n] for n in sorted(found)], missing


def pods_by_node(api: client.ApiClient, target: KubeTarget, daemonsets: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """node -> [(DaemonSet name, pod)] of the DaemonSets' own pods (by controller uid)."""
    core = client.CoreV1Api(api)
    uids = {ds["metadata"]["uid"]: ds["metadata"]["name"] for ds in daemonsets}
    out: dict[str, list[Any]] = {}
    for ds in daemonsets:
        labels = ((ds.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        sel = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        for pod in call(core.list_namespaced_pod, target.namespace, label_selector=sel).get("items") or []:
            uid = owner_uid(pod)
            node = (pod.get("spec") or {}).get("nodeName") or ""
            if uid == ds["metadata"]["uid"] and node:
                out.setdefault(node, []).append((uids[uid], pod))
    return out


def node_labels(api: client.ApiClient) -> dict[str, dict[str, str]]:
    core = client.CoreV1Api(api)
    nodes = call(core.list_node).get("items") or []
    return {n["metadata"]["name"]: dict(n["metadata"].get("labels") or {}) for n in nodes}


def watch_node_pods(
    api: client.ApiClient, namespace: str, node: str, *, deadline: float
) -> Iterator[tuple[str, dict[str, dict[str, Any]]]]:
    """Yield ("object" | "tick" | "unreachable: <why>", the node's pods by name) now and after every
    change until ``deadline``: kube_watch.follow_all on ``spec.nodeName`` (one list, then watches from
    its resourceVersion, re-listed on 410, transient failures retried with backoff)."""
    core = client.CoreV1Api(api)
    for event in follow_all(core.list_namespaced_pod, namespace, f"spec.nodeName={node}", deadline=deadline):
        kind = f"unreachable: {event.error}" if event.kind == "unreachable" else event.kind
        yield kind, event.items


def delete_pod(api: client.ApiClient, namespace: str, name: str, uid: str) -> bool:
    """Delete the pod if it is still the one seen (uid precondition); False when it is gone already."""
    core = client.CoreV1Api(api)
    body = {"preconditions": {"uid": uid}} if uid else {}
    try:
        call(core.delete_namespaced_pod, name, namespace, body=body)
    except ApiException as exc:
        if exc.status in (404, 409):  # gone, or already another pod of the same name
            return False
        raise
    return True
