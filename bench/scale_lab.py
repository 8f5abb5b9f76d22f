"""The pieces of bench/scale.py that are not the run itself: the clouds, their plans, and what is
measured from outside the processes (/proc, the kube-apiserver's own /metrics).

Why a cloud is so small: the benchmark asks what one worker carries, so each cloud is the smallest
plan the validator accepts that still rolls real Deployments — one service (barbican: no recipe of
its own, migration ``none``, no database, no checks, no availability probe), one Deployment patched
as a plain object. Its steps are the Upgrade's pre-flight (admission, workloads, ledger) and the
service's roll → rollout. The rollout takes a fixed time because the target image carries kwok's
``slow-ready`` marker (lab/k8s/stages/stackhop.yaml): every new pod turns Ready ``DELAY`` after it
appears, as a real pod would after pulling and starting; the old ones go when the new are Ready.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from lab.k8s.cluster import KubeLab
from model.loading import parse_plan
from model.plan import UpgradePlan

SERVICE = "barbican"
WORKLOAD = "barbican-api"
REPLICAS = 2
DELAY = "30s"  # kwok's slow-ready stage: how long a new pod takes to turn Ready
OLD_IMAGE = "registry.lab/barbican:2025.2"
NEW_IMAGE = "registry.lab/barbican:2026.1-slow-ready"
TICK = os.sysconf("SC_CLK_TCK")


def namespace(run: str, i: int) -> str:
    return f"scale-{run}-{i}"


def manifests(run: str, n: int) -> str:
    """N namespaces, each with one Deployment at the old image. maxSurge 100 %: all new pods start
    at once, so one rollout takes one ``DELAY`` (plus the controllers' reaction time)."""
    docs: list[dict[str, Any]] = []
    for i in range(n):
        ns = namespace(run, i)
        labels = {"app": WORKLOAD}
        docs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        docs.append(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": WORKLOAD, "namespace": ns},
                "spec": {
                    "replicas": REPLICAS,
                    "progressDeadlineSeconds": 600,
                    "strategy": {"rollingUpdate": {"maxSurge": "100%", "maxUnavailable": 0}},
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels, "annotations": {"lab.stackhop.io/delay": DELAY}},
                        "spec": {
                            "terminationGracePeriodSeconds": 0,
                            "containers": [{"name": "app", "image": OLD_IMAGE}],
                        },
                    },
                },
            }
        )
    return yaml.safe_dump_all(docs)


def create_clouds(lab: KubeLab, run: str, n: int, workdir: Path) -> None:
    """Apply the N clouds in one kubectl call and wait until every Deployment is Available."""
    f = workdir / f"clouds-{run}.yaml"
    f.write_text(manifests(run, n))
    lab.kubectl_run("apply", "-f", str(f), timeout=300)
    for i in range(n):
        lab.kubectl_run(
            "rollout", "status", f"deployment/{WORKLOAD}", "-n", namespace(run, i), "--timeout=180s", timeout=200
        )


def cloud_plan(lab: KubeLab, context: str, run: str, i: int) -> UpgradePlan:
    ns = namespace(run, i)
    doc = {
        "apiVersion": "stackhop/v1alpha1",
        "kind": "UpgradePlan",
        "metadata": {"name": ns},
        "cloud": {
            "name": ns,  # the per-cloud workflow id (upgrade/<name>) is the lock: one per cloud
            "kubernetes": {"context": context, "namespace": ns, "kubeconfig": str(lab.kubeconfig)},
            "openstack": {"cloud": "unused"},
        },
        "release": {"from": "2025.2", "to": "2026.1"},
        "policy": {"probe": False, "rollout_timeout": "5m", "on_failure": "fail"},
        "services": [
            {
                "name": SERVICE,
                "workloads": [{"kind": "Deployment", "name": WORKLOAD, "container": "app", "image": NEW_IMAGE}],
            }
        ],
    }
    return parse_plan(yaml.safe_dump(doc), f"{ns}.yaml")


# One controller manager serves all N clouds here, where each cloud would have its own cluster (and
# its own controller manager): at its default client rate (20 requests/s, burst 30) and 5 deployment
# syncs at a time, 50 rollouts at once queue in the lab's controller, not in stackhop. Raised so the
# lab stays out of the figure; ``--lab-defaults`` keeps kube-controller-manager's defaults.
CONTROLLER_ARGS = {
    "kube-api-qps": "500",
    "kube-api-burst": "1000",
    "concurrent-deployment-syncs": "50",
    "concurrent-replicaset-syncs": "50",
}


