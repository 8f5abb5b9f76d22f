"""Read a plan file and say precisely what is wrong with it.

Every problem is reported as ``FILE:LINE: FIELD.PATH: what is wrong (fix: what to do)`` so an
operator can go straight to the line. All problems are collected before anything is reported;
nothing is contacted or changed while a plan is being validated.
"""

from __future__ import annotations

import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from model import order, recipes, releases
from model.plan import AT, FIX, K8S_OBJECT_RE, NAME_RE, SQL_NAME_ERROR, Service, UpgradePlan

SECRET_KEY = re.compile(r"(pass(word|wd)?|secret|token|private[-_]?key|credential|api[-_]?key)$", re.I)
# Plan fields that *name* a Kubernetes Secret (credentials_secret, config_secret, any *_secret): the
# way to keep secrets out of a plan. Their value is a Secret's name, which never holds these
# characters; a value with any of them is a secret written inline.
SECRET_REFERENCE_KEY = re.compile(r".+_secret(_name)?$", re.I)
NOT_IN_A_NAME = re.compile(r"[^A-Za-z0-9._-]")
# Inline secrets found by value, under any key
URL_WITH_PASSWORD = re.compile(r"://[^/\s:@]+:[^/\s@]+@")
PEM_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
PASSWORD_ARGUMENT = re.compile(r"(^|[\s;&|'\"])-{0,2}(password|passwd|pwd)[=:]\S", re.I)


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
    """The line of ``path``, else of its nearest ancestor that the document has, else line 1.

    Every round removes the last segment (``.field``, ``[3]`` or the top-level field), or at least
    one character of a path it cannot split, so the loop ends for any path."""
    while path:
        if path in lines:
            return lines[path]
        shorter = _LAST_SEGMENT.sub("", path, count=1)
        path = shorter if shorter != path else path[:-1]
    return lines.get("")


_LAST_SEGMENT = re.compile(r"(\.[^.\[]+|\[\d+\]|^[^.\[]+)$")


def _secrets(data: Any, path: str = "") -> list[Problem]:
    """Inline secrets, by key and by value: a secret-ish key with a scalar value, unless the key
    names a Secret and the value can be a Secret's name; a private key, a URL with a password or a
    password argument in any string."""
    found: list[Problem] = []
    if isinstance(data, dict):
        for k, v in data.items():
            sub = f"{path}.{k}" if path else str(k)
            scalar = isinstance(v, (str, int)) and not isinstance(v, bool)
            if scalar and SECRET_REFERENCE_KEY.match(str(k)):
                if NOT_IN_A_NAME.search(str(v)):
                    found.append(Problem(sub, "inline secret in a plan file (this field names a Secret)", _SECRET_FIX))
            elif scalar and SECRET_KEY.search(str(k)):
                found.append(Problem(sub, "inline secret in a plan file", _SECRET_FIX))
            else:
                found += _secrets(v, sub)
    elif isinstance(data, list):
        for i, v in enumerate(data):
            found += _secrets(v, f"{path}[{i}]")
    elif isinstance(data, str):
        if PEM_PRIVATE_KEY.search(data):
            found.append(Problem(path, "inline private key", _SECRET_FIX))
        elif URL_WITH_PASSWORD.search(data):
            found.append(Problem(path, "URL with an inline password", _SECRET_FIX))
        elif PASSWORD_ARGUMENT.search(data):
            found.append(Problem(path, "inline password argument", _SECRET_FIX))
    return found


_SECRET_FIX = (
    "keep secrets out of plans: use database.defaults_file (a MariaDB option file), "
    "a clouds.yaml entry, or a Kubernetes Secret named by database.credentials_secret / migration.config_secret"
)

_FIXES = {
    "missing": "add this field",
    "extra_forbidden": "remove it or check its spelling (see `stackhop plan schema`)",
    "literal_error": "use one of the allowed values",
    "union_tag_invalid": "use one of the allowed kinds",
    "string_pattern_mismatch": "use the documented format",
    "too_short": "give at least one entry",
    SQL_NAME_ERROR: "use letters, digits and _ only, at most 64, not only digits: "
    "the name is written unquoted into SQL and shell commands",
}


