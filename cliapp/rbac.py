"""``stackhop deploy rbac PLAN...``: the Role the plans need, and no more, as YAML to apply.

Why generated: deploy/kustomize/rbac.yaml is the broad default (every Deployment, StatefulSet and
DaemonSet in the namespace, any Job), written before the plans are known. Once they are, the
worker needs exactly what its activities call for the workloads the plans name (the API calls per
adapter, from activities/):

- raw objects (kube_rollout, kube_scale): ``get`` and ``patch`` of each named workload;
  ``list``/``watch`` of it by name (kube_watch.follow always lists and watches with the field
  selector ``metadata.name=<name>``, which is what lets RBAC authorize a list or watch by
  ``resourceNames``); ``list`` of pods (a quiesce waits for the pods to be gone, by label).
- Jobs (kube_jobs: database and migration runners ``job``): ``create`` (no ``resourceNames`` is
  possible: the names are made per run), ``list``/``watch``/``get``/``delete`` of Jobs, ``list``
  and ``deletecollection`` of their pods, ``get`` of ``pods/log``. Which images a Job may run is
  the admission policy's to say (admission.py).
- the data plane (dataplane_kube): ``get`` of its DaemonSets by name (``list`` of every DaemonSet
  when it has a label selector), ``list``/``watch``/``delete`` of pods (pod names are made by the
  controller) and ``list`` of nodes (cluster-wide: a ClusterRole of its own).
- Helm releases (helm_cli: helm upgrade/rollback/history/test): what deploy/kustomize/rbac-helm.yaml
  grants, because Helm stores releases in Secrets named per revision and a chart version may
  create, change or drop any object it renders (the README's threat model says so).

The ValidatingAdmissionPolicy that narrows the raw-object patches further is admission.py's.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from model.plan import UpgradePlan

Manifest = dict[str, Any]

PLURAL = {"Deployment": "deployments", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets"}

# deploy/kustomize/rbac-helm.yaml's rules (a test keeps the two the same)
HELM_RULES: list[Manifest] = [
    {
        "apiGroups": [""],
        "resources": ["secrets"],
        "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"],
    },
    {
        "apiGroups": ["apps"],
        "resources": ["deployments", "statefulsets", "daemonsets"],
        "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"],
    },
    {
        "apiGroups": [""],
        "resources": ["services", "configmaps"],
        "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"],
    },
    {
        "apiGroups": ["batch"],
        "resources": ["jobs"],
        "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"],
    },
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "create", "delete"]},
]


@dataclass
class Needs:
    """What the plans ask of the worker in one namespace."""

    namespace: str
    workloads: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # kind -> raw names
    job_images: set[str] = field(default_factory=set)  # the images of the Jobs the recipes run
    helm_releases: set[str] = field(default_factory=set)
    data_plane: set[str] = field(default_factory=set)  # DaemonSet names
    data_plane_selector: bool = False  # a data plane found by label: every DaemonSet is listed


def needs_of(plans: list[UpgradePlan]) -> dict[str, Needs]:
    """The needs of every namespace the plans touch (a Helm release may live in another one)."""
    out: dict[str, Needs] = {}

    def at(ns: str) -> Needs:
        return out.setdefault(ns, Needs(ns))

    for plan in plans:
        ns = plan.cloud.kubernetes.namespace
        for svc in plan.services:
            here = at(ns)
            if svc.helm is not None:
                at(svc.helm.namespace or ns).helm_releases.add(svc.helm.release)
            else:
                for w in svc.workloads:
                    here.workloads[w.kind].add(w.name)
            if svc.migration.runner == "job":  # db sync in the target image (workflows/service_steps.py)
                here.job_images.update(w.image for w in svc.workloads)
            for db in ([svc.database] if svc.database else []) + list(svc.databases or []):
                if db.runner == "job":
                    here.job_images.add(db.job_image)
            if svc.data_plane is not None:
                here.data_plane.update(w.name for w in svc.data_plane_workloads)
                here.data_plane_selector |= bool(svc.data_plane.selector)
    return out


def rule(group: str, resources: list[str], verbs: list[str], names: set[str] | None = None) -> Manifest:
    out: Manifest = {"apiGroups": [group], "resources": resources, "verbs": verbs}
    if names:
        out["resourceNames"] = sorted(names)
    return out


def role_rules(needs: Needs) -> list[Manifest]:
    """The rules of the worker's Role in the namespace (the Helm rules are a Role of their own)."""
    rules = [
        rule("apps", [PLURAL[kind]], ["get", "list", "watch", "patch"], names)
        for kind, names in sorted(needs.workloads.items())
        if names
    ]
    pods: set[str] = set()
    if needs.workloads:
        pods.add("list")  # a quiesce waits until the pods are gone (by label: no names)
    if needs.job_images:
        rules.append(rule("batch", ["jobs"], ["create", "get", "list", "watch", "delete"]))
        pods.update({"list", "deletecollection"})
        rules.append(rule("", ["pods/log"], ["get"]))
    if needs.data_plane:
        daemonsets = needs.data_plane - needs.workloads.get("DaemonSet", set())
        if daemonsets:
            rules.append(rule("apps", ["daemonsets"], ["get", "list", "watch"], daemonsets))
        if needs.data_plane_selector:
            rules.append(rule("apps", ["daemonsets"], ["list"]))
        pods.update({"list", "watch", "delete"})
    if pods:
        rules.append(rule("", ["pods"], sorted(pods)))
    return rules


def _binding(kind: str, name: str, namespace: str | None, sa: tuple[str, str]) -> Manifest:
    meta: Manifest = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": f"{kind}Binding",
        "metadata": meta,
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": sa[1], "namespace": sa[0]}],
    }


def _role(kind: str, name: str, namespace: str | None, rules: list[Manifest]) -> Manifest:
    meta: Manifest = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta, "rules": rules}


def manifests(plans: list[UpgradePlan], sa: tuple[str, str] = ("stackhop", "stackhop-worker")) -> list[Manifest]:
    """Roles, bindings and admission policies for the worker's ServiceAccount ``sa`` (namespace,
    name): one Role per namespace the plans touch, a Helm Role where a release lives, a ClusterRole
    only when a data plane needs the nodes."""
    from cliapp.admission import policies

    out: list[Manifest] = []
    nodes = False
    for ns, needs in sorted(needs_of(plans).items()):
        rules = role_rules(needs)
        if rules:
            out += [_role("Role", sa[1], ns, rules), _binding("Role", sa[1], ns, sa)]
        if needs.helm_releases:
            name = f"{sa[1]}-helm"
            out += [_role("Role", name, ns, HELM_RULES), _binding("Role", name, ns, sa)]
        nodes |= bool(needs.data_plane)
        out += policies(needs, sa)
    if nodes:
        name = f"{sa[1]}-nodes"
        out += [
            _role("ClusterRole", name, None, [rule("", ["nodes"], ["list"])]),
            _binding("ClusterRole", name, None, sa),
        ]
    return out
