"""The fleet plan (``kind: FleetPlan``): which clouds, the canary, the waves, and how a wave stops.

Public names (the lab side and the CLI build on them; keep them stable):

* :class:`FleetPlan` — the validated plan. ``fleet.clouds[i].upgrade_plan`` is the cloud's loaded
  :class:`~model.plan.UpgradePlan` (set by :func:`model.fleet_loading.load_fleet`, re-exported here
  as ``model.fleet.load_fleet``); ``fleet.wave_clouds(i)`` the cloud names of wave ``i``;
  ``fleet.cloud(name)`` one cloud.
* :func:`load_fleet` ``(path) -> FleetPlan`` — read and validate a fleet file and every UpgradePlan
  it names; raises :class:`~model.loading.PlanError` (file, line, field, fix of each problem; a
  referenced plan's problems carry that plan's own file).
* :func:`image_set`, :func:`image_differences` — the image set a fleet promotes from its canary.

A fleet file::

    apiVersion: stackhop/v1alpha1
    kind: FleetPlan
    metadata: {name: prod}
    max_parallel: 2              # clouds upgrading at once (a wave may lower or raise it)
    clouds:
      - {name: lab-a, plan: a.yaml, labels: {region: eu}}
      - {name: lab-b, plan: b.yaml, labels: {region: us}, task_queue: stackhop-us}
    canary: [lab-a]
    waves:
      - {name: eu, selector: {region: eu}, max_failed: 0}
      - {name: rest, clouds: [lab-b], max_failed: "10%", approval: true}

``max_failed`` is how many clouds of the wave may fail (a count, or ``N%`` of the wave's clouds,
rounded down); one failure more stops the fleet. It must be below the wave's size, or the stop
could never happen.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from model.plan import AT, FIX, NAME_RE, Strict, UpgradePlan

PERCENT_RE = re.compile(r"(\d{1,3})%")
TASK_QUEUE_RE = r"^[A-Za-z0-9][A-Za-z0-9@._/-]{0,199}$"


class FleetMetadata(Strict):
    name: str = Field(pattern=NAME_RE, description="Name of the fleet: its workflow is fleet/<name>.")
    labels: dict[str, str] = Field(default_factory=dict)


class FleetCloud(Strict):
    name: str = Field(pattern=NAME_RE, description="How the fleet's canary and waves name this cloud.")
    plan: str = Field(min_length=1, description="Path of the cloud's UpgradePlan, relative to the fleet file.")
    labels: dict[str, str] = Field(default_factory=dict, description="Matched by a wave's selector.")
    task_queue: str | None = Field(
        default=None,
        pattern=TASK_QUEUE_RE,
        description="Task queue of the workers that upgrade this cloud (a region's credentials stay on its "
        "own workers); default: the fleet's task queue.",
    )
    upgrade_plan: UpgradePlan | None = Field(
        default=None, description="Set by load_fleet from `plan` (not written in the fleet file)."
    )


class Wave(Strict):
    name: str = Field(pattern=NAME_RE)
    clouds: list[str] | None = Field(default=None, description="The clouds of this wave, by name.")
    selector: dict[str, str] | None = Field(
        default=None, description="Instead of clouds: every cloud whose labels have all these values."
    )
    max_parallel: int | None = Field(default=None, ge=1, le=1000, description="Default: the fleet's.")
    max_failed: int | str = Field(
        default=0, description="Clouds of the wave that may fail before it stops: a count or N% (default 0)."
    )
    approval: bool = Field(default=False, description="The wave waits for `stackhop fleet approve` before it starts.")

    @field_validator("max_failed")
    @classmethod
    def _threshold(cls, v: int | str) -> int | str:
        if isinstance(v, int) and not isinstance(v, bool):
            if v < 0:
                raise PydanticCustomError("threshold", "a count cannot be negative", {FIX: "write 0 or more"})
            return v
        m = PERCENT_RE.fullmatch(str(v).strip())
        if not m or int(m.group(1)) > 100:
            raise PydanticCustomError(
                "threshold", "{value} is not a count or a percentage", {"value": repr(v), FIX: 'write 1 or "10%"'}
            )
        return f"{int(m.group(1))}%"

    @model_validator(mode="after")
    def _one_way_to_name_clouds(self) -> Wave:
        if (self.clouds is None) == (self.selector is None):
            raise PydanticCustomError(
                "wave_clouds",
                "wave {name} names its clouds {how}",
                {
                    "name": self.name,
                    "how": "twice: clouds and selector" if self.clouds is not None else "neither way",
                    AT: "clouds",
                    FIX: "give either clouds: [NAME, ...] or selector: {LABEL: VALUE}",
                },
            )
        return self

    def allowed_failures(self, size: int) -> int:
        """How many of ``size`` clouds may fail: one more stops the fleet."""
        if isinstance(self.max_failed, int):
            return self.max_failed
        return size * int(self.max_failed.rstrip("%")) // 100


class FleetPlan(Strict):
    api_version: Literal["stackhop/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["FleetPlan"]
    metadata: FleetMetadata
    clouds: list[FleetCloud] = Field(min_length=1)
    canary: list[str] = Field(
        default_factory=list, description="Clouds upgraded first; their images are promoted to the waves."
    )
    waves: list[Wave] = Field(min_length=1)
    max_parallel: int = Field(default=1, ge=1, le=1000, description="Clouds upgrading at once.")

    def cloud(self, name: str) -> FleetCloud:
        for c in self.clouds:
            if c.name == name:
                return c
        raise KeyError(name)

    def wave_clouds(self, i: int) -> list[str]:
        """The clouds of wave ``i`` in the order of ``clouds`` (a selector) or as listed."""
        w = self.waves[i]
        if w.clouds is not None:
            return list(w.clouds)
        sel = w.selector or {}
        return [c.name for c in self.clouds if all(c.labels.get(k) == v for k, v in sel.items())]

    @property
    def workflow_id(self) -> str:
        return fleet_workflow_id(self.metadata.name)

    def plan_of(self, name: str) -> UpgradePlan:
        plan = self.cloud(name).upgrade_plan
        if plan is None:
            raise ValueError(f"cloud {name}: its plan was not loaded (use model.fleet.load_fleet)")
        return plan


def fleet_workflow_id(name: str) -> str:
    return f"fleet/{name}"


def normalized_image(image: str) -> str:
    """How two images compare: a digest as its digest (``sha256:...``: a mirror in another registry
    holds the same image), a tag as written (a tag can move: only the same string is the same)."""
    _, sep, digest = image.partition("@")
    return digest if sep and digest.startswith("sha256:") else image


def image_set(plan: UpgradePlan) -> dict[str, list[str]]:
    """Service -> its target images (workloads' and the Helm release's image_values), normalized."""
    out: dict[str, list[str]] = {}
    for s in plan.services:
        images = {normalized_image(w.image) for w in s.workloads}
        if s.helm is not None:
            images |= {normalized_image(v) for v in s.helm.image_values.values()}
        out[s.name] = sorted(images)
    return out


def image_differences(promoted: dict[str, list[str]], plan: UpgradePlan) -> list[str]:
    """Where ``plan``'s images differ from the promoted set, one line per service ([] when equal)."""
    mine = image_set(plan)
    diffs: list[str] = []
    for service in sorted(set(promoted) | set(mine)):
        want, have = promoted.get(service), mine.get(service)
        if want == have:
            continue
        if have is None:
            diffs.append(f"{service}: not in this plan (the canary upgraded it to {', '.join(want or [])})")
        elif want is None:
            diffs.append(f"{service}: {', '.join(have)} was not validated by the canary")
        else:
            extra = [i for i in have if i not in want]
            diffs.append(f"{service}: {', '.join(extra) or 'fewer images'} (the canary's: {', '.join(want)})")
    return diffs


FLEET_KIND_RE = re.compile(r"""^kind:\s*['"]?FleetPlan['"]?\s*(#.*)?$""", re.M)


def is_fleet_file(path: str | Path) -> bool:
    """Whether a file says ``kind: FleetPlan`` (the CLI reads anything else as an UpgradePlan)."""
    try:
        return FLEET_KIND_RE.search(Path(path).read_text()) is not None
    except (OSError, UnicodeDecodeError):
        return False


def load_fleet(path: str | Path) -> FleetPlan:
    """Read and validate a fleet file and the UpgradePlans it names (model/fleet_loading.py)."""
    from model.fleet_loading import load_fleet as load

    return load(path)
