"""The ledger's pure rules: oslo.upgradecheck's table read into check results (what
``ledger.check_cloud`` decides on), and the ledger weighed against the cloud (workflows/ledger.py
``reconcile``: the cloud wins where it answered; unfinished online migrations refuse)."""

from __future__ import annotations

from activities.ledger import status_results
from model import io
from tests.workflows.helpers import make_plan, service
from workflows.ledger import reconcile

# placement-status upgrade check of 15.0.0 on a database with the rows its online migrations fix
TABLE = """\
+----------------------------------------------------------------------+
| Upgrade Check Results                                                |
+----------------------------------------------------------------------+
| Check: Missing Root Provider IDs                                     |
| Result: Failure                                                      |
| Details: There is at least one resource provider table record which  |
|   misses its root provider id. Run command 'placement-manage         |
|   db online_data_migrations' to fix.                                 |
+----------------------------------------------------------------------+
| Check: Incomplete Consumers                                          |
| Result: Warning                                                      |
| Details: There are 2 incomplete consumers table records for existing |
|   allocations. Run the "placement-manage db                          |
|   online_data_migrations" command.                                   |
+----------------------------------------------------------------------+
| Check: Policy File JSON to YAML Migration                            |
| Result: Success                                                      |
| Details: None                                                        |
+----------------------------------------------------------------------+
"""


def test_status_table_is_read_per_check() -> None:
    assert status_results(TABLE) == {
        "Missing Root Provider IDs": "Failure",
        "Incomplete Consumers": "Warning",
        "Policy File JSON to YAML Migration": "Success",
    }
    assert status_results("some log line\nno table") == {}


def entry(**kw: object) -> io.LedgerEntry:
    return io.LedgerEntry(service="placement", release="2026.1", upgrade_id="upgrade/x", **kw)


def test_the_ledger_stands_where_the_cloud_cannot_tell_and_refuses() -> None:
    plan = make_plan([service("placement"), service("keystone")])
    ledger = io.LedgerState(
        cloud=plan.cloud.name, services={"placement": entry(online_pending=True, online_command="C")}
    )
    seen = reconcile(
        plan, ledger, io.CloudCheck(services=[io.ServiceCloudCheck(service="placement", online="unknown")])
    )
    assert seen.disagreements == []
    assert seen.refusals == [
        "placement: the online data migrations left by upgrade/x are unfinished; run `C` until it exits 0"
        " (or resume that upgrade's online step), then start this upgrade again"
    ]
    # keystone: not in the ledger, not checked: nothing to say but that
    assert seen.notes[1] == "keystone: online data migrations: unknown"


def test_the_cloud_wins_on_the_schema_without_refusing() -> None:
    plan = make_plan()  # keystone
    cloud = io.CloudCheck(
        services=[
            io.ServiceCloudCheck(
                service="keystone",
                schema_state="contract-needed",
                expanded_not_contracted=True,
                online="not-applicable",
            )
        ]
    )
    seen = reconcile(plan, None, cloud)
    assert seen.refusals == []
    assert seen.disagreements == [
        "keystone: the ledger says the schema is not left expanded, the schema check says contract-needed:"
        " the cloud wins"
    ]
    kept = seen.entries["keystone"]
    assert kept.expanded_not_contracted and kept.source == "cloud"
    assert kept.contract_command == "keystone-manage db_sync --contract"
