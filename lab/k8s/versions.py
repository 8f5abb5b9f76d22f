"""Pinned versions of the Kubernetes lab and where its build cache lives.

The cache directory is keyed by all three versions so a bump never reuses stale binaries.
"""

from __future__ import annotations

import os
from pathlib import Path

K8S_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.8.0"
# Helm 4: Helm 3 is out of support since November 2026 (bug fixes ended in July, security fixes
# in November). Helm 4 applies server-side for releases it installs, so a field another manager
# changed conflicts on the next upgrade instead of being silently merged: one more reason stackhop
# changes the release's values and never the objects.
HELM_VERSION = "v4.3.1"

HERE = Path(__file__).resolve().parent
GOMOD_DIR = HERE / "gomod"
REPO_ROOT = HERE.parent.parent

BINARIES = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "etcd",
    "kwok",
    "kwokctl",
]


def cache_root() -> Path:
    """~/.cache/stackhop-lab (XDG_CACHE_HOME honoured; STACKHOP_LAB_CACHE overrides)."""
    if env := os.environ.get("STACKHOP_LAB_CACHE"):
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "stackhop-lab"


def bin_dir() -> Path:
    return cache_root() / f"k8s-{K8S_VERSION}-etcd-{ETCD_VERSION}-kwok-{KWOK_VERSION}" / "bin"


def helm_bin() -> Path:
    """The lab's helm binary, cached by version like the Kubernetes binaries (lab.k8s.build)."""
    return cache_root() / f"helm-{HELM_VERSION}" / "bin" / "helm"


def lab_dir() -> Path:
    """Project-local runtime state (.lab/k8s), overridable with STACKHOP_LAB_DIR."""
    base = Path(os.environ.get("STACKHOP_LAB_DIR") or REPO_ROOT / ".lab")
    return base / "k8s"
