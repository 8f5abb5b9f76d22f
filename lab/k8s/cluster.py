"""Start, stop and poke a kwokctl cluster made of real control-plane binaries.

Why kwokctl: it runs etcd, kube-apiserver, kube-controller-manager, kube-scheduler and the kwok
controller as plain processes (``--runtime binary``), so Deployments really roll, ReplicaSets really
appear and Jobs really fail, while kwok plays the kubelet for fake nodes.  Everything lives under a
project-local workdir (``.lab/k8s``, ``KWOK_WORKDIR``); all components bind 127.0.0.1; the apiserver
gets a random free port.  Pod behaviour comes from ``stages/`` (base set + failure injection).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import yaml

from lab import ports
from lab.k8s.build import build_all, helm_is_warm, is_warm
from lab.k8s.versions import HERE, bin_dir, lab_dir

log = structlog.get_logger(__name__)

STAGES_DIR = HERE / "stages"
# Writes to workloads are audited with their request and response (the fault-injection suite counts
# the worker's side effects from this log, not from the workflow's records); nothing else is logged,
# so the log stays small. Status subresources are left out: controllers write them all the time.
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: RequestResponse
    verbs: [create, update, patch, delete]
    resources:
      - group: apps
        resources: [deployments, deployments/scale, statefulsets, statefulsets/scale, daemonsets]
      - group: batch
        resources: [jobs]
  - level: None
"""


