"""What the recipe-step tests on the cloud lab share: every migration phase and every status check
runs through the activity the workflow runs (``activities.migration.db_sync``,
``activities.validation.run_check``) with the worker environment the cloud gives
(STACKHOP_<SERVICE>_MANAGE / _STATUS), so a test proves what production runs; what a step changed
is read from the service's database and API."""

from __future__ import annotations

from typing import Literal

import pytest
from temporalio.testing import ActivityEnvironment

from activities import migration, validation
from lab.openstack.cloud import ADMIN_CLOUD, CloudLab
from model.io import CheckInput, CheckResult, MigrateInput, MigrateResult, MigrationPhase
from model.plan import Migration, UpgradeStatusCheck

Mode = Literal["expand-contract", "offline", "none"]


def use_worker_env(cloud: CloudLab, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment a stackhop worker acting on this cloud has (the activities read it)."""
    for key, value in cloud.worker_env().items():
        monkeypatch.setenv(key, value)


def target_tag(cloud: CloudLab, service: str, release: str) -> str:
    """The target version as a plan carries it (the PyPI version: the lab's image tag)."""
    return cloud.service(service).versions[release]


def phase(
    cloud: CloudLab, service: str, step: MigrationPhase, release: str, mode: Mode = "expand-contract"
) -> MigrateResult:
    """One migration phase of ``service`` with the ``release``'s manage tool, through the activity."""
    inp = MigrateInput(
        service=service, phase=step, migration=Migration(mode=mode), version=target_tag(cloud, service, release)
    )
    result: MigrateResult = ActivityEnvironment().run(migration.db_sync, inp)
    return result


def status_check(cloud: CloudLab, service: str, release: str) -> CheckResult:
    """``<service>-status upgrade check`` of ``release`` (the target, before the roll), through the
    check activity."""
    inp = CheckInput(
        service=service,
        cloud=ADMIN_CLOUD,
        check=UpgradeStatusCheck(kind="upgrade-status"),
        stage="pre",
        version=target_tag(cloud, service, release),
    )
    result: CheckResult = ActivityEnvironment().run(validation.run_check, inp)
    return result


def alembic_versions(cloud: CloudLab, database: str) -> set[str]:
    """The alembic revisions recorded in ``database`` (its schema version)."""
    assert cloud.mariadb
    return set(cloud.mariadb.sql("SELECT version_num FROM alembic_version", database).split())


def served_releases(cloud: CloudLab, service: str) -> set[str]:
    """The releases of the service's pods now (one entry while a single release serves)."""
    cloud.reload()
    return {pod.release for pod in cloud.pods_of(service).values()}
