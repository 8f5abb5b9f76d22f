"""``ledger.check_cloud`` (activities/ledger.py) against the real placement and glance: what the
pre-flight reads from the cloud itself, beside the ledger. Placement with rows its online data
migrations fix (seeded as tests/cloud/test_placement.py does): its status check's online-migration
checks fail, so the cloud says "pending" and names the command; after the recipe's steps ran them
it says "done". Glance's schema check (``db check`` of the target release) says whether its
schema is expanded and not contracted (from the 2023.1 schema, as tests/cloud/test_glance.py)."""

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
from tests.cloud.test_glance import at_2023_schema
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
    cloud = cloud_at("placement", "glance")
    use_worker_env(cloud, monkeypatch)
    at_2023_schema(cloud)  # glance's schema as 2023.1 left it: 2026.1 expands, then contracts it
    try:
        unfinished_then_done(cloud, plan_for(cloud, "placement", "glance"))
    finally:  # leave glance as the baseline has it for tests that use it without naming it
        cloud.reset(["glance"])


def unfinished_then_done(cloud: CloudLab, plan: UpgradePlan) -> None:
    # nothing pending: placement's online-migration checks pass, glance's schema is not expanded
    before = check(plan)
    assert (before["placement"].online, before["placement"].schema_state) == ("done", ""), before["placement"]
    assert (before["glance"].online, before["glance"].schema_state) == ("not-applicable", "expand-needed")
    assert before["glance"].expanded_not_contracted is False
    assert any("glance-manage" in c and c.endswith("db check") for c in before["glance"].commands)

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
    # glance expanded for 2026.1 and not contracted (what a rollback with previous images leaves)
    assert phase(cloud, "glance", "expand", NEW).state == "done"
    seen = check(plan, reached)
    pending = seen["placement"]
    assert pending.online == "pending" and pending.online_command == ODM
    assert "Missing Root Provider IDs: Failure" in pending.online_detail
    assert "Incomplete Consumers" in pending.online_detail
    assert target_tag(cloud, "placement", NEW) in pending.commands[0]  # the reached release's status check
    assert (seen["glance"].schema_state, seen["glance"].expanded_not_contracted) == ("contract-needed", True)

    assert phase(cloud, "placement", "online", NEW).state == "done"
    assert phase(cloud, "glance", "contract", NEW).state == "done"
    after = check(plan, reached)
    assert after["placement"].online == "done", after["placement"].online_detail
    assert "Missing Root Provider IDs, Incomplete Consumers: Success" in after["placement"].online_detail
    assert (after["glance"].schema_state, after["glance"].expanded_not_contracted) == ("up-to-date", False)
