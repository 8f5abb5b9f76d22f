"""The lab's Job executor: plays the kubelet for stackhop's own Jobs, running their commands for real.

kwok runs no containers, so a Job that snapshots, restores or migrates a database would otherwise
"succeed" without doing anything. The kwok stage that completes Job pods leaves out pods labelled
``app.kubernetes.io/managed-by=stackhop`` (lab/k8s/stages/base.yaml); this executor watches those pods
and, for each one that is Running and owned by a Job, runs its container's command on this machine:

* the image picks the tools: ``<repo>/keystone:<release>`` puts that release's cached venv first on
  PATH (keystone-manage of that release), anything else (e.g. the MariaDB client image) uses the
  system's tools;
* volumes become local paths: a Secret's keys are written into a private temporary directory, a
  PersistentVolumeClaim is a directory per claim under the executor's directory (so a snapshot
  Job and the restore Job after it share the file; ``create_claim`` makes the claim the scheduler
  needs, bound to that directory), an emptyDir (or the projected
  service-account token) is an empty temporary directory; every
  mount path (and the termination-message path) in the command is rewritten to its local path;
* the pod's status is then patched to Succeeded or Failed with the exit code, and its
  ``terminated.message`` holds what the container wrote to its termination log, else the
  ``@@stackhop`` marker lines followed by the output's tail (what kube_jobs.logs_tail reads);
* a pod that is deleted while its command runs (a cancelled Job) has its processes killed.

``runs`` records every command started, for tests that count them (a restore ran once).
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from lab.controller import image_tag
from lab.openstack import paths

log = structlog.get_logger(__name__)

MANAGED = "app.kubernetes.io/managed-by=stackhop"
MARKER = "@@stackhop"
MESSAGE_BYTES = 4096  # the kubelet's limit for one container's termination message
Pod = Any  # a V1Pod read from the apiserver (see lab/controller.py)


@dataclass
class Run:
    """One command the executor ran: which pod, which Job, and how it ended (None: still running)."""

    namespace: str
    pod: str
    job: str
    labels: dict[str, str]
    exit_code: int | None = None
    output: str = ""
    killed: bool = False


def termination_message(output: str, written: str = "") -> str:
    """What the container wrote to its termination log, else its marker lines and then the tail of
    its output, within the kubelet's 4 KiB."""
    if written.strip():
        return written.encode()[:MESSAGE_BYTES].decode(errors="ignore")
    lines = output.splitlines()
    markers = [line for line in lines if line.startswith(MARKER + " ")]
    head = "\n".join(markers)
    room = MESSAGE_BYTES - len(head.encode()) - 1
    tail = output.encode()[-room:].decode(errors="ignore") if room > 0 else ""
    return f"{head}\n{tail}".strip("\n")[-MESSAGE_BYTES:]


def tools_path(image: str) -> str:
    """PATH for a container of ``image``: the release's venv first for a Keystone image."""
    tag = image_tag(image)
    name = image.rsplit("/", 1)[-1].split(":", 1)[0]
    system = os.environ.get("PATH", "/usr/bin:/bin")
    if name == "keystone" and tag in paths.KEYSTONE_RELEASES:
        return f"{paths.keystone_venv(tag) / 'bin'}:{system}"
    return system


