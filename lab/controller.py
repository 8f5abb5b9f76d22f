"""The lab controller: the served Keystone follows the ``keystone-api`` Deployment.

In the lab, pods are kwok's and the API is a real process, so something must play the kubelet for
that one application. Pods carrying the label ``lab.stackhop.io/served-by: controller`` are left
Running-but-not-Ready by the kwok stage of that name; this controller watches them and, for a pod
whose image tag is X, serves Keystone X (if another release serves, it is replaced: the lab has one
API process), and only *then* marks the pod Ready — so the Deployment's rollout completes exactly
when the new release answers, as with a real readiness probe. No live pod: the API is stopped
(a quiesced service). The engine itself never talks to this controller: it talks to Kubernetes and
OpenStack only, as in production.

Failure injection: a release listed in ``crashing`` never becomes Ready (a crash-looping image),
and ``broken_policy`` serves that release with a policy that denies domain creation, which the
tempest identity smoke tests catch while the endpoint checks still pass.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from lab.openstack import paths
from lab.openstack.manager import OpenStackLab

log = structlog.get_logger(__name__)

LABEL = "lab.stackhop.io/served-by"
BROKEN_POLICY = '"identity:create_domain": "!"\n"identity:update_domain": "!"\n'


def image_tag(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


# Pods read from the apiserver always carry metadata, spec and status, which the client's models
# declare optional: the controller handles them as ``Any`` (a V1Pod) rather than assert on each field.
Pod = Any


def is_ready(pod: Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


class KeystoneFollower:
    def __init__(
        self,
        lab: OpenStackLab,
        kubeconfig: Path,
        namespace: str,
        app: str = "keystone-api",
        context: str | None = None,
        crashing: frozenset[str] = frozenset(),
        broken_policy: str | None = None,
    ) -> None:
        self.lab = lab
        self.namespace = namespace
        self.app = app
        self.crashing = crashing
        self.broken_policy = broken_policy
        api = config.new_client_from_config(config_file=str(kubeconfig), context=context)
        self.core = client.CoreV1Api(api)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lab-controller", daemon=True)
        self.switches: list[str] = []  # releases served, in order (for tests and the demo report)

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> KeystoneFollower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        if self._thread.is_alive():
            raise RuntimeError("the lab controller did not stop within 30 s")

    def __enter__(self) -> KeystoneFollower:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the loop ----------------------------------------------------------------------------
    def _loop(self) -> None:
        selector = f"app={self.app},{LABEL}=controller"
        while not self._stop.is_set():
            try:
                self.reconcile()
                w = watch.Watch()
                for _ in w.stream(
                    self.core.list_namespaced_pod,
                    self.namespace,
                    label_selector=selector,
                    timeout_seconds=2,
                    _request_timeout=5,
                ):
                    self.reconcile()
                    if self._stop.is_set():
                        w.stop()
                        break
            except Exception as e:
                log.warning("lab controller: retrying", error=str(e))
                self._stop.wait(1)

    def reconcile(self) -> None:
        if self._stop.is_set():
            return  # stopped: never act on the lab again (its namespace may be deleted next)
        selector = f"app={self.app},{LABEL}=controller"
        pods: list[Pod] = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        live = [p for p in pods if p.metadata.deletion_timestamp is None]
        ks = self.lab.keystone
        if not live:
            if ks and ks.pid:
                log.info("lab controller: no live pod, stopping keystone")
                self.lab.stop_keystone()
                self.switches.append("stopped")
            return
        for pod in sorted(
            (p for p in live if not is_ready(p)), key=lambda p: p.metadata.creation_timestamp, reverse=True
        ):
            if pod.status.phase != "Running":
                continue
            tag = image_tag(pod.spec.containers[0].image)
            if tag not in paths.KEYSTONE_RELEASES or tag in self.crashing:
                continue  # this image never answers: the pod stays unready, the rollout stalls
            self._serve(tag)
            self._mark_ready(pod)
        if ks and not ks.pid:  # e.g. after a lab restart: serve what the ready pods run
            ready = [p for p in live if is_ready(p)]
            if ready:
                self._serve(image_tag(ready[0].spec.containers[0].image))

    def _serve(self, release: str) -> None:
        ks = self.lab.keystone
        assert ks is not None
        policy = ks.base / "policy.yaml"  # oslo.policy finds it beside keystone.conf
        if release == self.broken_policy:
            policy.write_text(BROKEN_POLICY)
        elif policy.exists():
            policy.unlink()
        if ks.release == release and ks.pid and ks.ready():
            return
        log.info("lab controller: serving keystone", release=release)
        self.lab.serve(release)
        self.switches.append(release)

    def _mark_ready(self, pod: Pod) -> None:
        now = datetime.now(UTC).isoformat()
        status = {
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
            ],
            "containerStatuses": [
                {
                    "name": c.name,
                    "image": c.image,
                    "imageID": "",
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": now}},
                }
                for c in pod.spec.containers
            ],
        }
        try:
            self.core.patch_namespaced_pod_status(pod.metadata.name, self.namespace, {"status": status})
        except ApiException as e:
            if e.status != 404:
                raise


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)
