"""Build the Kubernetes lab binaries and helm from the Go module proxy, once (``python -m lab.k8s.build``).

Idempotent: when every binary is present in the version-keyed cache (and the stamp matches the
wrapper modules' go.sum), it does nothing but print the cache path.  Otherwise it builds the three
wrapper modules in lab/k8s/gomod/ (kubernetes, etcd, kwok; helm into its own cache directory,
keyed by HELM_VERSION, with its own stamp) with ``go build`` into a temporary
directory and moves the results in, so an interrupted build never leaves a half-written binary
that a later run would trust.  Needs only ``go`` (>= the go line of the wrapper go.mod files) and
network access to the Go module proxy.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lab.k8s.versions import BINARIES, GOMOD_DIR, HELM_VERSION, K8S_VERSION, KWOK_VERSION, bin_dir, helm_bin

_STAMP = ".stamp"


def _k8s_ldflags() -> str:
    major, minor = K8S_VERSION.lstrip("v").split(".")[:2]
    out = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        out += [
            f"-X {pkg}.gitVersion={K8S_VERSION}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return " ".join(out)


def _kwok_ldflags() -> str:
    return (
        f"-s -w -X sigs.k8s.io/kwok/pkg/consts.Version={KWOK_VERSION.lstrip('v')}"
        f" -X sigs.k8s.io/kwok/pkg/consts.KubeVersion={K8S_VERSION.lstrip('v')}"
    )


# (wrapper module dir, ldflags, packages); the binary is named after the package (see _out_name)
_GROUPS = [
    (
        "kubernetes",
        _k8s_ldflags,
        [
            f"k8s.io/kubernetes/cmd/{c}"
            for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
        ],
    ),
    ("etcd", lambda: "-s -w", ["go.etcd.io/etcd/server/v3"]),
    ("kwok", _kwok_ldflags, ["sigs.k8s.io/kwok/cmd/kwok", "sigs.k8s.io/kwok/cmd/kwokctl"]),
]


def _out_name(pkg: str) -> str:
    """Binary name in the cache: go names go.etcd.io/etcd/server/v3 "server"; we call it etcd."""
    return "etcd" if pkg.startswith("go.etcd.io/") else Path(pkg).name


def _stamp() -> str:
    """Changes whenever a wrapper module's pins change, forcing a rebuild."""
    h = hashlib.sha256()
    for name, _, _ in _GROUPS:
        for f in ("go.mod", "go.sum"):
            h.update((GOMOD_DIR / name / f).read_bytes())
    return h.hexdigest()


def is_warm() -> bool:
    d = bin_dir()
    stamp = d / _STAMP
    return all((d / b).is_file() for b in BINARIES) and stamp.is_file() and stamp.read_text().strip() == _stamp()


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(CGO_ENABLED="0", GOTOOLCHAIN=env.get("GOTOOLCHAIN", "local"))
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -mod=readonly -trimpath -buildvcs=false").strip()
    return env


def build(*, force: bool = False, jobs: int = 2) -> Path:
    """Build (or reuse) all lab binaries; return the bin directory."""
    dest = bin_dir()
    if not force and is_warm():
        return dest
    if shutil.which("go") is None:
        sys.exit("lab.k8s.build: `go` is not on PATH (need Go >= 1.26 to build the k8s lab)")
    dest.mkdir(parents=True, exist_ok=True)
    stamp = dest / _STAMP
    if force or (stamp.is_file() and stamp.read_text().strip() != _stamp()):
        stamp.unlink(missing_ok=True)  # pins changed: nothing in here can be trusted
        for b in BINARIES:
            (dest / b).unlink(missing_ok=True)
    env = _go_env()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".build-") as tmp:
        for name, ldflags, pkgs in _GROUPS:
            if all((dest / _out_name(p)).is_file() for p in pkgs):
                continue  # a previous, interrupted run built this group already
            t1 = time.monotonic()
            print(f"lab.k8s.build: building {name} ({', '.join(pkgs)})", file=sys.stderr, flush=True)
            out = Path(tmp) / name
            out.mkdir()
            cmd = ["go", "build", "-p", str(jobs), "-ldflags", ldflags(), "-o", f"{out}/", *pkgs]
            subprocess.run(cmd, cwd=GOMOD_DIR / name, env=env, check=True)
            for f in out.iterdir():  # etcd comes out as "server" (or "v3"): rename
                os.replace(f, dest / ("etcd" if name == "etcd" else f.name))
            print(
                f"lab.k8s.build: {name} built in {time.monotonic() - t1:.0f}s",
                file=sys.stderr,
                flush=True,
            )
    missing = [b for b in BINARIES if not (dest / b).is_file()]
    if missing:
        sys.exit(f"lab.k8s.build: missing after build: {missing}")
    (dest / _STAMP).write_text(_stamp() + "\n")
    print(f"lab.k8s.build: done in {time.monotonic() - t0:.0f}s", file=sys.stderr, flush=True)
    return dest