@dataclass
class ScaleLab(KubeLab):
    """The Kubernetes lab with kube-controller-manager sized for N clouds in one cluster."""

    controller_args: dict[str, str] = field(default_factory=lambda: dict(CONTROLLER_ARGS))

    def write_config(self, apiserver_port: int) -> None:
        super().write_config(apiserver_port)
        head, rest = self.config_file.read_text().split("\n---\n", 1)
        conf = yaml.safe_load(head)
        for patch in conf["componentsPatches"]:
            if patch["name"] == "kube-controller-manager":
                patch["extraArgs"] += [{"key": k, "value": v} for k, v in self.controller_args.items()]
        self.config_file.write_text(yaml.safe_dump(conf, sort_keys=False) + "\n---\n" + rest)


# --- processes -------------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU of the process (all its threads), from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def child_named(name: str, parent: int | None = None) -> int:
    """The pid of this process's child called ``name`` (the dev server the SDK started)."""
    parent = parent or os.getpid()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        if comm == name[:15] and int(stat.rsplit(")", 1)[1].split()[1]) == parent:
            return int(d.name)
    raise RuntimeError(f"no child process {name!r} of {parent}")


@dataclass
class Sampler:
    """CPU seconds between ``start`` and ``stop`` and peak RSS in between (sampled every 0.2 s;
    VmHWM would be the peak since the process started, across every phase) for named processes."""

    pids: dict[str, int]
    cpu0: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    peak: dict[str, float] = field(default_factory=dict)
    busiest: dict[str, float] = field(default_factory=dict)  # most cores used over any 1 s window
    _cpu_at: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self.cpu0 = {k: cpu_seconds(p) for k, p in self.pids.items()}
        self.peak = {k: rss_mib(p) for k, p in self.pids.items()}
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def _sample(self) -> None:
        now = time.monotonic()
        for k, p in self.pids.items():
            with contextlib.suppress(OSError):
                self.peak[k] = max(self.peak[k], rss_mib(p))
                series = self._cpu_at.setdefault(k, [])
                series.append((now, cpu_seconds(p)))
                old = next((x for x in reversed(series) if now - x[0] >= 1.0), None)
                if old is not None:
                    self.busiest[k] = max(self.busiest.get(k, 0.0), (series[-1][1] - old[1]) / (now - old[0]))

    def stop(self) -> Sampler:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self._sample()
        self.cpu = {k: cpu_seconds(p) - self.cpu0[k] for k, p in self.pids.items()}
        return self


# --- kube-apiserver /metrics ---------------------------------------------------------------------
METRIC = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\}\s+(?P<value>\S+)$")
LABEL = re.compile(r'(\w+)="([^"]*)"')


def request_counts(lab: KubeLab) -> Counter[tuple[str, str]]:
    """apiserver_request_total summed by (verb, resource[/subresource]), from the apiserver itself."""
    text = lab.kubectl_run("get", "--raw", "/metrics", timeout=60).stdout
    counts: Counter[tuple[str, str]] = Counter()
    for line in text.splitlines():
        m = METRIC.match(line)
        if not m:
            continue
        labels = dict(LABEL.findall(m.group("labels")))
        resource = labels.get("resource") or "(non-resource)"
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        counts[(labels.get("verb", "?"), resource)] += int(float(m.group("value")))
    return counts


def new_pods_ready(lab: KubeLab, run: str) -> dict[str, float]:
    """Per namespace of the run: when the last pod at the new image turned Ready (epoch seconds, the
    kubelet's — kwok's — condition time, 1 s resolution): the rollout as the cluster saw it."""
    pods = json.loads(lab.kubectl_run("get", "pods", "-A", "-o", "json", timeout=120).stdout)["items"]
    last: dict[str, float] = {}
    for pod in pods:
        ns = pod["metadata"]["namespace"]
        if not ns.startswith(f"scale-{run}-") or pod["spec"]["containers"][0]["image"] != NEW_IMAGE:
            continue
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond["type"] == "Ready" and cond["status"] == "True":
                last[ns] = max(last.get(ns, 0.0), epoch(cond["lastTransitionTime"]))
    return last


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def deployments_complete(lab: KubeLab, run: str) -> dict[str, float]:
    """Per namespace of the run: when the deployment controller declared the rollout complete (its
    Progressing condition's reason NewReplicaSetAvailable, last updated then; 1 s resolution)."""
    deps = json.loads(lab.kubectl_run("get", "deployments", "-A", "-o", "json", timeout=120).stdout)["items"]
    done: dict[str, float] = {}
    for dep in deps:
        ns = dep["metadata"]["namespace"]
        for cond in (dep.get("status") or {}).get("conditions") or []:
            if ns.startswith(f"scale-{run}-") and cond.get("reason") == "NewReplicaSetAvailable":
                done[ns] = epoch(cond["lastUpdateTime"])
    return done
