"""Every field of the plan schema, dropped, mistyped and nulled; then random YAML.

The field paths come from `stackhop plan schema` (UpgradePlan's JSON schema, $refs resolved), walked
alongside four valid plans that between them set every field (the two examples,
tests/plans/every-field.yaml and tests/plans/data-plane.yaml; a test checks that no schema path is
left out). For each field:

* **drop** (object fields; a list item is not a field): refused where the schema requires it,
  loaded where it is optional;
* **wrong type** (a value of a JSON type the schema does not accept): always refused;
* **null**: refused unless the schema allows null, loaded where it does.

The semantic rules a schema-valid mutation can break: a service that migrates needs a database,
so dropping or nulling ``services[i].database`` (or ``databases``) there is refused at
``services[i].migration.mode``; a service whose recipe was never run (cinder) must accept it, so
dropping ``migration.unproven_recipe: accept`` is refused at that field;
a DaemonSet of a service that may be quiesced must say ``quiesce: false``, so dropping or nulling
that field is refused at the field, and so must a DaemonSet of the data plane; a data plane names
its DaemonSets (``workloads`` or ``selector``: dropping the last is refused at ``workloads``) and
drains a disruptive change (dropping ``drain: live`` is refused at ``drain``).
A refusal must name the mutated path or its parent. Most cases run in-process through the loader, a
sample through `stackhop plan validate` (exit 2, FILE:LINE: path). Every case runs under a liveness
deadline (tests/liveness.py), so a loader that never returns fails instead of hanging the suite.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli import app
from model.loading import PlanError, parse_plan
from model.plan import UpgradePlan
from model.recipes import service_recipe
from tests.liveness import deadline

ROOT = Path(__file__).resolve().parents[1]
VALID_PLANS = (
    ROOT / "examples" / "lab-keystone.yaml",
    ROOT / "examples" / "multi-service.yaml",
    ROOT / "tests" / "plans" / "every-field.yaml",
    ROOT / "tests" / "plans" / "data-plane.yaml",
)
DOCS = {plan: yaml.load(plan.read_text(), Loader=yaml.CSafeLoader) for plan in VALID_PLANS}
SCHEMA: dict[str, Any] = UpgradePlan.model_json_schema(by_alias=True)
DROP, WRONG, NULL = "drop", "wrong-type", "null"
Loc = tuple[str | int, ...]


def valid_doc(plan: Path) -> dict[str, Any]:
    return copy.deepcopy(DOCS[plan])


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=yaml.CSafeLoader)


def _yaml_dump(data: Any, sort_keys: bool = True) -> str:
    return yaml.dump(data, Dumper=yaml.CSafeDumper, sort_keys=sort_keys)


def as_text(doc: Any) -> str:
    """JSON, one value a line: YAML the loader reads (with lines to report), written in C."""
    return json.dumps(doc, indent=1)


# --- the schema ----------------------------------------------------------------------------------
def resolve(node: dict[str, Any]) -> dict[str, Any]:
    while True:
        if "$ref" in node:
            node = SCHEMA["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        elif len(node.get("allOf", ())) == 1:
            node = node["allOf"][0]
        else:
            return node


def json_types(node: dict[str, Any]) -> set[str]:
    """The JSON types a schema node accepts."""
    node = resolve(node)
    if "const" in node:
        return {_json_type(node["const"])}
    if "type" in node:
        return set(node["type"]) if isinstance(node["type"], list) else {node["type"]}
    if "enum" in node:
        return {_json_type(v) for v in node["enum"]}
    branches = node.get("anyOf") or node.get("oneOf")
    if branches:
        return set().union(*(json_types(b) for b in branches))
    if "properties" in node:
        return {"object"}
    raise AssertionError(f"schema node without a type: {node}")


JSON_TYPES: tuple[tuple[str, type], ...] = (
    ("null", type(None)),
    ("boolean", bool),  # before integer: a bool is an int
    ("integer", int),
    ("number", float),
    ("string", str),
    ("array", list),
    ("object", dict),
)


def _json_type(value: Any) -> str:
    for kind, python_type in JSON_TYPES:
        if isinstance(value, python_type):
            return kind
    raise AssertionError(f"not a JSON value: {value!r}")


def branch(node: dict[str, Any], value: Any) -> dict[str, Any]:
    """The branch of a union that describes ``value`` (the discriminator's, or by JSON type)."""
    node = resolve(node)
    if "discriminator" in node:
        tag = value[node["discriminator"]["propertyName"]]
        return resolve({"$ref": node["discriminator"]["mapping"][tag]})
    for option in node.get("anyOf") or node.get("oneOf") or ():
        if _json_type(value) in json_types(option) or (
            _json_type(value) == "integer" and "number" in json_types(option)
        ):
            return resolve(option)
    return node


def children(node: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(generic path segment, schema) below a resolved node, every union branch included."""
    for option in node.get("anyOf") or node.get("oneOf") or ():
        yield from children(resolve(option))
    for name, sub in node.get("properties", {}).items():
        yield f".{name}", sub
    if isinstance(node.get("additionalProperties"), dict):
        yield ".*", node["additionalProperties"]
    if "items" in node:
        yield "[]", node["items"]


def schema_paths(node: dict[str, Any] = SCHEMA, generic: str = "") -> set[str]:
    found: set[str] = set()
    for segment, sub in children(resolve(node)):
        path = (generic + segment).lstrip(".")
        found.add(path)
        found |= schema_paths(sub, path)
    return found


# --- the fields of one document ----------------------------------------------------------------
@dataclass(frozen=True)
class FieldAt:
    loc: Loc
    generic: str
    schema: dict[str, Any]
    required: bool
    in_list: bool

    @property
    def path(self) -> str:
        return dotted(self.loc)

    @property
    def nullable(self) -> bool:
        return "null" in json_types(self.schema)


def dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def fields(doc: Any, node: dict[str, Any] = SCHEMA, loc: Loc = (), generic: str = "") -> Iterator[FieldAt]:
    """Every field the schema describes at ``doc``, present or not (absent ones are only typed)."""
    node = branch(node, doc)
    if isinstance(doc, dict):
        required = set(node.get("required", ()))
        for name, sub in node.get("properties", {}).items():
            path = (generic + "." + name).lstrip(".")
            yield FieldAt((*loc, name), path, sub, name in required, in_list=False)
            if name in doc:
                yield from fields(doc[name], sub, (*loc, name), path)
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            for key, value in doc.items():
                path = (generic + ".*").lstrip(".")
                yield FieldAt((*loc, key), path, extra, required=False, in_list=False)
                yield from fields(value, extra, (*loc, key), path)
    elif isinstance(doc, list) and "items" in node:
        for i, item in enumerate(doc):
            yield FieldAt((*loc, i), generic + "[]", node["items"], required=True, in_list=True)
            yield from fields(item, node["items"], (*loc, i), generic + "[]")


def wrong_value(f: FieldAt) -> Any:
    accepted = json_types(f.schema)
    for candidate in ("wrong-type", 12345, ["wrong", "type"], {"wrong": "type"}):
        if _json_type(candidate) not in accepted:
            return candidate
    raise AssertionError(f"{f.path} accepts every type")


@dataclass(frozen=True)
class Mutation:
    plan: Path
    field: FieldAt
    kind: str

    @property
    def id(self) -> str:
        return f"{self.plan.stem}:{self.field.path}:{self.kind}"

    def document(self) -> dict[str, Any]:
        doc = valid_doc(self.plan)
        *parents, last = self.field.loc
        holder: Any = doc
        for part in parents:
            holder = holder[part]
        if self.kind == DROP:
            holder.pop(last, None)
        else:
            holder[last] = None if self.kind == NULL else wrong_value(self.field)
        return doc

    def refusal(self, doc: dict[str, Any]) -> set[str] | None:
        """The paths a refusal may name; None when the mutated plan must load."""
        f = self.field
        own = {f.path, dotted(f.loc[:-1])}
        if self.kind == WRONG or (self.kind == DROP and f.required) or (self.kind == NULL and not f.nullable):
            return own
        service = doc["services"][f.loc[1]] if f.loc[0] == "services" and len(f.loc) > 1 else {}
        mode = service.get("migration", {}).get("mode", "none")
        named = service.get("database") or service.get("databases")  # after the mutation
        if f.generic in ("services[].database", "services[].databases") and mode != "none" and not named:
            return {f"services[{f.loc[1]}].migration.mode"}
        recipe = service_recipe(service.get("name", ""))
        if f.generic == "services[].migration.unproven_recipe" and recipe and recipe.proven != "run":
            return {f.path}  # a recipe never run is refused unless the plan accepts it
        may_quiesce = (named and mode != "none") or mode == "offline"
        data_plane = service.get("data_plane") or {}
        if f.generic == "services[].workloads[].quiesce" and (may_quiesce or data_plane):
            return {f.path} if service["workloads"][f.loc[3]]["kind"] == "DaemonSet" else None
        if f.generic.startswith("services[].data_plane.") and not (
            data_plane.get("workloads") or data_plane.get("selector")
        ):
            return {f"services[{f.loc[1]}].data_plane.workloads"}  # it names no DaemonSet
        if f.generic == "services[].data_plane.drain" and data_plane.get("disruptive"):
            return {f.path}  # drain: none (the default) under a disruptive change
        helm = f"services[{f.loc[1]}].helm" if service.get("helm") else ""
        if f.generic.startswith("services[].helm.replica_values") and may_quiesce:
            return {f"{helm}.replica_values"}  # a quiesce needs each workload's replicas value path
        if f.generic == "services[].helm.image_values.*":
            images = {w["image"] for w in service.get("workloads", [])}
            left = {v for k, v in service["helm"]["image_values"].items() if k != f.loc[-1]}
            return {f"{helm}.image_values"} if images - left else None
        return None


def mutations() -> list[Mutation]:
    """Each kind of mutation once per schema path, at its first occurrence in VALID_PLANS (the six
    services of multi-service.yaml would only repeat the same cases)."""
    found: dict[tuple[str, str], Mutation] = {}
    for plan in VALID_PLANS:
        doc = DOCS[plan]
        for f in fields(doc):
            kinds = (DROP, WRONG, NULL) if _present(doc, f.loc) and not f.in_list else (WRONG, NULL)
            for kind in kinds:
                found.setdefault((f.generic, kind), Mutation(plan, f, kind))
    return list(found.values())


def _present(doc: Any, loc: Loc) -> bool:
    for part in loc:
        if isinstance(part, int) or part in doc:
            doc = doc[part]
        else:
            return False
    return True


MUTATIONS = mutations()


def load(text: str, what: str) -> UpgradePlan | PlanError:
    """The loader's answer under a liveness deadline: a plan or its own error, nothing else."""
    with deadline(what):
        try:
            return parse_plan(text, "plan.yaml", base=ROOT / "examples")  # the plans' chart paths
        except PlanError as e:
            return e


# --- the tests ----------------------------------------------------------------------------------
def test_the_mutations_cover_every_schema_path() -> None:
    every = schema_paths()
    mutated = {m.field.generic for m in MUTATIONS}
    assert every - mutated == set()
    assert {"apiVersion", "services[].checks[].regex", "metadata.labels.*", "services[].depends_on[]"} <= every
    for plan in VALID_PLANS:
        assert isinstance(load(plan.read_text(), plan.name), UpgradePlan), plan


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.id)
def test_each_mutation_is_refused_at_its_field_or_loads(mutation: Mutation) -> None:
    doc = mutation.document()
    result = load(as_text(doc), mutation.id)
    expected = mutation.refusal(doc)
    if expected is None:
        assert isinstance(result, UpgradePlan), f"{mutation.id} stays valid but was refused:\n{result}"
        return
    assert isinstance(result, PlanError), f"{mutation.id} is invalid but loaded"
    assert {p.path for p in result.problems} & expected, f"{mutation.id}: refused elsewhere:\n{result}"
    assert all(p.line and p.fix for p in result.problems), str(result)


CLI_SAMPLE = [
    *((top, DROP) for top in ("apiVersion", "kind", "metadata", "cloud", "release", "services")),
    ("cloud.kubernetes", NULL),
    ("services[].workloads[].image", WRONG),
    ("services[].checks[].regex", WRONG),
    ("release.to", DROP),
    ("services[].database.name", NULL),
    ("services[].data_plane.drain", DROP),
]


@pytest.mark.parametrize(("generic", "kind"), CLI_SAMPLE)
def test_a_sample_is_refused_by_plan_validate(generic: str, kind: str, tmp_path: Path) -> None:
    (mutation,) = [m for m in MUTATIONS if (m.field.generic, m.kind) == (generic, kind)]
    mutation_id = mutation.id
    path = tmp_path / "plan.yaml"
    path.write_text(_yaml_dump(mutation.document(), sort_keys=False))
    with deadline(f"stackhop plan validate ({mutation_id})"):
        res = CliRunner().invoke(app, ["plan", "validate", str(path)], env={"COLUMNS": "200"})
    assert res.exit_code == 2, res.output
    field = re.escape(mutation.field.path)
    assert re.search(rf"^{re.escape(str(path))}:\d+: {field}: .*\(fix: ", res.stderr, re.M), res.stderr


# --- random YAML --------------------------------------------------------------------------------
KEYS = sorted({p.rsplit(".", 1)[-1].rstrip("[]") for p in schema_paths()} | {"from_", "password", "x"})
EXAMPLES = [p.read_text() for p in VALID_PLANS]
TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | TEXT
    | st.sampled_from(["2025.2", "2026.1", "10m", "Deployment", "endpoint", "tempest", "stackhop/v1alpha1"])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | TEXT, inner, max_size=5),
    max_leaves=20,
)
YAML_TEXT = st.text(st.sampled_from(list(":-[]{}&*!|>'\"#%@`?,. \n\tab19")), max_size=120)


