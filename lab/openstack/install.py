"""Idempotent installer for the OpenStack lab: `python -m lab.openstack.install`.

Run by the project's test command before pytest (and again by the pytest fixtures, where it is a
no-op that costs a few milliseconds).  It installs what a brand-new Debian 12 machine lacks:

* MariaDB server and client from Debian (`apt-get install mariadb-server mariadb-client`); apt does
  not start it (the lab starts its own server on a free loopback port);
* one venv per Keystone release and one for tempest, each from its committed lock file, cached under
  `~/.cache/stackhop-lab/openstack/<name>-<lock sha256>/`.  A venv is only trusted once its marker
  file exists, so an interrupted install is rebuilt instead of half-used.  Each venv is byte-compiled
  (a second marker): keystone-manage imports ~4000 modules, and with no .pyc (uv does not compile by
  default, and PYTHONDONTWRITEBYTECODE stops Python from writing them) every db_sync spent ~10 s of
  CPU compiling them again, ~4 s with them.
"""

from __future__ import annotations

import fcntl
import importlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import structlog

from lab.openstack import paths

log = structlog.get_logger(__name__)

APT_PACKAGES = ("mariadb-server", "mariadb-client")
MARKER = ".stackhop-complete"
COMPILED = ".stackhop-compiled"
SBIN_DIRS = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")


def find_tool(name: str) -> str | None:
    """Locate a system tool even when /usr/sbin is not on PATH (mariadbd lives there)."""
    found = shutil.which(name)
    if found:
        return found
    for directory in SBIN_DIRS:
        candidate = Path(directory) / name
        if candidate.exists():
            return str(candidate)
    return None


def mariadb_installed() -> bool:
    return all(find_tool(t) for t in ("mariadbd", "mariadb", "mariadb-dump", "mariadb-install-db"))


def ensure_mariadb() -> bool:
    """Install MariaDB from Debian if missing. Returns True when something was installed."""
    if mariadb_installed():
        return False
    if os.geteuid() != 0:
        raise SystemExit("MariaDB is missing; run `sudo apt-get install -y mariadb-server mariadb-client`")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log.info("apt_install", packages=APT_PACKAGES)
    subprocess.run(["apt-get", "update"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *APT_PACKAGES], check=True, env=env)
    return True


def _uv() -> str | None:
    found = shutil.which("uv")
    if found:
        return found
    candidate = Path(sys.executable).parent / "uv"
    return str(candidate) if candidate.exists() else None


def _python() -> str:
    """Interpreter for the lab venvs: the running one (the project needs 3.11; Keystone 30 too)."""
    return sys.executable  # requires-python (pyproject) is >= 3.11, as Keystone 30 needs


def venv_complete(venv: Path, name: str) -> bool:
    marker = venv / MARKER
    return marker.exists() and marker.read_text().strip() == paths.lock_hash(name)


def venv_compiled(venv: Path) -> bool:
    return (venv / COMPILED).exists()


def compile_venv(venv: Path) -> None:
    """Byte-compile a venv in place (a cache built before the venvs were compiled); safe while the
    venv is in use: compileall writes each .pyc atomically."""
    started = time.monotonic()
    subprocess.run([str(venv / "bin" / "python"), "-m", "compileall", "-q", "-j", "0", str(venv / "lib")], check=False)
    (venv / COMPILED).write_text("\n")
    log.info("venv_compiled", path=str(venv), seconds=round(time.monotonic() - started, 1))


def build_venv(name: str) -> bool:
    """Create the venv for lock `name` if it is not already cached. Returns True if built."""
    venv = paths.venv_dir(name)
    if venv_complete(venv, name):
        if not venv_compiled(venv):
            compile_venv(venv)
        return False
    if venv.exists():
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    lock = paths.lock_file(name)
    started = time.monotonic()
    uv = _uv()
    env = dict(os.environ, UV_PYTHON_DOWNLOADS="never")
    if uv:
        subprocess.run([uv, "venv", "--quiet", "--python", _python(), str(venv)], check=True, env=env)
        subprocess.run(
            [
                uv,
                "pip",
                "install",
                "--quiet",
                "--compile-bytecode",
                "--python",
                str(venv / "bin" / "python"),
                "-r",
                str(lock),
            ],
            check=True,
            env=env,
        )
    else:  # slower fallback when uv is not available
        subprocess.run([_python(), "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-r", str(lock)], check=True)
    (venv / COMPILED).write_text("\n")  # uv --compile-bytecode; pip compiles by default
    (venv / MARKER).write_text(paths.lock_hash(name) + "\n")
    log.info("venv_built", name=name, path=str(venv), seconds=round(time.monotonic() - started, 1))
    return True


def venv_names() -> list[str]:
    return [f"keystone-{r}" for r in paths.KEYSTONE_RELEASES] + [f"tempest-{paths.TEMPEST_VERSION}"]


def all_installed() -> bool:
    return mariadb_installed() and all(
        venv_complete(paths.venv_dir(n), n) and venv_compiled(paths.venv_dir(n)) for n in venv_names()
    )


def ensure_all() -> dict[str, bool]:
    """Install everything missing; serialised by a file lock so parallel callers do not collide."""
    if all_installed():
        return {}
    lock_path = paths.cache_root() / "openstack" / ".install.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        done = {"mariadb": ensure_mariadb()}
        for name in venv_names():
            done[name] = build_venv(name)
        return done


def ensure_rabbitmq() -> bool:
    """Install RabbitMQ from Debian if missing (the lab runs its own node; the package's service is
    not used). Returns True when something was installed."""
    if (Path("/usr/lib/rabbitmq/bin/rabbitmq-server")).exists():
        return False
    if os.geteuid() != 0:
        raise SystemExit("RabbitMQ is missing; run `sudo apt-get install -y rabbitmq-server`")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log.info("apt_install", packages=["rabbitmq-server"])
    subprocess.run(["apt-get", "update"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "rabbitmq-server"], check=True, env=env)
    # where the package's postinst started a system node (a machine with an init system), stop it:
    # the lab runs its own node on free loopback ports
    subprocess.run(["service", "rabbitmq-server", "stop"], check=False, capture_output=True, env=env)
    return True


def cloud_venv_names(services: list[str] | tuple[str, ...]) -> list[str]:
    """The lock names of the cloud lab's services (every release of each)."""
    from lab.openstack.services.base import RELEASES

    names = []
    for service in services:
        versions = importlib.import_module(f"lab.openstack.services.{service}").SERVICE.versions
        names += [f"{service}-{versions[r]}" for r in RELEASES]
    return names


def ensure_cloud(services: list[str] | tuple[str, ...]) -> dict[str, bool]:
    """Everything the cloud lab of ``services`` needs (and the Keystone lab's own set)."""
    names = cloud_venv_names(services)
    if (
        all_installed()
        and (Path("/usr/lib/rabbitmq/bin/rabbitmq-server")).exists()
        and all(venv_complete(paths.venv_dir(n), n) for n in names)
    ):
        return {}
    done = ensure_all()
    lock_path = paths.cache_root() / "openstack" / ".install.lock"
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        done["rabbitmq"] = ensure_rabbitmq()
        for name in names:
            done[name] = build_venv(name)
    return done


def main() -> None:
    started = time.monotonic()
    from lab.openstack.cloud import SERVICES

    done = ensure_cloud(SERVICES)
    built = [name for name, changed in done.items() if changed]
    print(f"openstack lab installed ({', '.join(built) or 'nothing to do'}) in {time.monotonic() - started:.1f}s")


if __name__ == "__main__":
    main()
