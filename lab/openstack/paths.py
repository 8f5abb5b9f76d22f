"""Where the OpenStack lab keeps its state, its caches and its lock files.

Runtime state (data dir, configs, logs, pids) lives under the project's lab directory
(`<repo>/.lab/openstack`, or `$STACKHOP_LAB_DIR/openstack`) so `down` can always find what `up`
started.  Venvs are expensive, so they live in a user cache keyed by the lock file's hash and are
shared by every clone on the machine.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from lab import ports

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCKS_DIR = Path(__file__).resolve().parent / "locks"

#: Keystone releases the lab can serve, oldest first (2025.2, 2026.1 SLURP, 2026.2).
KEYSTONE_RELEASES: tuple[str, ...] = ("28.1.0", "29.1.0", "30.0.0")
TEMPEST_VERSION = "47.0.0"


def lab_dir() -> Path:
    """Runtime directory of the OpenStack lab (created on demand)."""
    base = os.environ.get("STACKHOP_LAB_DIR")
    root = Path(base) if base else REPO_ROOT / ".lab"
    path = root / "openstack"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_root() -> Path:
    """Shared cache for expensive builds (`~/.cache/stackhop-lab/`)."""
    base = os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base else Path.home() / ".cache"
    return root / "stackhop-lab"


def lock_file(name: str) -> Path:
    """Lock file for a venv name such as `keystone-28.1.0` or `tempest-47.0.0`."""
    return LOCKS_DIR / f"{name}.txt"


def lock_hash(name: str) -> str:
    """Short sha256 of a lock file: the cache key of the venv built from it."""
    return hashlib.sha256(lock_file(name).read_bytes()).hexdigest()[:16]


def venv_dir(name: str) -> Path:
    """Cached venv for a lock: a changed lock file gives a new directory, never a stale venv."""
    return cache_root() / "openstack" / f"{name}-{lock_hash(name)}"


def keystone_venv(release: str) -> Path:
    return venv_dir(f"keystone-{release}")


def tempest_venv() -> Path:
    return venv_dir(f"tempest-{TEMPEST_VERSION}")


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (0600 from its creation: never readable by others, not
    even for a moment) and replace ``path`` atomically. Lab secrets (passwords in state files,
    option files, clouds.yaml, tempest.conf) go through here."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # threads write too
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(tmp, 0o600)  # an existing tmp file keeps its mode through O_CREAT
    os.replace(tmp, path)


def free_port() -> int:
    """A free TCP port on 127.0.0.1, below the ephemeral range (lab/ports.py)."""
    return ports.free_port()
