"""The markdown the Temporal UI shows as an upgrade's current details."""

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


def render_details(plan: UpgradePlan, phase: str, progress: dict[str, io.ServiceProgress], message: str) -> str:
    lines = [
        f"### {plan.cloud.name}: {plan.release.from_} → {plan.release.to} — {phase}",
        "",
        "| service | state | step | progress | note |",
        "|---|---|---|---|---|",
    ]
    for p in progress.values():
        note = p.message.replace("|", "/")[:120]
        if p.waiting_for:
            note = f"waiting for {p.waiting_for}. {note}"
        lines.append(
            f"| {p.service} | {ICONS.get(p.state, '')} {p.state} | {p.step} "
            f"| {bar(p.steps_done, p.steps_total)} {p.steps_done}/{p.steps_total} | {note} |"
        )
    if message:
        lines += ["", message]
    return "\n".join(lines)
