"""The probe's counting (activities/probe.py ``Probe``), driven by a fake clock: an outage lasts
from the start of its first failed request to the start of the next successful one."""

from __future__ import annotations

from activities.probe import Probe, resumed_state
from model import io

INP = io.ProbeInput(service="keystone", service_type="identity", cloud="lab")


def run(outcomes: str, start: float = 1000.0) -> Probe:
    """One request a second from ``start``: "." succeeded, "x" failed."""
    probe = Probe(resumed_state(INP, [], attempt=1).model_copy(update={"started_at": start}))
    for i, c in enumerate(outcomes):
        probe.record(start + i, None if c == "." else ConnectionError(f"refused #{i}"))
    return probe


def test_outages_are_runs_of_failures_measured_to_the_next_success() -> None:
    probe = run("..xxx..x....xxxxx.")
    a = probe.result(now=1000.0 + 18)
    assert (a.requests, a.errors, a.outages) == (18, 9, 3)
    assert a.longest_outage_s == 5.0  # failures at 13..17, success at 18
    assert a.last_error == "ConnectionError: refused #16" and a.api == "token issue" and a.seconds == 18.0


def test_an_outage_open_at_the_end_counts_up_to_then() -> None:
    a = run("...xx").result(now=1000.0 + 6.5)
    assert a.outages == 1 and a.longest_outage_s == 3.5 and a.errors == 2


def test_a_retry_resumes_the_last_heartbeat() -> None:
    first = run("..xx")
    details = [first.state.model_dump(mode="json")]  # what the next attempt finds in heartbeat_details
    second = Probe(resumed_state(INP, details, attempt=2))
    assert second.state.counters.requests == 4 and second.state.outage_since == 1002.0
    second.record(1010.0, None)  # the outage open at the last heartbeat ends at the next success
    a = second.result(now=1011.0)
    assert (a.requests, a.errors, a.outages, a.attempts) == (5, 2, 1, 2)
    assert a.longest_outage_s == 8.0 and a.seconds == 11.0


def test_no_heartbeat_details_start_fresh() -> None:
    state = resumed_state(INP, ["not a state"], attempt=3)
    assert state.counters.requests == 0 and state.counters.attempts == 3 and state.started_at > 0