class LabError(RuntimeError):
    """The lab could not be brought to the requested state."""


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago, below the ephemeral range (lab/ports.py)."""
    return ports.free_port()


@dataclass
class KubeLab:
    """One named kwokctl cluster in a project-local workdir."""

    name: str = "stackhop"
    nodes: int = 3
    workdir: Path = field(default_factory=lab_dir)

    @property
    def cluster_dir(self) -> Path:
        return self.workdir / "clusters" / self.name

    @property
    def kubeconfig(self) -> Path:
        return self.cluster_dir / "kubeconfig.yaml"

    @property
    def config_file(self) -> Path:
        return self.workdir / f"{self.name}.kwokctl.yaml"

    @property
    def stamp_file(self) -> Path:
        return self.workdir / f"{self.name}.stamp"

    @property
    def audit_policy(self) -> Path:
        return self.workdir / f"{self.name}.audit-policy.yaml"

    @property
    def audit_log(self) -> Path:
        """kube-apiserver's audit log (JSON lines, see AUDIT_POLICY)."""
        return self.cluster_dir / "logs" / "audit.log"

    @property
    def kubectl(self) -> Path:
        return bin_dir() / "kubectl"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KWOK_WORKDIR"] = str(self.workdir)
        env["PATH"] = f"{bin_dir()}{os.pathsep}{env.get('PATH', '')}"
        env.pop("KUBECONFIG", None)
        return env

    # -- commands -----------------------------------------------------------------------------
    def kwokctl(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        cmd = [str(bin_dir() / "kwokctl"), "--config", str(self.config_file), *args]
        log.debug("kwokctl", args=args)
        res = subprocess.run(cmd, env=self.env(), capture_output=True, text=True, timeout=timeout, check=False)
        if check and res.returncode != 0:
            raise LabError(f"kwokctl {' '.join(args)} failed ({res.returncode}):\n{res.stderr}")
        return res.stdout

    def kubectl_run(
        self, *args: str, timeout: float = 60, check: bool = True, as_user: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the lab's own kubectl against this cluster (used by deploy/ tests and the CLI)."""
        cmd = [str(self.kubectl), "--kubeconfig", str(self.kubeconfig), *args]
        if as_user:
            cmd.insert(1, f"--as={as_user}")
        res = subprocess.run(cmd, env=self.env(), capture_output=True, text=True, timeout=timeout, check=False)
        if check and res.returncode != 0:
            raise LabError(f"kubectl {' '.join(args)} failed ({res.returncode}):\n{res.stderr}")
        return res

    # -- configuration ------------------------------------------------------------------------
    def write_config(self, apiserver_port: int) -> None:
        """kwokctl config: local binaries (nothing is downloaded), 127.0.0.1, our stages."""
        b = bin_dir()
        conf = {
            "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
            "kind": "KwokctlConfiguration",
            "options": {
                "runtime": "binary",
                "bindAddress": "127.0.0.1",
                "kubeApiserverPort": apiserver_port,
                "kubeApiserverBinary": str(b / "kube-apiserver"),
                "kubeControllerManagerBinary": str(b / "kube-controller-manager"),
                "kubeSchedulerBinary": str(b / "kube-scheduler"),
                "kubectlBinary": str(b / "kubectl"),
                "etcdBinary": str(b / "etcd"),
                "kwokControllerBinary": str(b / "kwok"),
                "cacheDir": str(self.workdir / "cache"),
                "kubeAuditPolicy": str(self.audit_policy),
            },
            # One scheduler and one controller manager: no lease to hold. With leader election on,
            # each exits when it cannot renew its lease in time (an apiserver restart on a loaded
            # machine), and nothing restarts it: pods stay unscheduled, rollouts never progress.
            "componentsPatches": [
                {"name": name, "extraArgs": [{"key": "leader-elect", "value": "false"}]}
                for name in ("kube-scheduler", "kube-controller-manager")
            ],
        }
        docs = [yaml.safe_dump(conf, sort_keys=False)]
        for f in ("base.yaml", "stackhop.yaml", "lab-served.yaml"):
            docs.append((STAGES_DIR / f).read_text())
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.audit_policy.write_text(AUDIT_POLICY)
        self.config_file.write_text("\n---\n".join(docs))

    @staticmethod
    def recipe_stamp() -> str:
        """Changes when the stages or the binaries change: a running lab built from an older
        recipe is recreated instead of silently reused."""
        h = hashlib.sha256(str(bin_dir()).encode())
        h.update(AUDIT_POLICY.encode())
        for f in sorted(STAGES_DIR.glob("*.yaml")):
            h.update(f.read_bytes())
        return h.hexdigest()[:16]

    # -- lifecycle ----------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.kubeconfig.is_file() and (self.cluster_dir / "kwok.yaml").is_file()

    def healthy(self) -> bool:
        if not self.exists() or not self.kubectl.is_file():
            return False
        try:
            res = self.kubectl_run("get", "--raw", "/readyz", timeout=10, check=False)
        except subprocess.TimeoutExpired:
            return False
        return res.returncode == 0 and res.stdout.strip() == "ok"

    def up(self, *, wait: str = "3m") -> Path:
        """Create (or reuse a healthy) cluster with N Ready fake nodes; return the kubeconfig."""
        if not (is_warm() and helm_is_warm()):
            build_all()
        current = self.stamp_file.is_file() and self.stamp_file.read_text() == self.recipe_stamp()
        if current and self.healthy():
            log.info("k8s lab already up", kubeconfig=str(self.kubeconfig))
            return self.kubeconfig
        if self.exists():  # stale: stopped processes or a half-created cluster
            self.down()
        t0 = time.monotonic()
        try:
            self._create(wait)
        except LabError as e:
            # Seen on a loaded 2-core machine, twice in a day: the fake nodes never got Ready (then
            # the apiserver refused connections). The error says what kwok did; a fresh cluster
            # came up each time.
            log.warning("k8s lab start failed: creating it again", name=self.name, error=str(e)[-2000:])
            self.down()
            self._create(wait)
        self.stamp_file.write_text(self.recipe_stamp())
        log.info("k8s lab up", seconds=round(time.monotonic() - t0, 1), kubeconfig=str(self.kubeconfig))
        return self.kubeconfig

    def _create(self, wait: str) -> None:
        self.write_config(free_port())
        self.kwokctl(
            "create",
            "cluster",
            "--name",
            self.name,
            "--runtime",
            "binary",
            f"--wait={wait}",
            "--kubeconfig=",
            timeout=400,
        )
        self.scale_nodes(self.nodes)

    def scale_nodes(self, n: int, timeout: float = 120) -> None:
        """N fake nodes with loopback InternalIPs (127.0.0.10, .11, ...).

        kwok's default node IPs (192.0.2.x) would make the apiserver dial off-machine addresses
        whenever a pod log is requested; on loopback the request fails fast and stays local.
        """
        self.kwokctl("scale", "node", "--name", self.name, "--replicas", str(n), "--param", '.nodeIPs = ["127.0.0.10"]')
        try:
            self.kubectl_run(
                "wait", "--for=condition=Ready", "node", "--all", f"--timeout={int(timeout)}s", timeout=timeout + 10
            )
        except LabError as e:  # kwok marks the nodes Ready: say whether it runs and what it last logged
            raise LabError(f"{e}\n{self._kwok_state()}") from None

    def _kwok_state(self) -> str:
        try:
            alive = self._is_component("kwok-controller", self._pid("kwok-controller"))
        except (OSError, ValueError):
            alive = False
        log_file = self.cluster_dir / "logs" / "kwok-controller.log"
        tail = log_file.read_text(errors="replace").splitlines()[-5:] if log_file.is_file() else []
        lines = [f"kwok-controller {'running' if alive else 'NOT running'}; its log ({log_file}) ends:", *tail]
        return "\n".join(line[:300] for line in lines)

    def down(self) -> None:
        """Delete the cluster (processes and its workdir); a no-op when it does not exist."""
        if not self.cluster_dir.exists():
            return
        if not self.config_file.exists():
            self.write_config(0)
        self.drop_stale_pids()  # kwokctl kills what its pid files name
        self.kwokctl("delete", "cluster", "--name", self.name, timeout=120, check=False)
        self.stamp_file.unlink(missing_ok=True)
        self.config_file.unlink(missing_ok=True)
        self.audit_policy.unlink(missing_ok=True)

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "exists": self.exists(),
            "healthy": self.healthy(),
            "kubeconfig": str(self.kubeconfig),
            "binaries": str(bin_dir()),
            "workdir": str(self.workdir),
        }

    # -- fault injection for tests ------------------------------------------------------------
    def _pid(self, component: str) -> int:
        return int((self.cluster_dir / "pids" / f"{component}.pid").read_text().strip())

    def _is_component(self, component: str, pid: int) -> bool:
        """Whether ``pid`` is this cluster's ``component`` (etcd, kube-apiserver, ...): kwokctl starts
        each from the cluster's own bin directory, with flags pointing into the cluster directory."""
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            return False
        return Path(argv[0]).name == component and any(str(self.cluster_dir) in a for a in argv)

    def drop_stale_pids(self) -> list[str]:
        """Remove kwokctl's pid files that no longer name the component they were written for (a
        reboot or a crash: the pid may now be anyone's). kwokctl signals the pids in these files
        on ``delete`` and takes a live one for "running" on ``start``: without this, a reused pid
        could get an unrelated process killed. Returns the components whose file was dropped."""
        dropped = []
        for f in sorted((self.cluster_dir / "pids").glob("*.pid")):
            try:
                pid = int(f.read_text().strip())
            except (OSError, ValueError):
                pid = 0
            if not pid or not self._is_component(f.stem, pid):
                f.unlink(missing_ok=True)
                dropped.append(f.stem)
        return dropped

    def restart_apiserver(self, downtime: float = 3.0, timeout: float = 120, graceful: bool = False) -> None:
        """Stop kube-apiserver, keep it down for ``downtime`` s, and start it again."""
        self.stop_apiserver(graceful=graceful)
        time.sleep(downtime)
        self.start_apiserver(timeout=timeout)

    def stop_apiserver(self, graceful: bool = False) -> None:
        """Stop kube-apiserver (etcd, kwok and the rest keep running).

        Default: SIGKILL, a crash (the harsher test, and fast).  ``graceful``: SIGTERM first, then
        SIGKILL after 5 s (its graceful shutdown can linger with open watches).
        """
        pid = self._pid("kube-apiserver")
        if not self._is_component("kube-apiserver", pid):  # the pid file outlived its process: not ours
            (self.cluster_dir / "pids" / "kube-apiserver.pid").unlink(missing_ok=True)
            return
        os.kill(pid, signal.SIGTERM if graceful else signal.SIGKILL)
        if not _wait_gone(pid, 5):
            os.kill(pid, signal.SIGKILL)
            if not _wait_gone(pid, 10):
                raise LabError(f"kube-apiserver (pid {pid}) does not die")
        # A zombie still answers kill(pid, 0), which kwokctl takes for "running"; our PID 1 may
        # be slow to reap orphans, so drop the pid file: kwokctl then starts a fresh process.
        (self.cluster_dir / "pids" / "kube-apiserver.pid").unlink(missing_ok=True)

    def start_apiserver(self, timeout: float = 120) -> None:
        """Start what is not running and wait until the apiserver is ready: ``kwokctl start cluster``
        starts only components whose pid is not running, so etcd and kwok are left alone; the
        controller manager and scheduler, which exit on losing their leader lease, come back."""
        self.drop_stale_pids()
        self.kwokctl("start", "cluster", "--name", self.name, "--wait=2m", timeout=timeout)
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if time.monotonic() > deadline:
                raise LabError("kube-apiserver did not come back")
            time.sleep(0.2)


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _is_zombie(pid):
            return True
        time.sleep(0.1)
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """Gone or a zombie (its parent, kwokctl, exited long ago: init reaps it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"
