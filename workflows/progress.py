"""The markdown the Temporal UI shows as an upgrade's current details.

It shows what the Upgrade workflow itself knows — the waves, which service workflows have started,
how the finished ones ended — and where to look for the rest: a running service's step is in its
own workflow's details (and its ``status`` query, which `stackhop status` and `watch` read).
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from model import io
    from model.plan import UpgradePlan

ICONS = {
    "pending": "⏳",
    "running": "🔄",
    "waiting": "✋",
    "paused": "⏸",
    "rolling-back": "↩",
    "succeeded": "✅",
    "rolled-back": "↩✅",
    "failed": "❌",
    "aborted": "⛔",
}


def bar(done: int, total: int, width: int = 10) -> str:
    filled = round(width * done / total) if total else 0
    return "█" * filled + "░" * (width - filled)


def render_details(
    plan: UpgradePlan,
    phase: str,
    waves: list[list[str]],
    services: dict[str, io.ServiceProgress],
    message: str,
) -> str:
    started = sum(1 for p in services.values() if p.state != "pending")
    finished = sum(1 for p in services.values() if p.state not in ("pending", "running"))
    lines = [
        f"### {plan.cloud.name}: {plan.release.from_} → {plan.release.to} — {phase}",
        "",
        f"services started {started}/{len(services)}, finished {finished}/{len(services)}",
        "",
        "| wave | service | state | steps | outcome |",
        "|---|---|---|---|---|",
    ]
    for i, wave in enumerate(waves, 1):
        for name in wave:
            p = services[name]
            steps = f"{bar(p.steps_done, p.steps_total)} {p.steps_done}/{p.steps_total}" if p.steps_done else ""
            note = p.message.replace("|", "/")[:120]
            if p.state == "running":
                note = f"see workflow {plan.workflow_id}/{name}"
            lines.append(f"| {i} | {name} | {ICONS.get(p.state, '')} {p.state} | {steps} | {note} |")
    if message:
        lines += ["", message]
    return "\n".join(lines)
