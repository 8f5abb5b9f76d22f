"""`stackhop plan ...`: valid examples pass, every class of bad plan is refused with file, line,
field path and a fix, exit 2."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.cli.conftest import Cli

ROOT = Path(__file__).resolve().parents[2]
PLANS = ROOT / "tests" / "plans"

# bad plan -> (field path, words of the message)
BAD = {
    "bad-malformed-yaml.yaml": ("(document)", "malformed YAML"),
    "bad-unknown-field.yaml": ("policy.on_failur", "unknown field"),
    "bad-missing-field.yaml": ("cloud.kubernetes.context", "Field required"),
    "bad-downgrade.yaml": ("release.to", "is a downgrade"),
    "bad-skip-level.yaml": ("release.to", "not a SLURP -> SLURP upgrade"),
    "bad-cycle.yaml": ("services[0].depends_on", "dependency cycle: keystone -> glance -> keystone"),
    "bad-unknown-dependency.yaml": ("services[1].depends_on[1]", "unknown service 'placement'"),
    "bad-duplicate-service.yaml": ("services[1].name", "duplicate service 'keystone'"),
    "bad-workload-kind.yaml": ("services[0].workloads[0].kind", "'Deployment', 'StatefulSet' or 'DaemonSet'"),
    "bad-empty-services.yaml": ("services", "at least 1 item"),
    "bad-inline-secret.yaml": ("services[0].database.password", "inline secret"),
    "bad-missing-top-level.yaml": ("cloud", "Field required"),
    "bad-database-name.yaml": ("services[0].database.name", "is not a plain SQL identifier"),
    "bad-database-name-digits.yaml": ("services[1].database.name", "'2026' is not a plain SQL identifier"),
    "bad-secret-name.yaml": ("services[0].database.credentials_secret", "String should match pattern"),
    "bad-unproven-recipe.yaml": ("services[0].migration.unproven_recipe", "never run against a real cinder"),
    "bad-nova-one-database.yaml": ("services[0].database", "nova keeps its data in 3 databases"),
    "bad-database-twice.yaml": ("services[0].databases", "nova names its databases twice"),
    "bad-database-duplicate.yaml": ("services[0].databases[2].name", "database nova is listed twice"),
    "bad-helm-restart-unset.yaml": ("services[0].helm.restart_value", "restarts its workloads to lift the RPC pin"),
    "bad-daemonset-quiesced.yaml": (
        "services[0].workloads[1].quiesce",
        "(fix: set quiesce: false on DaemonSet nova-compute: DaemonSets are never scaled;",
    ),
}


def test_every_bad_plan_has_a_case() -> None:
    assert sorted(p.name for p in PLANS.glob("bad-*.yaml")) == sorted(BAD)


def test_examples_validate_with_their_order(offline_cli: Cli) -> None:
    res = offline_cli.run(
        "plan", "validate", str(ROOT / "examples/lab-keystone.yaml"), str(ROOT / "examples/multi-service.yaml")
    )
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 2
    assert "lab-keystone-2026.1: cloud lab, 2025.2 → 2026.1, order: keystone" in lines[0]
    assert (
        "prod-2026.1: cloud prod-east, 2025.1 → 2026.1, order: keystone → placement → glance → neutron → nova → cinder"
        in lines[1]
    )


def test_the_whole_cloud_plan_runs_the_middle_wave_in_parallel(offline_cli: Cli) -> None:
    res = offline_cli.run("plan", "validate", str(ROOT / "examples/lab-cloud.yaml"))
    assert res.exit_code == 0, res.stderr
    assert (
        "lab-cloud-2026.1: cloud lab-cloud, 2025.2 → 2026.1, order: keystone → {placement, glance, neutron} → nova"
        in res.stdout
    )


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_plan_names_file_line_field_and_fix(offline_cli: Cli, name: str) -> None:
    path = PLANS / name
    res = offline_cli.run("plan", "validate", str(path))
    assert res.exit_code == 2
    field, words = BAD[name]
    line = re.search(rf"^{re.escape(str(path))}:(\d+): {re.escape(field)}: (.*)$", res.stderr, re.M)
    assert line, res.stderr
    assert words in line.group(2) and "(fix: " in line.group(2)
    assert 1 <= int(line.group(1)) <= len(path.read_text().splitlines())
    assert res.stdout == ""


def test_one_bad_plan_among_good_ones_fails_the_run(offline_cli: Cli) -> None:
    res = offline_cli.run("plan", "validate", str(ROOT / "examples/lab-keystone.yaml"), str(PLANS / "bad-cycle.yaml"))
    assert res.exit_code == 2
    assert "ok " in res.stdout and "1 of 2 plan(s) invalid" in res.stderr


def test_missing_file_is_bad_input(offline_cli: Cli, tmp_path: Path) -> None:
    res = offline_cli.run("plan", "validate", str(tmp_path / "nope.yaml"))
    assert res.exit_code == 2 and "cannot read the plan" in res.stderr


def test_show_lists_services_in_order(offline_cli: Cli) -> None:
    res = offline_cli.run("plan", "show", str(ROOT / "examples/multi-service.yaml"))
    assert res.exit_code == 0, res.stderr
    out = res.stdout
    positions = [out.index(f" {name} ") for name in ("keystone", "placement", "glance", "neutron", "nova", "cinder")]
    assert positions == sorted(positions)
    assert "DaemonSet/nova-compute-default" in out and "nova-computes" in out and "offline (job)" in out


def test_show_refuses_a_bad_plan(offline_cli: Cli) -> None:
    res = offline_cli.run("plan", "show", str(PLANS / "bad-downgrade.yaml"))
    assert res.exit_code == 2 and "release.to" in res.stderr and "(fix: " in res.stderr


def test_show_live_without_a_cluster_says_why(offline_cli: Cli, tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    res = offline_cli.run(
        "plan", "show", "--live", str(ROOT / "examples/lab-keystone.yaml"), KUBECONFIG=str(kubeconfig)
    )
    assert res.exit_code == 2
    assert "cannot read the live state of lab" in res.stderr


def test_schema_is_json_schema_with_aliases(offline_cli: Cli) -> None:
    res = offline_cli.run("plan", "schema")
    assert res.exit_code == 0
    schema = json.loads(res.stdout)
    assert "apiVersion" in schema["properties"] and "from" in schema["$defs"]["ReleaseRange"]["properties"]
    defs = schema["$defs"]
    assert "several databases of one service" in defs["Service"]["properties"]["databases"]["description"].lower()
    unproven = defs["Migration"]["properties"]["unproven_recipe"]
    assert unproven["enum"] == ["refuse", "accept"] and "never run" in unproven["description"]
    assert "restart" in defs["HelmRelease"]["properties"]["restart_value"]["description"]


def test_a_recipe_never_run_is_accepted_only_when_the_plan_says_so(offline_cli: Cli, tmp_path: Path) -> None:
    bad = PLANS / "bad-unproven-recipe.yaml"
    accepted = tmp_path / "cinder.yaml"
    accepted.write_text(bad.read_text().replace("mode: offline}", "mode: offline, unproven_recipe: accept}"))
    res = offline_cli.run("plan", "validate", str(accepted))
    assert res.exit_code == 0, res.stderr
    assert "fix: set migration.unproven_recipe: accept" in offline_cli.run("plan", "validate", str(bad)).stderr


def test_help_lists_every_command_and_the_lab_sub_apps(offline_cli: Cli) -> None:
    res = offline_cli.run("--help")
    assert res.exit_code == 0
    for cmd in (
        "start",
        "status",
        "watch",
        "pause",
        "resume",
        "approve",
        "abort",
        "list",
        "setup",
        "worker",
        "dev",
        "plan",
        "lab",
    ):
        assert f" {cmd} " in res.stdout, cmd
    res = offline_cli.run("lab", "--help")
    assert res.exit_code == 0 and " k8s " in res.stdout and " openstack " in res.stdout


def test_usage_errors_are_bad_input(offline_cli: Cli) -> None:
    assert offline_cli.run("start").exit_code == 2  # PLAN missing
    assert offline_cli.run("no-such-command").exit_code == 2
