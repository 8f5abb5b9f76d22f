"""Helm against the labs: the lab's helm binary with a lab kubeconfig and context.

Tests and the demo use these helpers to install the lab's charts and to read what Helm recorded
(``helm history``, ``helm get values``); stackhop itself runs helm through its activities
(activities/helm.py), never through this module.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.k8s.versions import REPO_ROOT, helm_bin

CHARTS = REPO_ROOT / "lab" / "charts"
KEYSTONE_OLD = "2025.2.0"  # openstack-helm chart versions: Keystone 28 (2025.2) and 29 (2026.1)
KEYSTONE_NEW = "2026.1.0"
LAB_VALUES = REPO_ROOT / "examples" / "lab-keystone-values.yaml"


def keystone_chart(version: str = KEYSTONE_OLD) -> Path:
    return CHARTS / f"keystone-{version}"


@dataclass
class Helm:
    """``helm`` with ``--kubeconfig``/``--kube-context``/``--namespace`` of one lab target."""

    kubeconfig: Path
    namespace: str
    context: str | None = None
    binary: Path | None = None

    def args(self) -> list[str]:
        out = [str(self.binary or helm_bin()), "--kubeconfig", str(self.kubeconfig), "--namespace", self.namespace]
        return out + (["--kube-context", self.context] if self.context else [])

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([*self.args(), *args], capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise RuntimeError(f"helm {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
        return res

    def install(
        self,
        release: str,
        chart: Path | str,
        values: list[Path] | None = None,
        set_values: dict[str, str] | None = None,
        wait: bool = True,
        timeout: str = "120s",
    ) -> None:
        """``helm install`` (Helm 4: server-side apply; ``--wait=watcher`` waits on kstatus)."""
        self.run(*_with(["install", release, str(chart)], values, set_values, wait, timeout))

    def upgrade(
        self,
        release: str,
        chart: Path | str,
        values: list[Path] | None = None,
        set_values: dict[str, str] | None = None,
        wait: bool = True,
        timeout: str = "120s",
    ) -> None:
        """``helm upgrade`` as an operator runs it by hand (the release's values reused, then these)."""
        args = ["upgrade", release, str(chart), "--reset-then-reuse-values"]
        self.run(*_with(args, values, set_values, wait, timeout))

    def uninstall(self, release: str, wait: bool = True) -> None:
        args = ["uninstall", release, "--ignore-not-found"]
        self.run(*([*args, "--wait"] if wait else args))

    def history(self, release: str) -> list[dict[str, Any]]:
        """``helm history -o json``: [{revision, status, chart, app_version, description, updated}]."""
        res = self.run("history", release, "-o", "json", check=False)
        if res.returncode != 0:
            if "not found" in res.stderr:
                return []
            raise RuntimeError(f"helm history {release} failed: {res.stderr.strip()}")
        out: list[dict[str, Any]] = json.loads(res.stdout or "[]")
        return out

    def get_values(self, release: str, revision: int | None = None, all_values: bool = False) -> dict[str, Any]:
        """The user-supplied values of the release (``--all``: merged with the chart's defaults)."""
        args = ["get", "values", release, "-o", "json"]
        if revision is not None:
            args += ["--revision", str(revision)]
        if all_values:
            args.append("--all")
        out: dict[str, Any] | None = json.loads(self.run(*args).stdout or "null")
        return out or {}

    def test(self, release: str, timeout: str = "60s") -> subprocess.CompletedProcess[str]:
        """``helm test`` (the lab controller runs the test pod); the result, not raised."""
        return self.run("test", release, "--timeout", timeout, check=False, timeout=120)


def template(chart: Path | str, release: str = "test", values: list[Path] | None = None, *sets: str) -> str:
    """``helm template`` (no cluster): the rendered manifests."""
    args = [str(helm_bin()), "template", release, str(chart)]
    for v in values or []:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    res = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise RuntimeError(f"helm template {chart} failed: {res.stderr.strip()}")
    return res.stdout


def lint(chart: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm_bin()), "lint", "--strict", str(chart)], capture_output=True, text=True, timeout=60)


def _with(
    args: list[str], values: list[Path] | None, set_values: dict[str, str] | None, wait: bool, timeout: str
) -> list[str]:
    """A helm command line with its values files, --set pairs and wait."""
    for v in values or []:
        args += ["-f", str(v)]
    for k, val in (set_values or {}).items():
        args += ["--set", f"{k}={val}"]
    return [*args, "--wait=watcher", "--timeout", timeout] if wait else args
