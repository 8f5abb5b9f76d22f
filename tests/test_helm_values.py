"""The pure parts of the Helm adapter: values edits and diffs, helm's errors mapped onto the tree."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.helm_cli import HELM_ENV, Helm, apply_set, failure, get_path, helm_path, is_absent, values_diff
from activities.helm_release import DESCRIPTION_RE, _age, label_value, last_deployed
from model import errors
from model.io import HelmRevision
from model.plan import KubeTarget

VALUES: dict[str, Any] = {"images": {"tags": {"api": "a:1", "db": "d:1"}}, "conf": {"list": [1, 2]}, "x": 0}


def test_apply_set_creates_replaces_and_deletes_with_pruning() -> None:
    out = apply_set(VALUES, {"images.tags.api": "a:2", "pod.replicas.api": 0, "x.y": 1})
    assert out["images"]["tags"] == {"api": "a:2", "db": "d:1"}
    assert out["pod"] == {"replicas": {"api": 0}} and out["x"] == {"y": 1}
    assert VALUES["images"]["tags"]["api"] == "a:1"  # a copy
    pruned = apply_set({"pod": {"replicas": {"api": 0}}, "k": 1}, {"pod.replicas.api": None, "nope.deeper": None})
    assert pruned == {"k": 1}
    assert is_absent(get_path(VALUES, "images.tags.nope")) and get_path(VALUES, "conf.list") == [1, 2]


def test_values_diff_lists_only_changed_leaves() -> None:
    new = apply_set(VALUES, {"images.tags.api": "a:2", "pod.replicas.api": 0, "conf.list": None})
    assert values_diff(VALUES, new) == [
        "conf.list: [1, 2] -> (absent)",
        "images.tags.api: a:1 -> a:2",
        "pod.replicas.api: (absent) -> 0",
    ]
    assert values_diff(VALUES, apply_set(VALUES, {})) == []
    assert values_diff({"x": 1}, {"x": True}) == ["x: 1 -> true"]  # equal in Python, not in YAML


@pytest.mark.parametrize(
    ("stderr", "kind", "retryable"),
    [
        ("Error: release: not found", errors.WORKLOAD_NOT_FOUND, False),
        ('Error: UPGRADE FAILED: "k" has no deployed releases', errors.WORKLOAD_NOT_FOUND, False),
        ("Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress", errors.HELM_BUSY, True),
        ("Error: Kubernetes cluster unreachable: dial tcp 127.0.0.1:6443: connect: connection refused", "", True),
        ("Error: template: tiny/templates/x.yaml:3: nil pointer", errors.HELM_FAILED, False),
    ],
)
def test_helm_errors_are_mapped(stderr: str, kind: str, retryable: bool) -> None:
    h = Helm(target=KubeTarget(context="c", namespace="openstack"), release="keystone", namespace="openstack")
    exc = failure(h, "upgrade", "upgrade keystone ./chart -f /tmp/v.json", stderr)
    assert isinstance(exc, ApplicationError)
    assert exc.type == (kind or errors.UNAVAILABLE) and exc.non_retryable is not retryable
    assert "'keystone'" in exc.message and "'openstack'" in exc.message


def test_no_helm_binary_says_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(HELM_ENV, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ApplicationError) as ei:
        helm_path()
    assert ei.value.type == errors.HELM_FAILED and HELM_ENV in ei.value.message and "PATH" in ei.value.message


def test_description_label_and_age() -> None:
    m = DESCRIPTION_RE.match("stackhop wf-1/run-2/roll from 7")
    assert m and (m["change"], m["rev"]) == ("wf-1/run-2/roll", "7")
    value = label_value("wf-1/run-2/roll", 8)
    assert len(value) <= 63 and value.endswith(".r8") and value != label_value("wf-1/run-2/roll", 9)
    assert _age("2020-01-01T00:00:00.123456789Z") > 0 and _age("garbage") == 0.0


def test_the_revision_that_runs_is_the_deployed_one_else_the_last_superseded() -> None:
    """A SIGTERMed upgrade can leave its predecessor superseded and itself failed: no revision is
    deployed, and the last one that succeeded is what runs (Helm upgrades from it too)."""

    def hist(*statuses: str) -> list[HelmRevision]:
        return [HelmRevision(revision=i, status=s) for i, s in enumerate(statuses, 1)]

    assert (
        last_deployed(hist("superseded", "deployed", "failed")) or HelmRevision(revision=0, status="")
    ).revision == 2
    assert (last_deployed(hist("superseded", "failed")) or HelmRevision(revision=0, status="")).revision == 1
    assert last_deployed(hist("failed")) is None
