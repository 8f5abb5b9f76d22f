"""Helm release activities (helm.status, helm.upgrade, helm.rollback): the workload adapter for
releases. Placeholder of the shared contract; the implementation lands with issue 10."""

from __future__ import annotations

from temporalio import activity

from model.io import (
    HELM_ROLLBACK,
    HELM_STATUS,
    HELM_UPGRADE,
    HelmChange,
    HelmRollbackInput,
    HelmStatus,
    HelmStatusInput,
    HelmUpgradeInput,
)


@activity.defn(name=HELM_STATUS)
def status(inp: HelmStatusInput) -> HelmStatus:
    raise NotImplementedError


@activity.defn(name=HELM_UPGRADE)
def upgrade(inp: HelmUpgradeInput) -> HelmChange:
    raise NotImplementedError


@activity.defn(name=HELM_ROLLBACK)
def rollback(inp: HelmRollbackInput) -> HelmChange:
    raise NotImplementedError
