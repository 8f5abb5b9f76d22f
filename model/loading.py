"""Read a plan file and say precisely what is wrong with it.

Every problem is reported as ``FILE:LINE: FIELD.PATH: what is wrong (fix: what to do)`` so an
operator can go straight to the line. All problems are collected before anything is reported;
nothing is contacted or changed while a plan is being validated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from model import order, releases
from model.plan import UpgradePlan

SECRET_KEY = re.compile(r"(pass(word|wd)?|secret|token|private[-_]?key|credential|api[-_]?key)$", re.I)
URL_WITH_PASSWORD = re.compile(r"://[^/\s:@]+:[^/\s@]+@")


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    fix: str
    line: int | None = None

    def render(self, file: str) -> str:
        where = f"{file}:{self.line}" if self.line else file
        field = self.path or "(document)"
        return f"{where}: {field}: {self.message} (fix: {self.fix})"


class PlanError(Exception):
    """A plan that must not be run. ``str()`` lists every problem, one a line."""

    def __init__(self, file: str, problems: list[Problem]):
        self.file = file
        self.problems = problems
        super().__init__("\n".join(p.render(file) for p in problems))


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_map(node: yaml.Node, path: str = "", out: dict[str, int] | None = None) -> dict[str, int]:
    """Field path -> 1-based line, from the YAML node tree."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            sub = f"{path}.{k.value}" if path else str(k.value)
            out[sub] = k.start_mark.line + 1
            _line_map(v, sub, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _line_map(v, f"{path}[{i}]", out)
    return out


def _line(lines: dict[str, int], path: str) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = re.sub(r"(\.[^.\[]+|\[\d+\])$", "", path)
    return lines.get("")


def _secrets(data: Any, path: str = "") -> list[Problem]:
    found: list[Problem] = []
    if isinstance(data, dict):
        for k, v in data.items():
            sub = f"{path}.{k}" if path else str(k)
            if isinstance(v, (str, int)) and not isinstance(v, bool) and SECRET_KEY.search(str(k)):
                found.append(Problem(sub, "inline secret in a plan file", _SECRET_FIX))
            else:
                found += _secrets(v, sub)
    elif isinstance(data, list):
        for i, v in enumerate(data):
            found += _secrets(v, f"{path}[{i}]")
    elif isinstance(data, str) and URL_WITH_PASSWORD.search(data):
        found.append(Problem(path, "URL with an inline password", _SECRET_FIX))
    return found


_SECRET_FIX = (
    "keep secrets out of plans: use database.defaults_file (a MariaDB option file), "
    "a clouds.yaml entry, or a Kubernetes Secret"
)

_FIXES = {
    "missing": "add this field",
    "extra_forbidden": "remove it or check its spelling (see `stackhop plan schema`)",
    "literal_error": "use one of the allowed values",
    "union_tag_invalid": "use one of the allowed kinds",
    "string_pattern_mismatch": "use the documented format",
    "too_short": "give at least one entry",
}


def _pydantic_problems(err: ValidationError) -> list[Problem]:
    problems = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p in _UNION_TAGS))
        path = _dotted(loc).replace("from_", "from")
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        if e["type"] == "string_pattern_mismatch" and path.startswith("release."):
            msg, fix = f"{e['input']!r} is not a release name", 'write YYYY.1 or YYYY.2, quoted, e.g. "2026.1"'
        else:
            fix = _FIXES.get(e["type"], "correct the value")
        ctx = e.get("ctx") or {}
        if e["type"] == "literal_error" and "expected" in ctx:
            fix = f"use one of {ctx['expected']}"
        if e["type"] == "union_tag_invalid" and "expected_tags" in ctx:
            msg = f"unknown kind {ctx.get('tag')!r}"
            fix = f"use one of {ctx['expected_tags']}"
        problems.append(Problem(path, msg, fix))
    return problems


_UNION_TAGS = {"endpoint", "tempest", "upgrade-status"}


def _semantic_problems(plan: UpgradePlan) -> list[Problem]:
    problems: list[Problem] = []
    bad = releases.upgrade_problem(plan.release.from_, plan.release.to)
    if bad:
        problems.append(Problem("release.to", bad[0], bad[1]))
    names = [s.name for s in plan.services]
    seen: set[str] = set()
    for i, s in enumerate(plan.services):
        if s.name in seen:
            problems.append(Problem(f"services[{i}].name", f"duplicate service {s.name!r}", "name each service once"))
        seen.add(s.name)
        for j, d in enumerate(s.depends_on or []):
            if d not in names:
                problems.append(
                    Problem(
                        f"services[{i}].depends_on[{j}]",
                        f"unknown service {d!r}",
                        f"depend on one of: {', '.join(n for n in names if n != s.name)}",
                    )
                )
            elif d == s.name:
                problems.append(
                    Problem(f"services[{i}].depends_on[{j}]", "a service cannot depend on itself", "remove it")
                )
        refs = [(w.kind, w.name) for w in s.workloads]
        for j, r in enumerate(refs):
            if r in refs[:j]:
                problems.append(
                    Problem(
                        f"services[{i}].workloads[{j}]", f"duplicate workload {r[0]}/{r[1]}", "list each workload once"
                    )
                )
        if s.migration.mode != "none" and s.database is None:
            problems.append(
                Problem(
                    f"services[{i}].migration.mode",
                    f"{s.migration.mode} migration without a database",
                    "add services[].database so stackhop can snapshot it first, or set mode: none",
                )
            )
    gates = [s.gate_name for s in plan.services if s.gate_name]
    for g in {g for g in gates if gates.count(g) > 1}:
        problems.append(Problem("services[].gate.name", f"gate {g!r} is used twice", "give each gate its own name"))
    if not problems:
        try:
            order.waves(plan.services)
        except order.CycleError as e:
            first = names.index(e.cycle[0])
            problems.append(Problem(f"services[{first}].depends_on", f"dependency cycle: {e}", "break the cycle"))
    return problems


def parse_plan(text: str, file: str = "<plan>") -> UpgradePlan:
    """Validate plan text. Raises PlanError naming the file, each field path and a fix."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else None
        raise PlanError(
            file, [Problem("", f"malformed YAML: {getattr(e, 'problem', e)}", "fix the YAML syntax", line)]
        ) from None
    if not isinstance(data, dict):
        raise PlanError(file, [Problem("", "a plan is a YAML mapping (apiVersion, kind, ...)", "start from examples/")])
    lines = _line_map(node) if node is not None else {}
    problems = _secrets(data)
    if not problems:
        try:
            plan = UpgradePlan.model_validate(data)
        except ValidationError as e:
            problems = _pydantic_problems(e)
        else:
            problems = _semantic_problems(plan)
    if problems:
        raise PlanError(file, [Problem(p.path, p.message, p.fix, p.line or _line(lines, p.path)) for p in problems])
    return plan


def load_plan(path: str | Path) -> UpgradePlan:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise PlanError(str(path), [Problem("", f"cannot read the plan: {e.strerror}", "check the path")]) from None
    return parse_plan(text, str(path))
