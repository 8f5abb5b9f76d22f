"""The lab controller: the served Keystone follows the ``keystone-api`` Deployment.

In the lab, pods are kwok's and the API is a real process, so something must play the kubelet for
that one application. Pods carrying the label ``lab.stackhop.io/served-by: controller`` are left
Running-but-not-Ready by the kwok stage of that name; this controller watches them and, for a pod
whose image tag is X, serves Keystone X (if another release serves, it is replaced: the lab has one
API process), and only *then* marks the pod Ready — so the Deployment's rollout completes exactly
when the new release answers, as with a real readiness probe. No live pod: the API is stopped
(a quiesced service). The engine itself never talks to this controller: it talks to Kubernetes and
OpenStack only, as in production.

It also plays the kubelet for ``helm test``: a pod of a chart's test hook (annotation
``helm.sh/hook: test``, label ``component=test``, as the lab's charts render them) that kwok has made
Running is run here for real — a token is issued by the Keystone being served — and its phase set
to Succeeded or Failed (with the container's exit code and message), which is what ``helm test``
waits for. So ``helm test keystone`` passes exactly when the served Keystone answers.

Deletion held: a pod the controller made Ready keeps a finalizer of the controller's until the
process it stands for has stopped (no live pod left) or serves other live pods — as a kubelet keeps
a pod Terminating until its container has exited. Without it, kwok deletes a pod at once and a
quiesce's "no pod left" can come before the served Keystone (and its database sessions) is gone:
a restore's inspect once saw those sessions. Every hold is released when the controller stops.

Failure injection: a release listed in ``crashing`` never becomes Ready (a crash-looping image),
and ``broken_policy`` serves that release with a policy that denies domain creation, which the
tempest identity smoke tests catch while the endpoint checks still pass.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
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
TEST_SELECTOR = "component=test"  # the lab charts' helm test pods (kubernetes_metadata_labels)
HOOK = "helm.sh/hook"
FINALIZER = "lab.stackhop.io/serving"  # the served process has not stopped yet
BROKEN_POLICY = '"identity:create_domain": "!"\n"identity:update_domain": "!"\n'


def image_tag(image: str) -> str:
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


# Pods read from the apiserver always carry metadata, spec and status, which the client's models
# declare optional: the controller handles them as ``Any`` (a V1Pod) rather than assert on each field.
Pod = Any


def is_ready(pod: Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def hold_pod(core: client.CoreV1Api, namespace: str, pod: Pod) -> None:
    """Keep ``pod`` Terminating once deleted, until ``release_pod``: what a kubelet's running container is."""
    if FINALIZER not in (pod.metadata.finalizers or []):
        try:  # strategic merge: added to the list
            core.patch_namespaced_pod(pod.metadata.name, namespace, {"metadata": {"finalizers": [FINALIZER]}})
        except ApiException as e:
            if e.status not in (404, 422):  # 422: deleted meanwhile, no finalizer may be added any more
                raise


def release_pod(core: client.CoreV1Api, namespace: str, pod: Pod) -> None:
    """Let ``pod`` go (its process has stopped)."""
    if FINALIZER in (pod.metadata.finalizers or []):
        body = {"metadata": {"$deleteFromPrimitiveList/finalizers": [FINALIZER]}}
        try:
            core.patch_namespaced_pod(pod.metadata.name, namespace, body)
        except ApiException as e:
            if e.status != 404:
                raise


