"""What bench/scale.py reads from the histories, and the table it prints (kept apart so the run
itself stays short). Every figure comes from the server's event times or the processes' own
counters of one run; see bench/README.md for what each row means."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

PARTS = {  # where an upgrade's wall time goes, from the histories and the cluster's timestamps
    "preflight": "start -> set_images scheduled (pre-flight)",
    "rollout": "k8s.wait_rollout, started -> completed",
    "pods": "  set_images -> last new pod Ready (kwok)",
    "complete": "  set_images -> Deployment complete (ctrl-mgr)",
    "notice": "  Deployment complete -> wait_rollout done",
    "after": "wait_rollout done -> result",
    "dispatch": "activities waiting for a worker, summed",
    "wft_wait": "workflow tasks waiting for a worker, summed",
    "wft_run": "workflow tasks running in the worker, summed",
    "pre_acts": "pre-flight activities executing, summed",
}


@dataclass
class Phase:
    n: int
    walls: list[float]  # per upgrade: start_workflow -> result
    span: float  # first start -> last result
    cpu: dict[str, float]
    peak: dict[str, float]
    busiest: dict[str, float]
    requests: Counter[tuple[str, str]]
    service_events: list[int]
    upgrade_events: list[int]
    retries: int
    parts: dict[str, list[float]]  # per upgrade: where its wall time went (PARTS)
    outcomes: Counter[str] = field(default_factory=Counter)


def workflow_task_times(history: Any) -> tuple[float, float]:
    """(scheduled -> started, started -> completed) of the workflow tasks, summed."""
    at: dict[int, float] = {}
    wait = run = 0.0
    for e in history.events:
        t = e.event_time.ToMicroseconds() / 1e6
        at[e.event_id] = t
        if e.HasField("workflow_task_started_event_attributes"):
            wait += t - at[e.workflow_task_started_event_attributes.scheduled_event_id]
        elif e.HasField("workflow_task_completed_event_attributes"):
            run += t - at[e.workflow_task_completed_event_attributes.started_event_id]
    return wait, run


def history_figures(history: Any) -> tuple[int, int, list[list[Any]]]:
    """(events, activity attempts beyond the first, [activity, scheduled, started, closed] each) from
    the server's event times: a started event carries its attempt number."""
    extra = 0
    spans: dict[int, list[Any]] = {}
    for e in history.events:
        t = e.event_time.ToMicroseconds() / 1e6
        if e.HasField("activity_task_scheduled_event_attributes"):
            spans[e.event_id] = [e.activity_task_scheduled_event_attributes.activity_type.name, t, t, t]
        elif e.HasField("activity_task_started_event_attributes"):
            a = e.activity_task_started_event_attributes
            extra += max(0, a.attempt - 1)
            spans[a.scheduled_event_id][2] = t
        elif e.HasField("activity_task_completed_event_attributes"):
            spans[e.activity_task_completed_event_attributes.scheduled_event_id][3] = t
    return len(history.events), extra, list(spans.values())


BACKGROUND = ("(non-resource)", "leases", "endpoints", "endpointslices", "nodes", "namespaces")


def background(resource: str) -> bool:
    """Requests that come with time, not with rollouts: leader leases, node heartbeats, discovery
    (kubectl's /metrics reads), the apiserver's own endpoint reconciling."""
    return resource.split("/")[0] in BACKGROUND


def rng(xs: list[int]) -> str:
    return f"{min(xs)}" if min(xs) == max(xs) else f"{min(xs)}-{max(xs)}"


def report(phases: list[Phase], slots: int, controller: dict[str, str]) -> None:
    from bench.scale_lab import DELAY, REPLICAS

    base = statistics.median(phases[0].walls)
    cols = "".join(f"{'N=' + str(p.n):>12}" for p in phases)
    print(f"\n{'':<46}{cols}")

    def row(label: str, cells: list[str]) -> None:
        print(f"{label:<46}" + "".join(f"{c:>12}" for c in cells))

    print(f"{'':<46}{'(seconds, median / max; cluster times: 1 s resolution)':>36}")
    row("upgrades succeeded", [f"{p.outcomes['succeeded']}/{p.n}" for p in phases])
    row("wall per upgrade, median (s)", [f"{statistics.median(p.walls):.1f}" for p in phases])
    row("wall per upgrade, max (s)", [f"{max(p.walls):.1f}" for p in phases])
    row("median / median at N=1", [f"{statistics.median(p.walls) / base:.2f}" for p in phases])
    row("max / median at N=1", [f"{max(p.walls) / base:.2f}" for p in phases])
    for key, label in PARTS.items():
        row(f"  {label}", [f"{statistics.median(p.parts[key]):.1f} / {max(p.parts[key]):.1f}" for p in phases])
    row("phase wall, first start -> last result (s)", [f"{p.span:.1f}" for p in phases])
    for proc in ("worker", "temporal", "kube-apiserver"):
        row(f"{proc}: CPU seconds", [f"{p.cpu[proc]:.1f}" for p in phases])
        row(f"{proc}: cores (CPU s / phase wall)", [f"{p.cpu[proc] / p.span:.2f}" for p in phases])
        row(f"{proc}: most cores over any 1 s", [f"{p.busiest.get(proc, 0.0):.2f}" for p in phases])
        row(f"{proc}: peak RSS (MiB)", [f"{p.peak[proc]:.0f}" for p in phases])
    row("worker: CPU seconds per upgrade", [f"{p.cpu['worker'] / p.n:.2f}" for p in phases])
    row("history events per service workflow", [rng(p.service_events) for p in phases])
    row("history events per Upgrade workflow", [rng(p.upgrade_events) for p in phases])
    row("activity attempts beyond the first", [str(p.retries) for p in phases])
    keys = sorted({k for p in phases for k, v in p.requests.items() if v / p.n >= 0.05}, key=lambda k: (k[1], k[0]))
    rollout = [k for k in keys if not background(k[1])]
    print("\nkube-apiserver requests per rollout (apiserver_request_total after - before, / N; every client)")
    for verb, resource in rollout:
        row(f"  {verb:<7} {resource}", [f"{p.requests[(verb, resource)] / p.n:.1f}" for p in phases])
    # the worker is the only client that reads, patches and watches a cloud's Deployment during the
    # phase (the controller manager's informer watch on deployments is one long request for the
    # whole cluster; it writes deployments/status)
    row(
        "  deployments, every verb (the worker's)",
        [f"{sum(v for (_, r), v in p.requests.items() if r == 'deployments') / p.n:.1f}" for p in phases],
    )
    row(
        "  every request above",
        [f"{sum(p.requests[k] for k in rollout) / p.n:.1f}" for p in phases],
    )
    print("kube-apiserver requests of the phase not tied to rollouts (total per phase: leases, discovery, ...)")
    row("  total", [str(sum(v for k, v in p.requests.items() if background(k[1]))) for p in phases])
    print(
        f"\nEach upgrade: one service, one Deployment of {REPLICAS} pods, new pods Ready {DELAY} after they appear"
        " (kwok slow-ready); pre-flight (admission, workloads, ledger), roll, rollout. Database steps (snapshot,"
        " verify, migrations), checks and the availability probe are left out."
        f" Worker: python worker.py, {slots} activity slots; Temporal dev server with encrypted payloads."
        " One Kubernetes lab for all clouds; its kube-controller-manager with "
        + (" ".join(f"--{k}={v}" for k, v in controller.items()) or "its default flags")
        + "."
    )
    print(
        "Targets (worker, N=50): < 1 core and < 500 MB; wall within 20 % of N=1; apiserver requests per rollout"
        " constant in N."
    )
