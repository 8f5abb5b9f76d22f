"""Regenerate the Go wrapper modules under lab/k8s/gomod/ (maintainer tool, run on version bumps).

Why wrapper modules: ``go install k8s.io/kubernetes/cmd/...@vX`` and ``go install
go.etcd.io/etcd/server/v3@vX`` refuse to work because those modules' go.mod files carry ``replace``
directives.  A tiny module of our own that *requires* them, pins every staging module with a
``replace`` of its own, and lists the commands in a ``tool`` block builds fine, and its committed
go.sum makes the build reproducible.  ``python -m lab.k8s.gomod`` rewrites go.mod/go.sum; the normal
build (``python -m lab.k8s.build``) only reads them.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from lab.k8s.versions import ETCD_VERSION, GOMOD_DIR, K8S_VERSION, KWOK_VERSION

K8S_TOOLS = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"]


def _download(module: str) -> dict[str, Any]:
    out = subprocess.run(["go", "mod", "download", "-json", module], check=True, capture_output=True, text=True).stdout
    info: dict[str, Any] = json.loads(out)
    return info


def staging_replaces(k8s_version: str = K8S_VERSION) -> list[str]:
    """Module paths that k8s.io/kubernetes replaces with ./staging/src/... (read, never hand-kept)."""
    info = _download(f"k8s.io/kubernetes@{k8s_version}")
    text = Path(info["GoMod"]).read_text()
    return sorted(set(re.findall(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", text, re.M)))


def _write(name: str, body: str) -> Path:
    d = GOMOD_DIR / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "go.mod").write_text(body)
    (d / "go.sum").unlink(missing_ok=True)
    subprocess.run(["go", "mod", "tidy"], cwd=d, check=True)
    return d


def generate() -> None:
    staging_ver = "v0." + K8S_VERSION.split(".", 1)[1]  # v1.36.3 -> v0.36.3
    reps = "\n".join(f"\t{m} => {m} {staging_ver}" for m in staging_replaces())
    tools = "\n".join(f"\tk8s.io/kubernetes/cmd/{t}" for t in K8S_TOOLS)
    _write(
        "kubernetes",
        f"module stackhop.lab/kubernetes\n\ngo 1.26.0\n\ntool (\n{tools}\n)\n\n"
        f"require k8s.io/kubernetes {K8S_VERSION}\n\nreplace (\n{reps}\n)\n",
    )
    _write(
        "etcd",
        "module stackhop.lab/etcd\n\ngo 1.26.0\n\ntool go.etcd.io/etcd/server/v3\n\n"
        f"require go.etcd.io/etcd/server/v3 {ETCD_VERSION}\n",
    )
    _write(
        "kwok",
        "module stackhop.lab/kwok\n\ngo 1.26.0\n\ntool (\n\tsigs.k8s.io/kwok/cmd/kwok\n"
        f"\tsigs.k8s.io/kwok/cmd/kwokctl\n)\n\nrequire sigs.k8s.io/kwok {KWOK_VERSION}\n",
    )


if __name__ == "__main__":
    generate()
