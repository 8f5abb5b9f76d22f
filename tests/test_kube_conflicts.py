"""kube_client.retry_conflicts: a read-modify-write that loses to a controller's status writes is
retried with growing pauses (a rollout's first second holds several status writes)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kubernetes.client.exceptions import ApiException

from activities.kube_client import retry_conflicts


def losing(times: int, status: int = 409) -> tuple[list[int], Callable[[], str]]:
    calls: list[int] = []

    def fn() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise ApiException(status=status)
        return "patched"

    return calls, fn


def test_seven_conflicts_in_a_row_still_patch() -> None:
    calls, fn = losing(7)
    assert retry_conflicts(fn, first_pause=0.001) == "patched"
    assert len(calls) == 8


def test_the_eighth_conflict_and_any_other_error_propagate() -> None:
    calls, fn = losing(8)
    with pytest.raises(ApiException) as caught:
        retry_conflicts(fn, first_pause=0.001)
    assert caught.value.status == 409 and len(calls) == 8
    calls, fn = losing(1, status=422)
    with pytest.raises(ApiException):
        retry_conflicts(fn, first_pause=0.001)
    assert len(calls) == 1
