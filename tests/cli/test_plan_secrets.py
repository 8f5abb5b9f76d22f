"""`stackhop plan validate` and secrets, by value: fields that *name* Secrets are accepted (the job
runner is configured from a plan), secrets written inline are refused wherever they are."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cli.conftest import Cli

JOB_RUNNER: dict[str, Any] = {
    "apiVersion": "stackhop/v1alpha1",
    "kind": "UpgradePlan",
    "metadata": {"name": "job-runner"},
    "cloud": {"name": "lab", "kubernetes": {"context": "lab"}, "openstack": {"cloud": "lab-admin"}},
    "release": {"from": "2025.2", "to": "2026.1"},
    "services": [
        {
            "name": "keystone",
            "database": {
                "name": "keystone",
                "runner": "job",
                "credentials_secret": "keystone-db-backup",
                "snapshot_pvc": "stackhop-snapshots",
            },
            "migration": {
                "mode": "expand-contract",
                "runner": "job",
                "config_secret": "keystone.etc",
                "command": ["keystone-manage", "--config-file", "/etc/keystone/keystone.conf"],
            },
            "workloads": [
                {
                    "kind": "Deployment",
                    "name": "keystone-api",
                    "container": "keystone-api",
                    "image": "registry.lab/keystone:29.1.0",
                }
            ],
        }
    ],
}

PEM = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ==\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)

# (where, value) -> the field path and the words the refusal names
REFUSED = [
    (("database", "credentials_secret"), "hunter2!", "services[0].database.credentials_secret", "inline secret"),
    (("migration", "config_secret"), "pass word", "services[0].migration.config_secret", "inline secret"),
    (("database", "password"), "keystone-db", "services[0].database.password", "inline secret"),
    (("migration", "command"), ["keystone-manage", PEM], "services[0].migration.command[1]", "inline private key"),
    (
        ("migration", "command"),
        ["keystone-manage", "--database-connection", "mysql+pymysql://keystone:s3cret@db/keystone"],
        "services[0].migration.command[2]",
        "URL with an inline password",
    ),
    (("migration", "command"), ["mariadb", "--password=s3cret"], "services[0].migration.command[1]", "password"),
]


def write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_fields_that_name_secrets_are_accepted(offline_cli: Cli, tmp_path: Path) -> None:
    res = offline_cli.run("plan", "validate", str(write(tmp_path, JOB_RUNNER)))
    assert res.exit_code == 0, res.stderr
    assert "order: keystone" in res.stdout


@pytest.mark.parametrize(("where", "value", "field", "words"), REFUSED, ids=[r[2] + ":" + r[3] for r in REFUSED])
def test_inline_secrets_are_refused_by_value(
    offline_cli: Cli, tmp_path: Path, where: tuple[str, str], value: Any, field: str, words: str
) -> None:
    doc = copy.deepcopy(JOB_RUNNER)
    doc["services"][0][where[0]][where[1]] = value
    path = write(tmp_path, doc)
    res = offline_cli.run("plan", "validate", str(path))
    assert res.exit_code == 2
    line = re.search(rf"^{re.escape(str(path))}:(\d+): {re.escape(field)}: (.*)$", res.stderr, re.M)
    assert line, res.stderr
    assert words in line.group(2) and "(fix: keep secrets out of plans" in line.group(2)
    assert value not in res.stderr if isinstance(value, str) else True  # the secret is not echoed