# --- helm: its own cache directory (helm-<HELM_VERSION>/bin), its own wrapper module and stamp ----------


def _helm_stamp() -> str:
    """Changes when the helm wrapper module's pins change (or the version we stamp into the binary)."""
    h = hashlib.sha256(HELM_VERSION.encode())
    for f in ("go.mod", "go.sum"):
        h.update((GOMOD_DIR / "helm" / f).read_bytes())
    return h.hexdigest()


def _helm_reports_version(binary: Path) -> bool:
    try:
        out = subprocess.run(
            [str(binary), "version", "--template", "{{.Version}}"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return out.strip() == HELM_VERSION


def helm_is_warm() -> bool:
    """The binary is there and stamped with this wrapper module's pins.

    A binary placed there by hand (or by an older build.py without stamps) that reports
    HELM_VERSION is adopted: the stamp is written and the build skipped."""
    binary = helm_bin()
    if not binary.is_file():
        return False
    stamp = binary.parent / _STAMP
    if stamp.is_file():
        return stamp.read_text().strip() == _helm_stamp()
    if _helm_reports_version(binary):
        stamp.write_text(_helm_stamp() + "\n")
        return True
    return False


def build_helm(*, force: bool = False, jobs: int = 2) -> Path:
    """Build (or reuse) the lab's helm binary (``lab.k8s.versions.helm_bin()``); return its path."""
    binary = helm_bin()
    if not force and helm_is_warm():
        return binary
    if shutil.which("go") is None:
        sys.exit("lab.k8s.build: `go` is not on PATH (need Go >= 1.26 to build helm)")
    dest = binary.parent
    dest.mkdir(parents=True, exist_ok=True)
    (dest / _STAMP).unlink(missing_ok=True)
    t0 = time.monotonic()
    print(f"lab.k8s.build: building helm {HELM_VERSION}", file=sys.stderr, flush=True)
    ldflags = f"-s -w -X helm.sh/helm/v4/internal/version.version={HELM_VERSION}"
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".build-") as tmp:
        cmd = ["go", "build", "-p", str(jobs), "-ldflags", ldflags, "-o", f"{tmp}/helm", "helm.sh/helm/v4/cmd/helm"]
        subprocess.run(cmd, cwd=GOMOD_DIR / "helm", env=_go_env(), check=True)
        os.replace(Path(tmp) / "helm", binary)  # atomic: never a half-written binary at the path
    (dest / _STAMP).write_text(_helm_stamp() + "\n")
    print(f"lab.k8s.build: helm built in {time.monotonic() - t0:.0f}s", file=sys.stderr, flush=True)
    return binary


def build_all(*, force: bool = False, jobs: int = 2) -> Path:
    """Everything the lab needs: the Kubernetes binaries and helm. Returns the k8s bin directory."""
    dest = build(force=force, jobs=jobs)
    build_helm(force=force, jobs=jobs)
    return dest


def main() -> None:
    force = "--force" in sys.argv
    print(build(force=force))
    print(build_helm(force=force))


if __name__ == "__main__":
    main()
