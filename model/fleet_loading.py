"""Read a fleet file, load the UpgradePlans it names, and say precisely what is wrong with them.

The same report as model/loading.py gives for one plan: ``FILE:LINE: FIELD: what (fix: what to
do)``, every problem collected before any is shown. A referenced plan's problems are reported with
that plan's own file and lines (:class:`FleetError` holds one :class:`PlanError` per file), and the
fleet file says which of its clouds names it. Nothing is contacted while a fleet is validated.

:func:`fleet_problems` is pure (no I/O): the Fleet workflow runs it again on its input, which
anyone who can start a workflow writes.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from model.fleet import FleetPlan
from model.loading import PlanError, Problem, _line, _line_map, _pydantic_problems, _read_yaml, _secrets, load_plan


class FleetError(PlanError):
    """A fleet that must not be run: the fleet file's problems and each invalid plan's, by file."""

    def __init__(self, errors: list[PlanError]):
        self.errors = errors
        super().__init__(errors[0].file, [p for e in errors for p in e.problems])
        self.args = ("\n".join(str(e) for e in errors),)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


def fleet_problems(fleet: FleetPlan) -> list[Problem]:
    """Every semantic problem of a fleet whose fields are valid (plans loaded or not)."""
    problems: list[Problem] = []
    names = [c.name for c in fleet.clouds]
    known = ", ".join(names)
    for i, c in enumerate(fleet.clouds):
        if c.name in names[:i]:
            problems.append(Problem(f"clouds[{i}].name", f"cloud {c.name!r} is listed twice", "list each cloud once"))
    placed: dict[str, str] = {}  # cloud -> where it is upgraded (canary, wave NAME)
    for j, name in enumerate(fleet.canary):
        if name not in names:
            problems.append(Problem(f"canary[{j}]", f"unknown cloud {name!r}", f"name one of: {known}"))
        elif name in placed:
            problems.append(Problem(f"canary[{j}]", f"{name} is listed twice", "list each canary cloud once"))
        placed[name] = "the canary"
    wave_names: list[str] = []
    for i, w in enumerate(fleet.waves):
        at = f"waves[{i}]"
        if w.name in wave_names:
            problems.append(Problem(f"{at}.name", f"wave {w.name!r} is named twice", "give each wave its own name"))
        wave_names.append(w.name)
        members = fleet.wave_clouds(i)
        if not members:
            how = "selects no cloud" if w.selector is not None else "has no cloud"
            fix = "match the labels of a cloud, or remove the wave" if w.selector else "list its clouds or remove it"
            problems.append(Problem(f"{at}.selector" if w.selector is not None else f"{at}.clouds", how, fix))
            continue
        for j, name in enumerate(members):
            field = f"{at}.clouds[{j}]" if w.clouds is not None else f"{at}.selector"
            if name not in names:
                problems.append(Problem(field, f"unknown cloud {name!r}", f"name one of: {known}"))
            elif name in placed:
                problems.append(
                    Problem(
                        field,
                        f"{name} is already upgraded in {placed[name]}",
                        "upgrade each cloud once: remove it here or there",
                    )
                )
            placed.setdefault(name, f"wave {w.name}")
        allowed = w.allowed_failures(len(members))
        if allowed >= len(members):
            problems.append(
                Problem(
                    f"{at}.max_failed",
                    f"max_failed {w.max_failed} lets all {len(members)} clouds of wave {w.name} fail: the wave "
                    "could never stop the fleet",
                    f"allow fewer than {len(members)} failures (0 stops at the first)",
                )
            )
    for i, c in enumerate(fleet.clouds):
        if c.name not in placed:
            problems.append(
                Problem(f"clouds[{i}].name", f"{c.name} is in no wave", "add it to a wave (or to the canary)")
            )
    problems += _plan_problems(fleet)
    return problems


def _plan_problems(fleet: FleetPlan) -> list[Problem]:
    """What the loaded plans say together: one upgrade per cloud, one release range."""
    problems: list[Problem] = []
    ids: dict[str, str] = {}
    first: tuple[str, str] | None = None
    for i, c in enumerate(fleet.clouds):
        plan = c.upgrade_plan
        if plan is None:
            continue
        at = f"clouds[{i}].plan"
        if plan.workflow_id in ids:
            problems.append(
                Problem(
                    at,
                    f"{c.name} and {ids[plan.workflow_id]} upgrade the same cloud {plan.cloud.name!r} "
                    f"(one workflow {plan.workflow_id})",
                    "name each cloud's own plan (its cloud.name is its upgrade's lock)",
                )
            )
        ids.setdefault(plan.workflow_id, c.name)
        release = f"{plan.release.from_} -> {plan.release.to}"
        if first is None:
            first = (c.name, release)
        elif release != first[1]:
            problems.append(
                Problem(
                    at,
                    f"{c.name} upgrades {release}, {first[0]} {first[1]}",
                    "a fleet upgrades every cloud over one release range: align the plans' release",
                )
            )
    return problems


def parse_fleet(text: str, file: str = "<fleet>", base: Path | None = None) -> FleetPlan:
    """Validate fleet text and load the plans it names (relative to ``base``, default the current
    directory). Raises PlanError (the fleet alone) or FleetError (plans too)."""
    node, data = _read_yaml(text, file)
    if not isinstance(data, dict):
        raise PlanError(file, [Problem("", "a fleet is a YAML mapping (apiVersion, kind, ...)", "see README, Fleets")])
    lines = _line_map(node) if node is not None else {}

    def placed(problems: list[Problem]) -> PlanError:
        return PlanError(file, [Problem(p.path, p.message, p.fix, p.line or _line(lines, p.path)) for p in problems])

    problems = _secrets(data)
    for i, c in enumerate(data.get("clouds") or []):
        if isinstance(c, dict) and "upgrade_plan" in c:
            problems.append(
                Problem(f"clouds[{i}].upgrade_plan", "set by the loader", "name the plan's file: plan: PATH")
            )
    if problems:
        raise placed(problems)
    try:
        fleet = FleetPlan.model_validate(data)
    except ValidationError as e:
        raise placed(_pydantic_problems(e)) from None
    plan_errors: list[PlanError] = []
    clouds = []
    for i, c in enumerate(fleet.clouds):
        path = Path(c.plan)
        if not path.is_absolute():
            path = ((base or Path.cwd()) / path).resolve()
        try:
            plan = load_plan(path)
        except PlanError as e:
            plan_errors.append(e)
            problems.append(
                Problem(f"clouds[{i}].plan", f"the plan {path} is invalid", "correct it: its problems are listed above")
            )
            clouds.append(c)
            continue
        clouds.append(c.model_copy(update={"plan": str(path), "upgrade_plan": plan}))
    fleet = fleet.model_copy(update={"clouds": clouds})
    problems += fleet_problems(fleet)
    if problems or plan_errors:
        errors = [*plan_errors, placed(problems)] if problems else plan_errors
        raise FleetError(errors) if len(errors) > 1 else errors[0]
    return fleet


def load_fleet(path: str | Path) -> FleetPlan:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise PlanError(str(path), [Problem("", f"cannot read the fleet: {e.strerror}", "check the path")]) from None
    return parse_fleet(text, str(path), base=p.resolve().parent)