_PATTERN_FIXES = {
    NAME_RE: "use lowercase letters, digits, '-' and '.', at most 63, starting and ending alphanumeric",
    K8S_OBJECT_RE: "use a Kubernetes object name: lowercase letters, digits, '-' and '.', at most 253",
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
        if e["type"] == "string_pattern_mismatch" and ctx.get("pattern") in _PATTERN_FIXES:
            fix = _PATTERN_FIXES[ctx["pattern"]]
        if e["type"] == "literal_error" and "expected" in ctx:
            fix = f"use one of {ctx['expected']}"
        if e["type"] == "union_tag_invalid" and "expected_tags" in ctx:
            msg = f"unknown kind {ctx.get('tag')!r}"
            fix = f"use one of {ctx['expected_tags']}"
        if AT in ctx and FIX in ctx:  # a model's own rule, placed at the field it is about
            path, fix = f"{path}.{ctx[AT]}" if path else str(ctx[AT]), str(ctx[FIX])
        elif FIX in ctx:  # a field's own rule, with its own fix
            fix = str(ctx[FIX])
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
        if s.migration.mode != "none" and not s.all_databases:
            problems.append(
                Problem(
                    f"services[{i}].migration.mode",
                    f"{s.migration.mode} migration without a database",
                    "add services[].database (or databases) so stackhop can snapshot it first, or set mode: none",
                )
            )
        problems += _recipe_problems(i, s)
        problems += _data_plane_problems(i, s, plan.release.to)
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


def _recipe_problems(i: int, s: Service) -> list[Problem]:
    """What the service's own recipe (model/recipes/) needs from its part of the plan."""
    recipe = recipes.service_recipe(s.name)
    if recipe is None:
        return []
    at = f"services[{i}]"
    problems: list[Problem] = []
    if s.migration.mode not in recipe.modes:
        problems.append(
            Problem(
                f"{at}.migration.mode",
                f"{s.name}'s recipe has no {s.migration.mode} mode",
                f"use one of {', '.join(recipe.modes)} (recommended: {recipe.mode}: {recipe.mode_reason})",
            )
        )
        return problems
    if recipe.proven != "run" and s.migration.unproven_recipe != "accept":
        problems.append(
            Problem(
                f"{at}.migration.unproven_recipe",
                f"{s.name}'s recipe was never run against a real {s.name} (proven: {recipe.proven}): its steps "
                "follow the upstream docs only",
                "set migration.unproven_recipe: accept to run it anyway (rehearse it on a copy of the cloud first), "
                f"or upgrade {s.name} by hand",
            )
        )
    dbs = s.all_databases
    if s.migration.mode != "none" and dbs and len(recipe.databases) > 1 and len(dbs) != len(recipe.databases):
        field = "databases" if s.databases else "database"
        listed = ", ".join(recipe.databases)
        problems.append(
            Problem(
                f"{at}.{field}",
                f"{s.name} keeps its data in {len(recipe.databases)} databases ({listed}), the plan names "
                f"{len(dbs)}: they are snapshotted, verified and restored together",
                "list them all under databases: (the names your deployment uses), e.g. databases: "
                + "["
                + ", ".join(f"{{name: {n}}}" for n in recipe.databases)
                + "]",
            )
        )
    steps = recipes.service_steps(s)
    if s.helm is not None and recipes.UNPIN.name in steps and not s.helm.restart_value:
        problems.append(
            Problem(
                f"{at}.helm.restart_value",
                f"{s.name}'s recipe restarts its workloads to lift the RPC pin, and under Helm a restart is a "
                "values change the chart reads",
                "name the value path the chart writes into the pod templates' annotations, e.g. "
                "restart_value: pod.annotations.restart",
            )
        )
    return problems


def _data_plane_problems(i: int, s: Service, to: str) -> list[Problem]:
    """A data plane needs a recipe that has one (the service record of its nodes, the version that
    record reaches at ``to``) and a mode whose recipe runs the dataplane step."""
    if s.data_plane is None:
        return []
    at = f"services[{i}].data_plane"
    recipe = recipes.service_recipe(s.name)
    with_one = [
        r.service
        for r in recipes.RECIPES_BY_SERVICE.values()
        if r.data_plane_binary and any(recipes.DATAPLANE in m.steps for m in r.modes.values())
    ]
    if recipe is None or not recipe.data_plane_binary:
        return [
            Problem(
                at,
                f"{s.name} has no recipe with a data plane (model/recipes/): stackhop cannot drain or replace its "
                "nodes",
                f"remove data_plane from {s.name}; services whose recipe has one: {', '.join(with_one) or 'none'}",
            )
        ]
    if recipes.DATAPLANE not in recipes.recipe_for(s).steps:
        modes = [m for m, r in recipe.modes.items() if recipes.DATAPLANE in r.steps]
        return [
            Problem(
                f"services[{i}].migration.mode",
                f"{s.name}'s {s.migration.mode} recipe has no dataplane step",
                f"use one of {', '.join(modes)}, or remove data_plane",
            )
        ]
    if to not in recipe.service_versions:
        known = ", ".join(recipe.service_versions) or "none"
        return [
            Problem(
                at,
                f"{s.name}'s recipe knows no service version of {to} (it knows {known}): an upgraded node's "
                f"{recipe.data_plane_binary} record could not be checked",
                f"upgrade to a release the recipe knows, or add {to}'s SERVICE_VERSION to model/recipes/{s.name}.py",
            )
        ]
    return []


# A plan is a few hundred YAML nodes; aliases can make a small file expand to billions ("billion
# laughs") or refer to themselves, and both would stall every walk over the document.
MAX_NODES = 100_000
MAX_DEPTH = 50


def _shape_problem(node: yaml.Node) -> Problem | None:
    """A refusal when the document, aliases expanded, is too deep (or recursive) or too large."""
    memo: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded size, height)

    def measure(n: yaml.Node, depth: int) -> tuple[int, int]:
        if id(n) in memo:
            size, height = memo[id(n)]
        else:
            if depth > MAX_DEPTH:
                raise _TooDeep(n)
            children: list[yaml.Node] = []
            if isinstance(n, yaml.MappingNode):
                children = [c for pair in n.value for c in pair]
            elif isinstance(n, yaml.SequenceNode):
                children = list(n.value)
            size, height = 1, 0
            for c in children:
                csize, cheight = measure(c, depth + 1)
                size, height = size + csize, max(height, cheight + 1)
                if size > MAX_NODES:
                    raise _TooLarge(n)
            memo[id(n)] = (size, height)
        if depth + height > MAX_DEPTH:
            raise _TooDeep(n)
        return size, height

    try:
        measure(node, 0)
    except _TooDeep as e:
        return Problem(
            "",
            f"the document nests deeper than {MAX_DEPTH} levels (or an alias refers to itself)",
            "write the plan as plain nested mappings (see examples/)",
            e.node.start_mark.line + 1,
        )
    except _TooLarge as e:
        return Problem(
            "",
            f"the document expands to more than {MAX_NODES} values (aliases included)",
            "write the plan without nested aliases (see examples/)",
            e.node.start_mark.line + 1,
        )
    return None