REPLACEABLE = {plan: [f for f in fields(DOCS[plan]) if _present(DOCS[plan], f.loc[:-1])] for plan in VALID_PLANS}


@st.composite
def plans_with_a_random_value(draw: st.DrawFn) -> str:
    """A valid plan with one field (present or not) replaced by a random value."""
    plan = draw(st.sampled_from(VALID_PLANS))
    doc = valid_doc(plan)
    field = draw(st.sampled_from(REPLACEABLE[plan]))
    holder: Any = doc
    for part in field.loc[:-1]:
        holder = holder[part]
    holder[field.loc[-1]] = draw(VALUES)
    return _yaml_dump(doc, sort_keys=False)


@st.composite
def spliced_examples(draw: st.DrawFn) -> str:
    """An example's text with a random stretch replaced by YAML punctuation."""
    text = draw(st.sampled_from(EXAMPLES))
    start = draw(st.integers(0, len(text)))
    end = draw(st.integers(start, min(len(text), start + 40)))
    return text[:start] + draw(YAML_TEXT) + text[end:]


RANDOM_YAML = st.one_of(
    VALUES.map(lambda v: _yaml_dump(v, sort_keys=False)),
    YAML_TEXT,
    plans_with_a_random_value(),
    spliced_examples(),
)


@settings(
    derandomize=True, max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(RANDOM_YAML)
def test_random_yaml_ends_in_a_plan_or_a_plan_error(text: str) -> None:
    result = load(text, "random YAML")
    assert isinstance(result, (UpgradePlan, PlanError))
    if isinstance(result, PlanError):
        assert result.problems and all(p.fix for p in result.problems)