class JobExecutor:
    """Watches stackhop's Job pods (all namespaces) and runs them; a thread like KeystoneFollower."""

    def __init__(self, kubeconfig: Path, workdir: Path, context: str | None = None) -> None:
        api = config.new_client_from_config(config_file=str(kubeconfig), context=context)
        self.core = client.CoreV1Api(api)
        self.workdir = workdir
        self.runs: list[Run] = []
        self._procs: dict[str, subprocess.Popen[str]] = {}  # pod uid -> its running command
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lab-job-executor", daemon=True)

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> JobExecutor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        with self._lock:
            for proc in self._procs.values():
                _kill(proc)
        if self._thread.is_alive():
            raise RuntimeError("the lab Job executor did not stop within 30 s")

    def __enter__(self) -> JobExecutor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def claim_dir(self, namespace: str, claim: str) -> Path:
        """The local directory standing for a PersistentVolumeClaim."""
        path = self.workdir / "claims" / namespace / claim
        path.mkdir(parents=True, exist_ok=True)
        return path

    def create_claim(self, namespace: str, claim: str) -> Path:
        """A PersistentVolumeClaim the scheduler accepts (bound to a hostPath volume of its own,
        as there is no provisioner in the lab), standing for the directory ``claim_dir``."""
        path = self.claim_dir(namespace, claim)
        pv = f"lab-{namespace}-{claim}"[:253]
        volume: Any = {  # the client takes plain dicts for its models
            "metadata": {"name": pv},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "hostPath": {"path": str(path)},
                "claimRef": {"namespace": namespace, "name": claim},
            },
        }
        self.core.create_persistent_volume(volume)
        pvc: Any = {
            "metadata": {"name": claim},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "volumeName": pv,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
        self.core.create_namespaced_persistent_volume_claim(namespace, pvc)
        return path

    # --- the loop ----------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                w = watch.Watch()
                for ev in w.stream(
                    self.core.list_pod_for_all_namespaces, label_selector=MANAGED, timeout_seconds=2, _request_timeout=5
                ):
                    if self._stop.is_set():
                        w.stop()
                        break
                    self._handle(ev["object"], deleted=ev["type"] == "DELETED")
            except Exception as e:
                log.warning("lab job executor: retrying", error=str(e))
                self._stop.wait(1)

    def _handle(self, pod: Pod, deleted: bool) -> None:
        uid = pod.metadata.uid
        owners = pod.metadata.owner_references or []
        if not any(o.kind == "Job" for o in owners):
            return
        with self._lock:
            if deleted or pod.metadata.deletion_timestamp is not None:
                proc = self._procs.get(uid)
                if proc is not None:
                    log.info("lab job executor: pod deleted, killing its command", pod=pod.metadata.name)
                    _kill(proc)
                return
            if pod.status.phase != "Running" or uid in self._seen:
                return
            self._seen.add(uid)
        threading.Thread(target=self._execute, args=(pod,), name=f"job-{pod.metadata.name}", daemon=True).start()

    # --- running one pod ---------------------------------------------------------------------
    def _execute(self, pod: Pod) -> None:
        ns, name = pod.metadata.namespace, pod.metadata.name
        container = pod.spec.containers[0]
        job = next(o.name for o in pod.metadata.owner_references if o.kind == "Job")
        run = Run(namespace=ns, pod=name, job=job, labels=dict(pod.metadata.labels or {}))
        self.runs.append(run)
        started = datetime.now(UTC).isoformat()
        scratch = Path(tempfile.mkdtemp(prefix=f"{name[:40]}-", dir=self._scratch_root()))
        try:
            mapping = self._volumes(pod, container, scratch)
            term_log = scratch / "termination-log"
            term_log.touch()
            mapping[container.termination_message_path or "/dev/termination-log"] = str(term_log)
            argv = [_rewrite(arg, mapping) for arg in [*(container.command or []), *(container.args or [])]]
            env = {**os.environ, "PATH": tools_path(container.image)}
            env.update({e.name: _rewrite(e.value or "", mapping) for e in container.env or []})
            log.info("lab job executor: running", pod=name, image=container.image)
            proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
                cwd=scratch,
                start_new_session=True,
            )
            with self._lock:
                self._procs[pod.metadata.uid] = proc
            output, _ = proc.communicate()
            with self._lock:
                self._procs.pop(pod.metadata.uid, None)
            run.exit_code, run.output = proc.returncode, output
            run.killed = proc.returncode < 0
            message = termination_message(output, term_log.read_text(errors="replace"))
        except Exception as e:  # a command that cannot start fails its pod, as a bad image would
            run.exit_code, run.output = 128, f"lab job executor: {type(e).__name__}: {e}"
            message = run.output
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        self._log(run)
        if not run.killed:
            self._finish(pod, run.exit_code or 0, message, started)

    def _scratch_root(self) -> Path:
        root = self.workdir / "scratch"
        root.mkdir(parents=True, exist_ok=True)
        return root

    def _log(self, run: Run) -> None:
        path = self.workdir / "logs" / run.namespace / f"{run.pod}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{run.output}\n# exit code {run.exit_code}\n")

    def _volumes(self, pod: Pod, container: Any, scratch: Path) -> dict[str, str]:
        """mountPath -> local path for every mount of the container."""
        local: dict[str, Path] = {}
        for vol in pod.spec.volumes or []:
            if vol.secret is not None:
                local[vol.name] = self._secret(pod.metadata.namespace, vol.secret, scratch / "volumes" / vol.name)
            elif vol.persistent_volume_claim is not None:
                local[vol.name] = self.claim_dir(pod.metadata.namespace, vol.persistent_volume_claim.claim_name)
            elif vol.empty_dir is not None or vol.projected is not None:  # the service account token: unused
                local[vol.name] = scratch / "volumes" / vol.name
                local[vol.name].mkdir(parents=True)
        mapping: dict[str, str] = {}
        for mount in container.volume_mounts or []:
            if mount.name not in local:
                raise RuntimeError(f"volume {mount.name!r} is of a kind the lab cannot provide")
            path = local[mount.name] / mount.sub_path if mount.sub_path else local[mount.name]
            mapping[mount.mount_path.rstrip("/")] = str(path)
        return mapping

    def _secret(self, namespace: str, source: Any, into: Path) -> Path:
        """The Secret's keys (or the listed items) as files in a private directory."""
        secret = self.core.read_namespaced_secret(source.secret_name, namespace)
        data = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
        items = {i.key: i.path for i in source.items} if source.items else {k: k for k in data}
        into.mkdir(parents=True, mode=0o700)
        for key, rel in items.items():
            target = into / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data[key])
            target.chmod(0o600)
        return into

    def _finish(self, pod: Pod, exit_code: int, message: str, started: str) -> None:
        now = datetime.now(UTC).isoformat()
        status = {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now},
            ],
            "containerStatuses": [
                {
                    "name": c.name,
                    "image": c.image,
                    "imageID": "",
                    "ready": False,
                    "started": False,
                    "restartCount": 0,
                    "state": {
                        "terminated": {
                            "exitCode": exit_code,
                            "reason": "Completed" if exit_code == 0 else "Error",
                            "message": message,
                            "startedAt": started,
                            "finishedAt": now,
                        }
                    },
                }
                for c in pod.spec.containers
            ],
        }
        try:
            self.core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, {"status": status})
        except ApiException as e:
            if e.status != 404:  # deleted meanwhile: nothing to report to
                raise


def _rewrite(text: str, mapping: dict[str, str]) -> str:
    """Replace container paths by their local paths, longest first (a mount inside another)."""
    for container_path in sorted(mapping, key=len, reverse=True):
        text = text.replace(container_path, mapping[container_path])
    return text


def _kill(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
