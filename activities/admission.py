"""``plan.admit``: the worker decides whether it runs a plan, before any step of an Upgrade.

Why an activity: the workflow's input is whatever the caller of ``start_workflow`` sent — the CLI
validated it, but anyone with access to the task queue can skip the CLI. The worker therefore
re-validates every plan with the CLI's own validator (``model.loading.revalidate``: inline secrets,
schema, recipes, charts) and checks it against its own configuration (``model.trust``: the command
allow-list, the credential and snapshot roots). That configuration is the worker's environment and
filesystem, which the workflow sandbox must not read, so the check is an activity: the first thing
the Upgrade workflow runs (workflows/upgrade.py, patch ``plan-admit``).

A refusal is permanent (``PlanInvalid``) and lists every problem as ``FIELD: what (fix: ...)``; the
upgrade then ends failed in its pre-flight with nothing changed.
"""

from __future__ import annotations

import structlog
from temporalio import activity

from model import errors, trust
from model.io import PLAN_ADMIT, AdmitInput, Admitted
from model.loading import PlanError, revalidate

log = structlog.get_logger(__name__)


@activity.defn(name=PLAN_ADMIT)
def admit(inp: AdmitInput) -> Admitted:
    """Refuse (PlanInvalid) a plan the CLI would refuse or this worker's configuration does not allow."""
    name = inp.plan_file or f"plan {inp.plan.metadata.name}"
    problems: list[str] = []
    try:
        revalidate(inp.plan, name)
    except PlanError as e:
        problems += [p.render(name) for p in e.problems]
    for r in trust.refusals(inp.plan):
        problems.append(f"{name}: {r.path}: {r.message} (fix: {r.fix})")
    if problems:
        log.warning("plan refused", plan=inp.plan.metadata.name, problems=problems)
        raise errors.permanent(
            errors.PLAN_INVALID,
            "the worker refuses this plan: " + "; ".join(problems),
            problems=problems,
        )
    credentials = ", ".join(trust.credential_roots()) or "no root"
    snapshots = ", ".join(trust.snapshot_roots()) or "no root"
    return Admitted(
        message=f"admitted by the worker: valid, commands allowed, credential files under {credentials}, "
        f"snapshots under {snapshots}"
    )
