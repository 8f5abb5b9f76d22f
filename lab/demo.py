"""The demo environment: both labs wired into one "cloud" that stackhop can upgrade.

A ``keystone-api`` Deployment on the Kubernetes lab stands for the Keystone that the OpenStack lab
serves (the lab controller keeps the two in step). By default it is deployed as real clouds deploy
it: the Helm release ``keystone`` of the lab's openstack-helm-style chart (lab/charts/keystone-2025.2.0)
with the operator's own values (examples/lab-keystone-values.yaml); ``deploy="objects"`` creates
the bare Deployment instead (for raw-object plans). The kubeconfig gets a context named like the
plan's (``lab``), and the worker gets the OpenStack lab's environment. Failures are injected for
real: schema drift that breaks the expand migration, a release whose pods never become ready, or a
policy that the tempest smoke run catches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import structlog
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from lab.controller import LABEL, KeystoneFollower, wait_until
from lab.helm import KEYSTONE_OLD, LAB_VALUES, Helm, keystone_chart
from lab.k8s.cluster import KubeLab
from lab.k8s.versions import helm_bin
from lab.openstack import paths
from lab.openstack.manager import ADMIN_CLOUD, OpenStackLab

log = structlog.get_logger(__name__)

BASELINE = "28.1.0"
TARGET = "29.1.0"
REPO = "registry.lab/keystone"
Inject = Literal["migration", "rollout", "tempest"]
Deploy = Literal["helm", "objects"]
RELEASE = "keystone"  # the Helm release of the demo's Keystone
# An index the 2026.1 expand migration creates, added beforehand as a DBA "hot fix": the expand
# then applies its first revisions and fails half-way on "Duplicate key name", as drift does.
DRIFT_SQL = "CREATE INDEX ix_revocation_event_composite ON revocation_event (audit_id)"


@dataclass
class DemoLab:
    kube: KubeLab
    openstack: OpenStackLab
    namespace: str = "openstack"
    context: str = "lab"
    replicas: int = 2  # objects: the Deployment's; helm: pod.replicas.api of the values file
    deploy: Deploy = "helm"
    follower: KeystoneFollower | None = field(default=None, repr=False)

    @property
    def kubeconfig(self) -> Path:
        """The lab's kubeconfig with its context renamed to the plan's."""
        path = self.kube.workdir / f"{self.kube.name}-demo-kubeconfig.yaml"
        doc = yaml.safe_load(self.kube.kubeconfig.read_text())
        old = doc["current-context"]
        for ctx in doc["contexts"]:
            if ctx["name"] == old:
                ctx["name"] = self.context
        doc["current-context"] = self.context
        paths.write_private(path, yaml.safe_dump(doc))
        return path

    def worker_env(self) -> dict[str, str]:
        return {**self.openstack.worker_env(), "KUBECONFIG": str(self.kubeconfig), "STACKHOP_HELM": str(helm_bin())}

    def helm(self) -> Helm:
        """helm on the demo's namespace through its kubeconfig and context."""
        return Helm(self.kubeconfig, self.namespace, self.context)

    def _apps(self) -> tuple[client.CoreV1Api, client.AppsV1Api]:
        # kubernetes' config loaders carry no annotations
        api = config.new_client_from_config(config_file=str(self.kubeconfig), context=self.context)
        return client.CoreV1Api(api), client.AppsV1Api(api)

    # --- set-up ---------------------------------------------------------------------------------
    def prepare(self, inject: Inject | None = None, reset: bool = True) -> None:
        """Baseline: Keystone 28.1.0 on a freshly bootstrapped DB, keystone-api at 28.1.0.

        ``reset=False`` keeps the labs as they are (e.g. after a rolled-back upgrade, to run the
        next one on its expanded schema) and only starts the lab controller."""
        self.close()
        if not reset:
            self._follow(inject)
            wait_until(lambda: self.available(), 90, "keystone-api to be available")
            return
        if not self.openstack.baseline_file.exists():
            self.openstack.save_baseline()
        self.openstack.reset(BASELINE)
        core, apps = self._apps()
        try:
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=self.namespace)))
        except ApiException as e:
            if e.status != 409:
                raise
        helm = self.helm()
        helm.uninstall(RELEASE, wait=False)  # either way: a fresh release or bare Deployment
        try:
            apps.delete_namespaced_deployment("keystone-api", self.namespace, grace_period_seconds=0)
        except ApiException as e:
            if e.status != 404:
                raise
        wait_until(
            lambda: not core.list_namespaced_pod(self.namespace, label_selector="app=keystone-api").items,
            60,
            "old keystone-api pods to go",
        )
        if inject == "migration":
            assert self.openstack.mariadb and self.openstack.keystone, "the OpenStack lab is up"
            self.openstack.mariadb.sql(DRIFT_SQL, database=self.openstack.keystone.database)
        if self.deploy == "helm":
            # no --wait: the pods become Ready only once the lab controller (started next) serves Keystone
            helm.install(RELEASE, keystone_chart(KEYSTONE_OLD), values=[LAB_VALUES], wait=False)
        else:
            manifest = deployment(self.namespace, f"{REPO}:{BASELINE}", self.replicas)
            manifest_body: Any = manifest  # the client sends a plain dict as it is; its annotations name only V1 models
            apps.create_namespaced_deployment(self.namespace, manifest_body)
        # the controller starts once the pods exist: started before, it finds none, stops the Keystone
        # just served and serves it again when they come
        wait_until(
            lambda: core.list_namespaced_pod(self.namespace, label_selector="app=keystone-api").items,
            60,
            "keystone-api pods to be created",
        )
        self._follow(inject)
        wait_until(lambda: self.available(apps), 90, "keystone-api at 28.1.0 to be available")

    def _follow(self, inject: Inject | None) -> None:
        self.follower = KeystoneFollower(
            self.openstack,
            self.kubeconfig,
            self.namespace,
            context=self.context,
            crashing=frozenset({TARGET}) if inject == "rollout" else frozenset(),
            broken_policy=TARGET if inject == "tempest" else None,
        ).start()

    def available(self, apps: client.AppsV1Api | None = None) -> bool:
        apps = apps or self._apps()[1]
        status = apps.read_namespaced_deployment("keystone-api", self.namespace).status
        if status is None:
            return False
        return (status.available_replicas or 0) == self.replicas and (status.updated_replicas or 0) == self.replicas

    def close(self) -> None:
        if self.follower:
            self.follower.stop()
            self.follower = None

    # --- what an operator checks afterwards --------------------------------------------------------
    def deployed_image(self) -> str:
        d = self._apps()[1].read_namespaced_deployment("keystone-api", self.namespace)
        pod = d.spec.template.spec if d.spec else None
        return (pod.containers[0].image if pod else None) or ""

    def values_changes(self) -> dict[str, tuple[Any, Any]]:
        """The release's user-supplied values against the operator's file: {dotted path: (file, release)}
        for every leaf that differs (lists compared whole). After an upgrade or a rollback by stackhop
        only image tags may appear here."""
        given = flatten(yaml.safe_load(LAB_VALUES.read_text()))
        now = flatten(self.helm().get_values(RELEASE))
        return {k: (given.get(k), now.get(k)) for k in sorted(given.keys() | now.keys()) if given.get(k) != now.get(k)}

    def served_release(self) -> str | None:
        ks = self.openstack.keystone
        return ks.release if ks and ks.pid and ks.ready() else None

    def token_works(self) -> bool:
        """A token is issued to the lab's admin (through the lab's clouds.yaml, read explicitly)."""
        import openstack
        from openstack import config as os_config

        loader = os_config.OpenStackConfig(config_files=[str(self.openstack.clouds_yaml)], load_envvars=False)
        conn = openstack.connection.Connection(config=loader.get_one(cloud=ADMIN_CLOUD))
        try:
            return bool(conn.auth_token)
        finally:
            conn.close()


def flatten(values: Any, prefix: str = "") -> dict[str, Any]:
    """Nested values as {dotted.path: leaf} (a list is one leaf)."""
    if not isinstance(values, dict) or not values:
        return {prefix: values} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in values.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def deployment(namespace: str, image: str, replicas: int) -> dict[str, Any]:
    labels = {"app": "keystone-api", LABEL: "controller"}
    return {
        "metadata": {"name": "keystone-api", "namespace": namespace, "labels": {"app": "keystone-api"}},
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": 45,
            "selector": {"matchLabels": {"app": "keystone-api"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "keystone-api", "image": image, "ports": [{"containerPort": 5000}]}]},
            },
        },
    }


def demo_kube_lab() -> KubeLab:
    return KubeLab(name=os.environ.get("STACKHOP_DEMO_CLUSTER", "stackhop-demo"), nodes=2)
