"""The product package: the wheel that `pip install .` and the deploy/ image install.

It is built from a clean copy of the checkout's files (so nothing left over, such as a stale
build/ directory, can slip in) and installed into a fresh venv, offline from the uv cache that
`make venv` filled, with requirements.lock as constraints (as deploy/Containerfile installs it).
From there `stackhop` works, the worker loads every activity, and the lab is absent: `stackhop
demo` says how to get it and exits 2. deploy/Containerfile installs exactly this wheel, so this
is also what the worker image contains.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UV = str(Path(sys.executable).parent / "uv")
PRODUCT = {"activities", "cliapp", "model", "workflows", "cli.py", "worker.py"}
TIMEOUT = 120  # a liveness bound per command, not a timing assertion


COMMANDS = {  # run concurrently: each pays the interpreter start and the CLI's imports
    "help": ["stackhop", "--help"],
    "worker help": ["stackhop", "worker", "--help"],
    # what the image's entry point (`python -m worker`) imports: the workflows and every activity
    "worker imports": ["python", "-c", "import worker; print(len(worker.all_activities()))"],
    "demo": ["stackhop", "demo"],  # `stackhop lab` goes through the same lookup (cli._lab_module)
}


@dataclass
class Installed:
    wheel: Path
    ran: dict[str, subprocess.CompletedProcess[str]]


def source_copy(dest: Path) -> Path:
    """The checkout's files as git sees them (tracked and new, not ignored): a build from here
    cannot pick up leftovers such as a stale build/ directory."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in filter(None, listed.split("\0")):
        src = ROOT / name
        if src.is_file():  # a file deleted in the work tree is still listed until committed
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def uv(*args: str) -> None:
    done = subprocess.run([UV, *args], capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr


def run_in(venv: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
    """A command from the venv's bin/, run outside the checkout with no path of ours inherited."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(venv / "bin" / args[0]), *args[1:]], cwd=venv, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("wheel")
    src = source_copy(tmp / "src")
    uv("build", "--wheel", "--offline", "--quiet", "--out-dir", str(tmp / "dist"), str(src))
    (wheel,) = (tmp / "dist").glob("stackhop-*.whl")
    venv = tmp / "venv"
    uv("venv", "--offline", "--quiet", "--python", sys.executable, str(venv))
    python = str(venv / "bin" / "python")
    uv("pip", "install", "--offline", "--quiet", "--python", python, "-c", str(src / "requirements.lock"), str(wheel))
    with ThreadPoolExecutor(len(COMMANDS)) as pool:
        futures = {name: pool.submit(run_in, venv, args) for name, args in COMMANDS.items()}
    return Installed(wheel, {name: future.result() for name, future in futures.items()})


def test_the_wheel_holds_the_product_and_no_lab(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as whl:
        names = whl.namelist()
        record = whl.read(next(n for n in names if n.endswith(".dist-info/RECORD"))).decode()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == PRODUCT
    assert {line.split(",")[0] for line in record.splitlines() if line} == set(names)
    assert not [n for n in names if n.startswith("lab/") or n.split("/")[-1].startswith("lab")]


def test_stackhop_and_the_worker_run_from_the_wheel(installed: Installed) -> None:
    from activities.catalog import ACTIVITIES

    help_, worker, imports = (installed.ran[name] for name in ("help", "worker help", "worker imports"))
    assert help_.returncode == 0, help_.stderr
    assert "start" in help_.stdout and "worker" in help_.stdout
    assert worker.returncode == 0, worker.stderr
    assert "Run a worker" in worker.stdout
    assert imports.returncode == 0, imports.stderr
    assert imports.stdout.strip() == str(len(ACTIVITIES))


def test_the_demo_says_how_to_get_the_lab(installed: Installed) -> None:
    done = installed.ran["demo"]
    assert done.returncode == 2, done.stdout + done.stderr
    assert "stackhop demo needs the lab, which ships only in a source checkout" in done.stderr
    assert "make demo" in done.stderr and "Traceback" not in done.stderr
