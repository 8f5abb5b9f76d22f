"""What the Fleet workflow shows and returns: the UI's current details and the report.

The details show what the fleet itself knows — its waves, which clouds started, how the finished
ones ended, the decision it waits for — and where to look for the rest: a running cloud's progress
is in its own Upgrade workflow (``upgrade/<cloud>``), whose details and status query tell its story.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from model import io_fleet as fio

ICONS = {
    "pending": "⏳",
    "waiting": "✋",
    "running": "🔄",
    "succeeded": "✅",
    "rolled-back": "↩",
    "failed": "❌",
    "aborted": "⛔",
    "busy": "🔒",
    "refused": "🚫",
    "skipped": "⏭",
    "done": "✅",
    "stopped": "❌",
}


def render_fleet(
    name: str,
    phase: str,
    waves: list[fio.WaveStatus],
    clouds: dict[str, fio.CloudStatus],
    waiting: str,
    message: str,
) -> str:
    any_cloud = next(iter(clouds.values()), None)
    release = f"{any_cloud.release_from} → {any_cloud.release_to}" if any_cloud else ""
    lines = [f"### fleet {name}: {release} — {phase}", ""]
    if waiting:
        lines += [f"✋ waits for **{waiting}**: `stackhop fleet approve {name} {waiting}` starts the wave", ""]
    lines += ["| wave | cloud | state | workflow | note |", "|---|---|---|---|---|"]
    for w in waves:
        head = f"{w.name} ({ICONS.get(w.state, '')} {w.state}, failures {w.failures}/{w.allowed_failures} allowed)"
        for cloud in w.clouds:
            c = clouds[cloud]
            note = c.message.replace("|", "/")[:120]
            lines.append(f"| {head} | {cloud} | {ICONS.get(c.state, '')} {c.state} | {c.workflow_id} | {note} |")
            head = ""
    if message:
        lines += ["", message]
    return "\n".join(lines)


def release_after(c: fio.CloudStatus) -> str:
    """The release a cloud runs after the fleet, where the fleet knows it."""
    if c.state == "succeeded":
        return c.release_to
    if c.state in ("rolled-back", "aborted", "refused", "skipped"):
        return c.release_from  # rolled back, or never touched by this fleet
    return ""  # failed (services may differ) or busy (another upgrade holds it): see its own report


def report_of(report: fio.FleetReport, clouds: dict[str, fio.CloudStatus]) -> fio.FleetReport:
    """The report of every cloud, in the fleet's order (canary, then the waves)."""
    lines = [
        fio.CloudReport(
            cloud=c.cloud,
            wave=c.wave,
            outcome=_outcome(c.state),
            workflow_id=c.workflow_id,
            release_before=c.release_from if c.state != "busy" else "",
            release_after=release_after(c),
            message=c.message,
        )
        for c in clouds.values()
    ]
    first = next(iter(clouds.values()), None)
    return report.model_copy(
        update={
            "clouds": lines,
            "release_from": first.release_from if first else "",
            "release_to": first.release_to if first else "",
        }
    )


def _outcome(state: fio.CloudState) -> fio.CloudOutcome:
    """A cloud still pending at the end was never started; none is running then (the fleet waits)."""
    return "skipped" if state in ("pending", "running") else state  # type: ignore[return-value]