# The running controller of each OpenStack lab (by object: one lab object per lab in a process).
_FOLLOWING: dict[int, KeystoneFollower] = {}
_LOCK = threading.Lock()


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
        self.tests_run: list[tuple[str, bool]] = []  # (helm test pod, passed), in order

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> KeystoneFollower:
        """Start following; refused while another controller of this process follows for the same
        OpenStack lab: two would fight over its one Keystone (one serves what the other stopped, and
        a restore then finds its database in use)."""
        with _LOCK:
            other = _FOLLOWING.get(id(self.lab))
            if other is not None and other is not self:
                raise RuntimeError(
                    f"a lab controller already follows namespace {other.namespace!r} for the OpenStack lab at "
                    f"{self.lab.base}; stop it (DemoLab.close) before following {self.namespace!r}"
                )
            _FOLLOWING[id(self.lab)] = self
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        if self._thread.is_alive():
            raise RuntimeError("the lab controller did not stop within 30 s")
        with _LOCK:
            if _FOLLOWING.get(id(self.lab)) is self:
                del _FOLLOWING[id(self.lab)]
        # nobody plays the kubelet any more: let every pod go
        for pod in self.core.list_namespaced_pod(self.namespace, label_selector=self._selector).items:
            release_pod(self.core, self.namespace, pod)

    @property
    def _selector(self) -> str:
        return f"app={self.app},{LABEL}=controller"

    def __enter__(self) -> KeystoneFollower:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the loop ----------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.reconcile()
                self.run_tests()
                w = watch.Watch()
                for _ in w.stream(  # every pod of the namespace: the served app's and helm test pods
                    self.core.list_namespaced_pod,
                    self.namespace,
                    timeout_seconds=2,
                    _request_timeout=5,
                ):
                    self.reconcile()
                    self.run_tests()
                    if self._stop.is_set():
                        w.stop()
                        break
            except Exception as e:
                log.warning("lab controller: retrying", error=str(e))
                self._stop.wait(1)

    def reconcile(self) -> None:
        if self._stop.is_set():
            return  # stopped: never act on the lab again (its namespace may be deleted next)
        pods: list[Pod] = self.core.list_namespaced_pod(self.namespace, label_selector=self._selector).items
        live = [p for p in pods if p.metadata.deletion_timestamp is None]
        ks = self.lab.keystone
        if not live and ks and ks.pid:
            log.info("lab controller: no live pod, stopping keystone")
            self.lab.stop_keystone()
            self.switches.append("stopped")
        for pod in pods:  # stopped, or serving the live pods: the terminating ones may go
            if pod.metadata.deletion_timestamp is not None:
                release_pod(self.core, self.namespace, pod)
        if not live:
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
            hold_pod(self.core, self.namespace, pod)
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
        self._patch_status(pod, status)

    def _patch_status(self, pod: Pod, status: dict[str, Any]) -> None:
        """Write a pod's status as its kubelet would (a pod gone meanwhile is nothing to report)."""
        try:
            self.core.patch_namespaced_pod_status(pod.metadata.name, self.namespace, {"status": status})
        except ApiException as e:
            if e.status != 404:
                raise

    # --- helm test pods ------------------------------------------------------------------------
    def run_tests(self) -> None:
        """Run the chart test pods kwok has started (Running) and set their final phase."""
        if self._stop.is_set():
            return
        pods: list[Pod] = self.core.list_namespaced_pod(self.namespace, label_selector=TEST_SELECTOR).items
        for pod in pods:
            hook = (pod.metadata.annotations or {}).get(HOOK, "")
            if "test" not in hook.split(",") or pod.metadata.deletion_timestamp is not None:
                continue
            if pod.status.phase != "Running":
                continue  # Pending: kwok starts it first; Succeeded/Failed: already run
            ok, message = self.token_test()
            log.info("lab controller: helm test pod ran", pod=pod.metadata.name, passed=ok, message=message)
            self._finish(pod, ok, message)
            self.tests_run.append((pod.metadata.name, ok))

    def token_test(self) -> tuple[bool, str]:
        """What the chart's test container does (``openstack token issue``), against the served Keystone."""
        ks = self.lab.keystone
        if ks is None or not ks.pid:
            return False, "Keystone does not answer: no Keystone is served"
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {"name": "admin", "domain": {"name": "Default"}, "password": ks.admin_password}
                    },
                },
                "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}},
            }
        }
        request = urllib.request.Request(
            f"{ks.url}/auth/tokens",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                token = response.headers.get("X-Subject-Token")
                status: int = response.status
        except urllib.error.HTTPError as e:
            return False, f"no token issued (HTTP {e.code})"
        except (urllib.error.URLError, OSError) as e:
            return False, f"Keystone does not answer: {e}"
        if status != 201 or not token:
            return False, f"no token issued (HTTP {status})"
        return True, f"token issued by Keystone {ks.release}"

    def _finish(self, pod: Pod, ok: bool, message: str) -> None:
        now = datetime.now(UTC).isoformat()
        terminated = {
            "exitCode": 0 if ok else 1,
            "reason": "Completed" if ok else "Error",
            "message": message,
            "startedAt": now,
            "finishedAt": now,
        }
        status = {
            "phase": "Succeeded" if ok else "Failed",
            "conditions": [{"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now}],
            "containerStatuses": [
                {
                    "name": c.name,
                    "image": c.image,
                    "imageID": "",
                    "ready": False,
                    "started": False,
                    "restartCount": 0,
                    "state": {"terminated": terminated},
                }
                for c in pod.spec.containers
            ],
        }
        self._patch_status(pod, status)


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)
