"""The activities the stackhop worker registers: one list, read top to bottom.

Each entry is a function decorated with ``@activity.defn(name=model.io.<NAME>)``; the workflows
schedule those names. ``tests/test_catalog.py`` checks that the names the workflows can schedule
(the constants in ``model/io.py``) and the names registered here are the same set, so an activity
cannot be forgotten here nor linger after the last workflow stopped calling it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities import (
    admission,
    database,
    dataplane,
    dataplane_node,
    db_inspect,
    helm,
    kube_rollout,
    kube_scale,
    ledger,
    migration,
    probe,
    tempest,
    validation,
)

ACTIVITIES: list[Callable[..., Any]] = [
    # the worker admits a plan before any step (its own validation and configuration)
    admission.admit,
    # Kubernetes: images, rollouts, replicas
    kube_rollout.read_images,
    kube_rollout.set_images,
    kube_rollout.wait_rollout,
    kube_rollout.undo_images,
    kube_rollout.restart,
    kube_scale.scale,
    # Helm releases: the workload adapter for what a release owns (workflows/adapters.py)
    helm.status,
    helm.upgrade,
    helm.rollback,
    # database: snapshot before, verify it, inspect and restore on the way back
    database.snapshot,
    database.verify_snapshot,
    db_inspect.inspect,
    database.restore,
    # schema migration (db_sync phases)
    migration.db_sync,
    # validation that decides
    validation.run_check,
    tempest.run_tempest,
    # what the users of an API saw while its service upgraded (runs beside the steps)
    probe.probe_availability,
    # the cloud's upgrade ledger (workflows/ledger.py): record, read, and the cloud's own answer
    ledger.record,
    ledger.read,
    ledger.check_cloud,
    # the data plane, node batch by node batch (workflows/dataplane*.py)
    dataplane.inventory,
    dataplane.capacity,
    dataplane_node.disable,
    dataplane_node.drain,
    dataplane.replace,
    dataplane_node.enable,
    dataplane_node.verify,
]