class _TooDeep(Exception):
    def __init__(self, node: yaml.Node):
        self.node = node


class _TooLarge(Exception):
    def __init__(self, node: yaml.Node):
        self.node = node


# libyaml's loader when PyYAML was built with it (ten times faster; same nodes, marks and errors)
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(text: str, file: str) -> tuple[yaml.Node | None, Any]:
    """(node tree, data) of a single YAML document; PlanError for anything that is not one.

    YAML errors carry a line; the constructors can also raise plain ValueError and friends (a date
    such as 2025-13-45, an integer of 5000 digits) and deep nesting a RecursionError: all of them
    are the operator's YAML, so all of them are refused the same way."""
    loader = _SafeLoader(text)
    try:
        node = loader.get_single_node()
        shape = _shape_problem(node) if node is not None else None
        if shape:
            raise PlanError(file, [shape])
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = f"malformed YAML: {getattr(e, 'problem', None) or e}"
        raise PlanError(file, [Problem("", problem, "fix the YAML syntax", line)]) from None
    except (ValueError, OverflowError, TypeError, RecursionError) as e:
        problem = f"malformed YAML: {type(e).__name__}: {e}"[:300]
        raise PlanError(file, [Problem("", problem, "fix the YAML syntax (quote values meant as text)")]) from None
    finally:
        loader.dispose()
    return node, data


