"""The cloud lab's controller: it plays the kubelet for the pods of the cloud's Helm releases.

In the Kubernetes lab the pods are kwok's; the OpenStack programs are real processes of the cloud lab
(lab/openstack/cloud.py). Pods labelled ``lab.stackhop.io/served-by: controller`` are left
Running-but-not-Ready by kwok's ``stackhop-lab-served`` stage; for each such pod of a service of the
cloud, this controller starts the pod's program — ``CloudLab.start_pod(service, workload, release,
pod, host=<the pod's node>)``, its own process on its own loopback port — and marks the pod Ready only
once ``CloudLab.pod_ready(pod)`` says so (an API answers through its port, nova-compute's service
record is up...). The cloud's proxy routes a service's stable URL to its ready API pods only, so a
Deployment's rolling update looks to clients as one in a real cluster: the new pod serves before
the old one is deleted, and a deleted (or terminating) pod is stopped with ``stop_pod`` (the proxy
stops routing to it first).

What a pod runs is read from the pod, as a kubelet reads it:
- the service and workload from the openstack-helm labels: ``application`` (``nova``) and
  ``<application>-<component>`` (``nova-api-osapi``, ``nova-compute``), the names of the charts'
  Deployments and DaemonSets;
- the release from the image tag: ``…/nova:2025.2-ubuntu_noble`` → ``2025.2`` (a service's PyPI
  version as the tag, ``…/keystone:28.1.0``, names its release too);
- the host from ``spec.nodeName`` (nova-compute's ``host``).

A program that exits makes its pod unready, its ``restartCount`` grows and it is started again after
a back-off (CrashLoopBackOff), as a kubelet restarts a container. Releases in ``crashing`` (``2026.1``,
or one service's: ``nova:2026.1``, or one service's on one node: ``nova@<node>:2026.1``) are never
started: their pods never become Ready (a crash-looping image; the rollout stalls, or that node's new
pod stays unready while the other nodes' start).

Deletion is held as a kubelet holds it: a pod whose program the controller started keeps the finalizer
``lab.stackhop.io/serving`` until that program has stopped, so the pod stays Terminating meanwhile
(kwok alone deletes a pod at once). A rollout that waits for its old pods to be gone then ends only
once the old programs stopped: an old nova-scheduler still stopping took a request from the queue
once, after the rollout had ended, and never answered it. Every hold is released when the controller
stops.

When a pod the controller has seen is deleted (the kubelet's "the pod is going"), ``on_deleted(pod,
process)`` runs before its process is stopped. The lab's detached controller records there, for a
nova-compute pod, which servers nova places on its node at that moment (``replacement_recorder``: one
JSON line per replacement in ``<cloud>/replacements.jsonl``, ``{at, pod, node, release, servers}``): the
proof that a drained node was empty when its compute was replaced — the fake virt driver forgets its
servers on a restart, so the servers' state afterwards proves nothing.

The controller watches the namespace's pods (a list, then a watch from its resourceVersion, relisted
when the watch expires); between events it only looks at its own processes. Run it in a thread
(``CloudController(...).start()``) or as the lab's detached process: ``python -m lab.cloud_controller``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import structlog
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from lab.controller import FINALIZER, LABEL, Pod, hold_pod, image_tag, is_ready, release_pod
from lab.openstack import procs
from lab.openstack.services.base import RELEASES

log = structlog.get_logger(__name__)

SELECTOR = f"{LABEL}=controller"
REPLACEMENTS = "replacements.jsonl"  # in the cloud's directory: one line per nova-compute pod replaced
BACKOFF_MAX = 30.0  # seconds between two restarts of a crash-looping program, at most (kubelet: 300)


class PodCloud(Protocol):
    """What the controller needs of the cloud lab (lab/openstack/cloud.py's CloudLab)."""

    @property
    def pods(self) -> Mapping[str, Any]:
        """pod name -> its process (PodProc: service, workload, release, host, port, pid)."""
        ...

    def start_pod(self, service: str, workload: str, release: str, pod: str, host: str) -> Any: ...

    def stop_pod(self, pod: str) -> None: ...

    def pod_ready(self, pod: str) -> bool: ...


def release_of(image: str, versions: Mapping[str, str] | None = None) -> str | None:
    """The OpenStack release an image tag names: ``2025.2-ubuntu_noble`` and ``2025.2`` → ``2025.2``;
    a service's version (``28.1.0`` with keystone's ``versions``) → its release; else None."""
    tag = image_tag(image)
    for release in RELEASES:
        if re.fullmatch(rf"{re.escape(release)}(?:[^0-9].*)?", tag):
            return release
    for release, version in (versions or {}).items():
        if tag == version:
            return release
    return None


def workload_of(pod: Pod) -> tuple[str, str] | None:
    """(service, workload) from the openstack-helm labels ``application`` and ``component``."""
    labels = pod.metadata.labels or {}
    application, component = labels.get("application"), labels.get("component")
    if not application or not component:
        return None
    return application, f"{application}-{component}"


@dataclass
class Container:
    """What the controller knows of one pod's program, as a kubelet knows its container."""

    restarts: int = 0
    last_exit: int | None = None  # exit code of the last run that ended
    finished_at: str = ""
    retry_at: float = 0.0  # monotonic time before which a crashed program is not started again
    reported: tuple[bool, int] | None = None  # (ready, restarts) last written to the pod's status


@dataclass
class CloudController:
    cloud: PodCloud
    kubeconfig: Path
    namespace: str
    services: Sequence[str]
    context: str | None = None
    crashing: frozenset[str] = frozenset()
    versions: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # service -> release -> version
    # the workloads a service's release runs (its programs); None: a pod's workload is taken as it is
    programs: Callable[[str, str], Sequence[str]] | None = None
    tick: float = 0.2  # how often the controller looks at its processes (not at the apiserver)
    # called with (pod, its process) when a pod it has seen is deleted, before the process is stopped
    on_deleted: Callable[[str, Any], None] | None = None

    def __post_init__(self) -> None:
        api = config.new_client_from_config(config_file=str(self.kubeconfig), context=self.context)
        self.core = client.CoreV1Api(api)
        self._pods: dict[str, Pod] = {}  # the namespace's served-by pods, kept by the watch
        self._containers: dict[str, Container] = {}
        self._events: queue.Queue[None] = queue.Queue()
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._watch: watch.Watch | None = None
        self._lock = threading.Lock()
        self._watcher = threading.Thread(target=self._watch_loop, name="cloud-controller-watch", daemon=True)
        self._thread = threading.Thread(target=self.run, name="cloud-controller", daemon=True)
        self._seen: set[str] = set()  # every pod name the watch has shown (a process of one is the controller's)
        self._released: set[str] = set()  # uids of terminating pods released (until the watch shows it)
        self.started: list[tuple[str, str]] = []  # (pod, release) in order: for tests and reports
        self.stopped: list[str] = []

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> CloudController:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._events.put(None)
        if self._watch is not None:
            self._watch.stop()  # closes the watch's connection: the watcher ends now, not at its timeout
        if self._thread.is_alive():
            self._thread.join(timeout=30)
            if self._thread.is_alive():
                raise RuntimeError("the cloud controller did not stop within 30 s")
        # nobody plays the kubelet any more: every held pod may go
        listed: Any = self.core.list_namespaced_pod(self.namespace, label_selector=SELECTOR)
        for pod in listed.items:
            release_pod(self.core, self.namespace, pod)

    def __enter__(self) -> CloudController:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run(self) -> None:
        """Reconcile on every pod event, and every ``tick`` for the processes, until stopped."""
        self._watcher.start()
        while not self._stop.is_set():
            with contextlib.suppress(queue.Empty):
                self._events.get(timeout=self.tick)
            while not self._events.empty():  # a burst of events: one reconcile
                self._events.get_nowait()
            if self._stop.is_set() or not self._synced.is_set():
                continue
            try:
                self.reconcile()
            except Exception as e:
                log.warning("cloud controller: reconcile failed, retrying", error=repr(e))
                self._stop.wait(1)
        self._watcher.join(timeout=10)

    # --- the pods, from a watch ----------------------------------------------------------------
    def _watch_loop(self) -> None:
        while not self._stop.is_set():
            try:
                listed: Any = self.core.list_namespaced_pod(self.namespace, label_selector=SELECTOR)
                with self._lock:
                    self._pods = {p.metadata.name: p for p in listed.items}
                self._synced.set()
                self._events.put(None)
                version = listed.metadata.resource_version
                w = self._watch = watch.Watch()
                if self._stop.is_set():
                    return
                for event in w.stream(
                    self.core.list_namespaced_pod,
                    self.namespace,
                    label_selector=SELECTOR,
                    resource_version=version,
                    timeout_seconds=60,
                    _request_timeout=90,
                ):
                    if event["type"] == "ERROR":
                        break  # e.g. 410 Gone: the resourceVersion expired, list again
                    pod = event["object"]
                    with self._lock:
                        if event["type"] == "DELETED":
                            self._pods.pop(pod.metadata.name, None)
                        else:
                            self._pods[pod.metadata.name] = pod
                    self._events.put(None)
                    if self._stop.is_set():
                        w.stop()
                        break
            except Exception as e:
                if self._stop.is_set():
                    return
                log.warning("cloud controller: watch failed, listing again", error=repr(e))
                self._stop.wait(1)

    # --- reconcile ---------------------------------------------------------------------------
    def reconcile(self) -> None:
        """Bring the processes and the pods' Ready conditions in line with the pods."""
        with self._lock:
            pods = dict(self._pods)
            self._seen |= set(pods)
        live = {n: p for n, p in pods.items() if p.metadata.deletion_timestamp is None}
        for name, proc in list(self.cloud.pods.items()):
            if name not in live and self._stale(name, proc, live):
                if name in self._seen and self.on_deleted is not None:
                    try:
                        self.on_deleted(name, proc)
                    except Exception as e:  # a record that fails never keeps a deleted pod running
                        log.warning("cloud controller: on_deleted failed", pod=name, error=repr(e))
                self._stop_pod(name)  # deleted or terminating: out of the proxy, then stopped
        for name, pod in pods.items():  # terminating and its program stopped: the pod may go
            held = FINALIZER in (pod.metadata.finalizers or []) and pod.metadata.uid not in self._released
            if held and name not in live and name not in self.cloud.pods:
                release_pod(self.core, self.namespace, pod)
                self._released.add(pod.metadata.uid)
        self._released &= {p.metadata.uid for p in pods.values()}
        for name in [n for n in self._containers if n not in live]:
            del self._containers[name]
        for name, pod in sorted(live.items(), key=lambda kv: kv[1].metadata.creation_timestamp):
            if self._stop.is_set():
                return
            if pod.status.phase != "Running":
                continue
            what = workload_of(pod)
            if what is None or what[0] not in self.services:
                continue
            self._reconcile_pod(pod, what[0], what[1], self.cloud.pods.get(name))

    def _stale(self, name: str, proc: Any, live: Mapping[str, Pod]) -> bool:
        """Whether a process no live pod stands for is to be stopped: one of a pod this controller has
        seen, at once; any other process of a service it serves (the cloud's own Keystone of
        ``up``, a pod deleted while no controller ran) once a Ready pod serves its workload — a
        hand-over, so the service never goes unserved."""
        if name in self._seen:
            return True
        service, workload = getattr(proc, "service", None), getattr(proc, "workload", None)
        if service not in self.services:
            return False
        release = getattr(proc, "release", "")
        for pod in live.values():
            what = workload_of(pod)
            if what and what[0] == service and is_ready(pod) and self._workload(service, what[1], release) == workload:
                return True
        return False

    def _workload(self, service: str, workload: str, release: str) -> str:
        """The program a chart's workload runs: the one named so, else the one whose name it
        extends (openstack-helm's ``nova-api-osapi`` runs the ``nova-api`` program)."""
        if self.programs is None:
            return workload
        names = list(self.programs(service, release))
        if workload in names:
            return workload
        extended = sorted((n for n in names if workload.startswith(n)), key=len, reverse=True)
        if not extended:
            raise KeyError(f"{service} {release} runs no program for the workload {workload!r} (it has {names})")
        return extended[0]

    def _reconcile_pod(self, pod: Pod, service: str, workload: str, proc: Any) -> None:
        name = pod.metadata.name
        state = self._containers.setdefault(name, Container())
        exit_code = exited(proc) if proc is not None else None
        if exit_code is not None:
            # the program exited: the pod is unready, the container restarts after a back-off
            state.last_exit = exit_code
            state.finished_at = now()
            state.restarts += 1
            state.retry_at = time.monotonic() + min(BACKOFF_MAX, 2.0 ** (state.restarts - 1))
            log.warning("cloud controller: program exited", pod=name, exit=state.last_exit, restarts=state.restarts)
            self._stop_pod(name)
            proc = None
        if proc is None:
            release = release_of(pod.spec.containers[0].image, self.versions.get(service))
            per_node = any(o.kind == "DaemonSet" for o in pod.metadata.owner_references or [])
            if release is None or self.crashes(service, pod.spec.node_name or "", release, per_node):
                self._report(pod, state, ready=False, waiting=None if release is None else "CrashLoopBackOff")
                return  # this image never answers: the pod stays unready, the rollout stalls
            if time.monotonic() < state.retry_at:
                self._report(pod, state, ready=False, waiting="CrashLoopBackOff")
                return
            program = self._workload(service, workload, release)
            hold_pod(self.core, self.namespace, pod)
            log.info("cloud controller: starting", pod=name, service=service, workload=program, release=release)
            self.cloud.start_pod(service, program, release, name, host=pod.spec.node_name)
            self.started.append((name, release))
        ready = self.cloud.pod_ready(name) if proc is None or not is_ready(pod) else True
        self._report(pod, state, ready=ready)

    def crashes(self, service: str, node: str, release: str, per_node: bool = True) -> bool:
        return crashes(self.crashing, service, node, release, per_node)

    def _stop_pod(self, name: str) -> None:
        log.info("cloud controller: stopping", pod=name)
        self.cloud.stop_pod(name)
        self.stopped.append(name)

    # --- the pod's status, as a kubelet writes it ------------------------------------------------
    def _report(self, pod: Pod, state: Container, ready: bool, waiting: str | None = None) -> None:
        if (ready, state.restarts) == state.reported and is_ready(pod) == ready:
            return
        stamp = now()
        status = "True" if ready else "False"
        conditions = [
            {
                "type": t,
                "status": status,
                "lastTransitionTime": stamp,
                **({} if ready else {"reason": "ContainersNotReady"}),
            }
            for t in ("Ready", "ContainersReady")
        ]
        last = (
            {
                "terminated": {
                    "exitCode": state.last_exit,
                    "reason": "Error" if state.last_exit else "Completed",
                    "finishedAt": state.finished_at,
                }
            }
            if state.last_exit is not None
            else {}
        )
        current = {"waiting": {"reason": waiting}} if waiting else {"running": {"startedAt": stamp}}
        containers = [
            {
                "name": c.name,
                "image": c.image,
                "imageID": "",
                "ready": ready,
                "started": waiting is None,
                "restartCount": state.restarts,
                "state": current,
                **({"lastState": last} if last else {}),
            }
            for c in pod.spec.containers
        ]
        try:
            self.core.patch_namespaced_pod_status(
                pod.metadata.name,
                self.namespace,
                {"status": {"conditions": conditions, "containerStatuses": containers}},
            )
        except ApiException as e:
            if e.status != 404:
                raise
            return
        state.reported = (ready, state.restarts)
        if ready:
            log.info("cloud controller: pod ready", pod=pod.metadata.name)


def exited(proc: Any) -> int | None:
    """None while a pod's program runs; once it has ended, its exit code (-N: killed by signal N;
    -1 when it was not this process's child, e.g. started by an earlier controller, and its code is lost)."""
    pid = getattr(proc, "pid", None)
    child = procs._children.get(pid) if pid else None
    if child is not None:
        return child.poll()
    return None if procs.alive(pid) else -1


def now() -> str:
    return datetime.now(UTC).isoformat()


# --- what a replaced nova-compute pod left on its node ---------------------------------------------
class ServersOn(Protocol):
    def servers_on(self, host: str) -> list[str]: ...


def replacement_recorder(cloud: ServersOn, path: Path) -> Callable[[str, Any], None]:
    """``on_deleted`` for the lab: for a nova-compute pod, one JSON line appended to ``path`` —
    ``{"at", "pod", "node", "release", "servers"}``, the servers nova places on the pod's node (the
    cell database's instances with host = the node) at the moment the pod's process is to stop."""

    def record(pod: str, proc: Any) -> None:
        if getattr(proc, "workload", "") != "nova-compute":
            return
        node = str(getattr(proc, "host", ""))
        entry = {
            "at": now(),
            "pod": pod,
            "node": node,
            "release": getattr(proc, "release", ""),
            "servers": cloud.servers_on(node),
        }
        with open(path, "a") as out:
            out.write(json.dumps(entry) + "\n")
        log.info("cloud controller: compute replaced", pod=pod, node=node, servers=len(entry["servers"]))

    return record


def read_replacements(path: Path) -> list[dict[str, Any]]:
    """The records ``replacement_recorder`` wrote, oldest first ([] when none)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def crashes(crashing: Iterable[str], service: str, node: str, release: str, per_node: bool) -> bool:
    """Whether a pod of ``service`` at ``release`` on ``node`` is never started (``crashing``).
    A node's entry (``nova@<node>:2026.1``) is for its per-node pods (``per_node``: a DaemonSet's,
    nova-compute): a control plane pod the scheduler put on that node starts as anywhere else."""
    entries = {release, f"{service}:{release}"} | ({f"{service}@{node}:{release}"} if per_node else set())
    return bool(entries & set(crashing))


def node_crashing(node: str, release: str = "2026.1", service: str = "nova") -> str:
    """The ``crashing`` entry that keeps one node's per-node (DaemonSet) pods of ``service`` at
    ``release`` from ever starting (``nova@<node>:2026.1``): that node's new compute pod never becomes
    Ready; the service's other pods on that node start."""
    return f"{service}@{node}:{release}"


