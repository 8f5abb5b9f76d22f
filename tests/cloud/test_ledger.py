"""``ledger.check_cloud`` (activities/ledger.py) against the real placement and keystone: what the
pre-flight reads from the cloud itself, beside the ledger. Placement with rows its online data
migrations fix (seeded as tests/cloud/test_placement.py does): its status check's online-migration
checks fail, so the cloud says "pending" and names the command; after the recipe's steps ran them
it says "done". Keystone's schema check (``db_sync --check`` of the target release) says whether
its schema is expanded and not contracted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml
from temporalio.testing import ActivityEnvironment

from activities import ledger
from lab.openstack.cloud import ADMIN_CLOUD, CloudLab
from model.io import CloudCheck, CloudCheckInput, LedgerEntry, LedgerState
from model.loading import parse_plan
from model.plan import UpgradePlan
from tests.cloud.recipe_steps import phase, target_tag, use_worker_env
from tests.cloud.test_placement import seed_rows_online_migrations_fix

OLD, NEW = "2025.2", "2026.1"
ODM = "placement-manage db online_data_migrations --max-count 1000"


def plan_for(cloud: CloudLab, *services: str) -> UpgradePlan:
    def svc(name: str) -> dict[str, Any]:
        tag = target_tag(cloud, name, NEW)
        return {
            "name": name,
            "database": {"name": name},
            "migration": {"mode": "expand-contract"},
            "workloads": [
                {"kind": "Deployment", "name": f"{name}-api", "container": "api", "image": f"lab/{name}:{tag}"}
            ],
        }

    doc = {
        "apiVersion": "stackhop/v1alpha1",
        "kind": "UpgradePlan",
        "metadata": {"name": "ledger"},
        "cloud": {"name": "lab-ledger", "kubernetes": {"context": "lab"}, "openstack": {"cloud": ADMIN_CLOUD}},
        "release": {"from": OLD, "to": NEW},
        "services": [svc(s) for s in services],
    }
    return parse_plan(yaml.safe_dump(doc), "ledger.yaml")


def check(plan: UpgradePlan, ledger_state: LedgerState | None = None) -> dict[str, Any]:
    out: CloudCheck = ActivityEnvironment().run(ledger.check_cloud, CloudCheckInput(plan=plan, ledger=ledger_state))
    return {c.service: c for c in out.services}


def test_check_cloud_sees_placement_online_migrations_unfinished_then_done(
    cloud_at: Callable[..., CloudLab], monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud = cloud_at("keystone", "placement")
    use_worker_env(cloud, monkeypatch)
    try:
        unfinished_then_done(cloud, plan_for(cloud, "keystone", "placement"))
    finally:  # keystone is reset only when a test names it: leave it as the baseline has it
        cloud.reset(["keystone"])


def unfinished_then_done(cloud: CloudLab, plan: UpgradePlan) -> None:

    # a cloud as 2025.2 left it: nothing pending, keystone's schema not expanded for 2026.1
    before = check(plan)
    assert (before["placement"].online, before["placement"].schema_state) == ("done", "")
    assert (before["keystone"].online, before["keystone"].schema_state) == ("not-applicable", "expand-needed")
    assert before["keystone"].expanded_not_contracted is False
    assert any("keystone-manage" in c and "db_sync --check" in c for c in before["keystone"].commands)

    seed_rows_online_migrations_fix(cloud)
    # placement's release reached, as the ledger would hold it after an upgrade that stopped
    # before its online data migrations: the check runs that release's status check
    reached = LedgerState(
        cloud="lab-ledger",
        services={
            "placement": LedgerEntry(service="placement", release=NEW, version=target_tag(cloud, "placement", NEW))
        },
    )
    assert phase(cloud, "placement", "expand", NEW).state == "done"
    cloud.serve("placement", NEW)
    pending = check(plan, reached)["placement"]
    assert pending.online == "pending" and pending.online_command == ODM
    assert "Missing Root Provider IDs: Failure" in pending.online_detail
    assert "Incomplete Consumers" in pending.online_detail
    assert target_tag(cloud, "placement", NEW) in pending.commands[0]  # the reached release's status check

    # keystone expanded for 2026.1 and not contracted (a rollback with previous images would leave this)
    assert phase(cloud, "keystone", "expand", NEW).state == "done"
    expanded = check(plan, reached)["keystone"]
    assert expanded.expanded_not_contracted is True and expanded.schema_state in ("migrate-needed", "contract-needed")

    assert phase(cloud, "placement", "online", NEW).state == "done"
    assert phase(cloud, "keystone", "contract", NEW).state == "done"
    after = check(plan, reached)
    assert after["placement"].online == "done", after["placement"].online_detail
    assert (after["keystone"].schema_state, after["keystone"].expanded_not_contracted) == ("up-to-date", False)