def chart_version(path: Path) -> str | None:
    """The version in a chart directory's or packaged chart's Chart.yaml (None: not a chart)."""
    try:
        if path.is_dir():
            meta = yaml.safe_load((path / "Chart.yaml").read_text())
        else:
            with tarfile.open(path) as tar:
                member = next(
                    (m for m in tar.getmembers() if m.name.count("/") == 1 and m.name.endswith("/Chart.yaml")), None
                )
                f = tar.extractfile(member) if member else None
                meta = yaml.safe_load(f.read()) if f else None
    except (OSError, tarfile.TarError, yaml.YAMLError):
        return None
    return str(meta.get("version")) if isinstance(meta, dict) and meta.get("version") is not None else None


def chart_in_repo(repo: str, chart: str, version: str) -> Path:
    """Where a local chart repository keeps ``chart`` at ``version``: ``<chart>-<version>/`` or
    ``<chart>-<version>.tgz`` (what `helm package` writes); the directory when neither exists."""
    unpacked = Path(repo) / f"{chart}-{version}"
    packed = unpacked.with_name(f"{unpacked.name}.tgz")
    return packed if packed.is_file() and not unpacked.is_dir() else unpacked


def _resolve_charts(plan: UpgradePlan, base: Path | None) -> tuple[UpgradePlan, list[Problem]]:
    """Chart and local repository paths become absolute (relative ones are relative to the plan file,
    as kustomize reads paths) and must hold the chart version the plan names: helm ignores
    ``--version`` for a path."""
    problems: list[Problem] = []
    services = []
    for i, s in enumerate(plan.services):
        if s.helm is None or not (s.helm.is_path or s.helm.local_repo):
            services.append(s)
            continue
        field = "repo" if s.helm.local_repo else "chart"
        path = Path(str(getattr(s.helm, field)))
        if not path.is_absolute():
            path = ((base or Path.cwd()) / path).resolve()
        at = f"services[{i}].helm.{field}"
        if field == "repo":
            if not path.is_dir():
                problems.append(Problem(at, f"no directory {path}", "give the local chart repository's path"))
                services.append(s)
                continue
            resolved = str(path)
            path = chart_in_repo(resolved, s.helm.chart, s.helm.version)
        else:
            resolved = str(path)
        found = chart_version(path) if path.exists() else None
        if not path.exists():
            fix = (
                f"add {s.helm.chart}-{s.helm.version}/ (or its .tgz) to the repository, or set the version it has"
                if field == "repo"
                else "give the chart's path (relative to the plan file)"
            )
            problems.append(Problem(at, f"no chart at {path}", fix))
        elif found is None:
            problems.append(Problem(at, f"{path} is not a chart (no Chart.yaml)", "point at a chart directory or .tgz"))
        elif found != s.helm.version:
            problems.append(
                Problem(
                    f"services[{i}].helm.version",
                    f"the chart at {path} is version {found}, not {s.helm.version}",
                    f"set version: {found}, or point chart at the {s.helm.version} chart",
                )
            )
        services.append(s.model_copy(update={"helm": s.helm.model_copy(update={field: resolved})}))
    return plan.model_copy(update={"services": services}), problems


def parse_plan(text: str, file: str = "<plan>", base: Path | None = None) -> UpgradePlan:
    """Validate plan text. Raises PlanError naming the file, each field path and a fix.

    ``base``: the directory relative chart paths are read from (the plan file's; default: the
    current directory)."""
    node, data = _read_yaml(text, file)
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
            if not problems:
                plan, problems = _resolve_charts(plan, base)
    if problems:
        raise PlanError(file, [Problem(p.path, p.message, p.fix, p.line or _line(lines, p.path)) for p in problems])
    return plan


def load_plan(path: str | Path) -> UpgradePlan:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise PlanError(str(path), [Problem("", f"cannot read the plan: {e.strerror}", "check the path")]) from None
    return parse_plan(text, str(path), base=p.resolve().parent)


def revalidate(plan: UpgradePlan, file: str = "<plan>") -> UpgradePlan:
    """The CLI's validation, again, of a plan that arrived as a model (a workflow's input, which
    anyone who can start a workflow writes): the same checks as ``parse_plan`` — inline secrets,
    the schema, the recipes' rules, the charts — on the plan's own fields. Raises PlanError."""
    data = plan.model_dump(mode="json", by_alias=True, exclude_none=True)
    return parse_plan(yaml.safe_dump(data, sort_keys=False), file)