# --- the lab's detached process -------------------------------------------------------------------
def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.cloud_controller", description=__doc__.split("\n")[0])
    parser.add_argument("--cloud", required=True, type=Path, help="the cloud lab's directory (CloudLab base)")
    parser.add_argument("--kubeconfig", required=True, type=Path)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--context")
    parser.add_argument("--services", required=True, help="comma-separated: the cloud's services")
    parser.add_argument(
        "--crashing",
        default="",
        help="comma-separated releases (2026.1), service:release (nova:2026.1) or service@node:release"
        " (nova@lab-node-1:2026.1) whose pods never become ready",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    from lab.openstack.cloud import CloudLab, service_lab

    cloud = CloudLab.load(args.cloud)
    services = [s for s in args.services.split(",") if s]
    controller = CloudController(
        cloud,
        args.kubeconfig,
        args.namespace,
        services,
        context=args.context,
        crashing=frozenset(r for r in args.crashing.split(",") if r),
        versions={s: dict(service_lab(s).versions) for s in services},
        programs=lambda service, release: [p.workload for p in service_lab(service).programs(release)],
        on_deleted=replacement_recorder(cloud, args.cloud / REPLACEMENTS),
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    controller.start()
    log.info("cloud controller running", pid=os.getpid(), namespace=args.namespace, services=services)
    stop.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
