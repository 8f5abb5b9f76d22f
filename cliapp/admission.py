"""The ValidatingAdmissionPolicies (admissionregistration.k8s.io/v1, CEL) behind ``deploy rbac``.

RBAC says which objects the worker may patch, not what a patch may change: ``patch`` of a
Deployment is also a new command, a hostPath volume or a privileged container. For the raw-object
adapter the worker changes only container images (kube_rollout.set_images), replicas
(kube_scale) and its own annotations, ``stackhop.io/...`` on the workload and on its pod template
(the previous images, the replicas before a quiesce, the restart marker). The workloads policy
holds the worker's ServiceAccount to exactly that on the workloads the plans name: every other
field of the spec, of the pod template and of each container must stay as it was. The fields are
listed from the Kubernetes API (the client's models, plus newer ones it may not know yet), each
compared with CEL's optional access so an absent field equals an absent field.

The Jobs policy holds every Job the worker creates to an image one of the plans' recipes runs
(the service's target images for its db sync, the database ``job_image`` for dumps and restores)
and to no host namespaces, privileged containers, hostPath volumes or other ServiceAccount.

Where a Helm release lives the worker may create and change any workload (helm_cli's rights): the
workloads policy then still binds the raw workloads by name, and no Jobs policy is written (the
charts' own Jobs run images no plan names). The README's threat model says so.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from cliapp.rbac import PLURAL, Needs

Manifest = dict[str, Any]

PREFIX = "stackhop.io/"  # the worker's annotations (activities/kube_rollout.py, kube_scale.py)

# fields newer than the kubernetes client may know of: compared too (absent on both sides is equal)
EXTRA_POD_FIELDS = {"hostUsers", "resources", "resourceClaims", "schedulingGates", "os", "hostnameOverride"}
EXTRA_CONTAINER_FIELDS = {"resizePolicy", "restartPolicy", "restartPolicyRules"}


def _fields(*models: Any) -> list[str]:
    return sorted({str(v) for m in models for v in m.attribute_map.values()})


def spec_fields() -> list[str]:
    """Every field of a Deployment, StatefulSet or DaemonSet spec but replicas and the template."""
    models = (client.V1DeploymentSpec, client.V1StatefulSetSpec, client.V1DaemonSetSpec)
    return [f for f in _fields(*models) if f not in ("replicas", "template")]


def pod_fields() -> list[str]:
    """Every pod spec field but the containers (compared one field at a time)."""
    return [
        f
        for f in sorted(set(_fields(client.V1PodSpec)) | EXTRA_POD_FIELDS)
        if f not in ("containers", "initContainers")
    ]


def container_fields() -> list[str]:
    """Every container field but the name (the key) and the image (what the worker changes)."""
    return [f for f in sorted(set(_fields(client.V1Container)) | EXTRA_CONTAINER_FIELDS) if f not in ("name", "image")]


def _cel_list(values: set[str]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in sorted(values)) + "]"


def _own_annotations(path: str) -> str:
    """CEL: the annotations at ``path`` (of object and oldObject) differ only in stackhop.io/ keys."""
    new, old = f"object.{path}.?annotations.orValue({{}})", f"oldObject.{path}.?annotations.orValue({{}})"
    return (
        f"{new}.all(k, k.startsWith('{PREFIX}') || (k in {old} && {old}[k] == {new}[k]))"
        f" && {old}.all(k, k.startsWith('{PREFIX}') || k in {new})"
    )


def _same(path: str, what: str) -> Manifest:
    return {"expression": f"object.{path} == oldObject.{path}", "message": f"the worker may not change {what}"}


def workload_validations() -> list[Manifest]:
    out = [_same(f"metadata.?{f}", f"metadata.{f}") for f in ("labels", "ownerReferences", "finalizers")]
    out.append({"expression": _own_annotations("metadata"), "message": f"only {PREFIX} annotations may change"})
    out += [_same(f"spec.?{f}", f"spec.{f}") for f in spec_fields()]
    tpl = "spec.template"
    out.append(_same(f"{tpl}.metadata.?labels", "the pod template's labels"))
    out.append(
        {"expression": _own_annotations(f"{tpl}.metadata"), "message": f"only {PREFIX} pod annotations may change"}
    )
    pod = f"{tpl}.spec"
    out += [_same(f"{pod}.?{f}", f"{pod}.{f}") for f in pod_fields()]
    for group in ("containers", "initContainers"):
        new, old = f"object.{pod}.?{group}.orValue([])", f"oldObject.{pod}.?{group}.orValue([])"
        out.append(
            {
                "expression": f"{new}.size() == {old}.size() && {new}.all(c, {old}.exists(o, o.name == c.name))",
                "message": f"the worker may not add, remove or rename {group}",
            }
        )
        out += [
            {
                "expression": f"{new}.all(c, {old}.exists(o, o.name == c.name && o.?{f} == c.?{f}))",
                "message": f"the worker may change only the image of {group}: not {f}",
            }
            for f in container_fields()
        ]
    return out


def job_validations(images: set[str]) -> list[Manifest]:
    containers = "variables.pod.containers + variables.pod.?initContainers.orValue([])"
    return [
        {
            "expression": f"({containers}).all(c, c.image in {_cel_list(images)})",
            "message": "a Job of the worker runs an image of the plans' recipes only",
        },
        {
            "expression": "!variables.pod.?hostNetwork.orValue(false) && !variables.pod.?hostPID.orValue(false)"
            " && !variables.pod.?hostIPC.orValue(false)",
            "message": "a Job of the worker uses no host namespace",
        },
        {
            "expression": f"({containers}).all(c, !c.?securityContext.?privileged.orValue(false))",
            "message": "a Job of the worker runs no privileged container",
        },
        {
            "expression": "variables.pod.?volumes.orValue([]).all(v, !has(v.hostPath))",
            "message": "a Job of the worker mounts no hostPath volume",
        },
        {
            "expression": "variables.pod.?serviceAccountName.orValue('default') == 'default'",
            "message": "a Job of the worker runs as the namespace's default ServiceAccount",
        },
    ]


def _policy(name: str, resources: list[str], group: str, operation: str, sa: tuple[str, str]) -> Manifest:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {"apiGroups": [group], "apiVersions": ["*"], "operations": [operation], "resources": resources}
                ]
            },
            "matchConditions": [
                {
                    "name": "the-worker",
                    "expression": f"request.userInfo.username == 'system:serviceaccount:{sa[0]}:{sa[1]}'",
                }
            ],
        },
    }


def _binding(name: str, namespace: str) -> Manifest:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}},
        },
    }


def policies(needs: Needs, sa: tuple[str, str]) -> list[Manifest]:
    """The policies and bindings of one namespace (cluster-scoped objects named after it)."""
    out: list[Manifest] = []
    if needs.workloads:
        name = f"{sa[1]}-{needs.namespace}-workloads"
        policy = _policy(name, sorted(PLURAL[k] for k in needs.workloads), "apps", "UPDATE", sa)
        names = "{" + ", ".join(f"'{k}': {_cel_list(v)}" for k, v in sorted(needs.workloads.items())) + "}"
        policy["spec"]["matchConditions"].append(
            {
                "name": "the-plans-workloads",
                "expression": f"object.metadata.name in {names}[?request.kind.kind].orValue([])",
            }
        )
        policy["spec"]["validations"] = workload_validations()
        out += [policy, _binding(name, needs.namespace)]
    if needs.job_images and not needs.helm_releases:
        name = f"{sa[1]}-{needs.namespace}-jobs"
        policy = _policy(name, ["jobs"], "batch", "CREATE", sa)
        policy["spec"]["variables"] = [{"name": "pod", "expression": "object.spec.template.spec"}]
        policy["spec"]["validations"] = job_validations(needs.job_images)
        out += [policy, _binding(name, needs.namespace)]
    return out
