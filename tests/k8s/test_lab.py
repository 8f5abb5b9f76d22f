"""The lab's own entry points: the idempotent build and `stackhop lab k8s ...`."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from lab.k8s import build
from lab.k8s.cli import app
from lab.k8s.cluster import KubeLab
from lab.k8s.versions import BINARIES, bin_dir, helm_bin

pytestmark = pytest.mark.k8s


def test_build_is_idempotent_when_warm(k8s_lab: KubeLab) -> None:
    assert build.is_warm() and build.helm_is_warm()
    out = subprocess.run([sys.executable, "-m", "lab.k8s.build"], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(bin_dir()), str(helm_bin())]
    assert "building" not in out.stderr  # warm: nothing is built
    assert all((bin_dir() / b).is_file() for b in BINARIES)


def test_cli_status_prints_kubeconfig(k8s_lab: KubeLab) -> None:
    res = CliRunner().invoke(app, ["status", "--name", k8s_lab.name])
    assert res.exit_code == 0, res.output
    assert str(k8s_lab.kubeconfig) in res.output and '"healthy": true' in res.output


def test_cli_status_of_absent_lab_fails(k8s_lab: KubeLab) -> None:
    res = CliRunner().invoke(app, ["status", "--name", "no-such-lab"])
    assert res.exit_code == 1 and '"exists": false' in res.output


def test_stages_inject_failures(k8s_lab: KubeLab) -> None:
    """The project stages are loaded next to kwok's base set (which a --config replaces)."""
    text = k8s_lab.config_file.read_text()
    for stage in (
        "node-initialize",
        "node-heartbeat-with-lease",
        "pod-ready",
        "pod-complete",
        "pod-delete",
        "stackhop-never-ready",
        "stackhop-slow-ready",
        "stackhop-job-fail",
        "stackhop-slow-job",
    ):
        assert f"name: {stage}\n" in text, stage
    assert "bindAddress: 127.0.0.1" in text
