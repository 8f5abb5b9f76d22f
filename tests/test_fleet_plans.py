"""Fleet plans: the good one loads with every cloud's plan; each bad one is refused with the file,
line, field and fix of each problem (tests/plans/fleet/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.fleet import image_differences, image_set, load_fleet, normalized_image
from model.fleet_loading import FleetError
from model.loading import PlanError

HERE = Path(__file__).parent / "plans" / "fleet"

BAD = {
    "bad-unknown-cloud.yaml": [
        "bad-unknown-cloud.yaml:12: waves[0].clouds[2]: unknown cloud 'e' (fix: name one of: a, b, c)"
    ],
    "bad-two-waves.yaml": ["bad-two-waves.yaml:13: waves[1].clouds[0]: b is already upgraded in wave first"],
    "bad-canary-and-wave.yaml": ["bad-canary-and-wave.yaml:12: waves[0].selector: a is already upgraded in the canary"],
    "bad-no-wave.yaml": [
        "bad-no-wave.yaml:8: clouds[2].name: c is in no wave (fix: add it to a wave (or to the canary))"
    ],
    "bad-empty-wave.yaml": ["bad-empty-wave.yaml:14: waves[1].selector: selects no cloud"],
    "bad-threshold.yaml": [
        "bad-threshold.yaml:13: waves[0].max_failed: max_failed 2 lets all 2 clouds of wave rest fail: the wave could"
        " never stop the fleet (fix: allow fewer than 2 failures (0 stops at the first))"
    ],
    "bad-threshold-format.yaml": [
        "bad-threshold-format.yaml:13: waves[0].max_failed: '150%' is not a count or a percentage"
        ' (fix: write 1 or "10%")'
    ],
    "bad-same-cloud.yaml": [
        "bad-same-cloud.yaml:7: clouds[1].plan: a2 and a upgrade the same cloud 'cloud-a'"
        " (one workflow upgrade/cloud-a)"
    ],
    "bad-releases.yaml": [
        "bad-releases.yaml:7: clouds[1].plan: c upgrades 2025.1 -> 2025.2, a 2025.2 -> 2026.1 (fix: a fleet upgrades"
        " every cloud over one release range"
    ],
    "bad-clouds-and-selector.yaml": [
        "bad-clouds-and-selector.yaml:12: waves[0].clouds: wave rest names its clouds twice"
    ],
    "bad-unknown-field.yaml": ["bad-unknown-field.yaml:10: max_paralel: unknown field"],
    # a referenced plan's problems come with that plan's own file and line
    "bad-invalid-plan.yaml": [
        "plans/bad-missing-field.yaml:7: cloud.kubernetes.context: Field required (fix: add this field)",
        "bad-invalid-plan.yaml:7: clouds[1].plan: the plan ",
    ],
    "bad-missing-plan.yaml": [
        "no-such-plan.yaml: (document): cannot read the plan: No such file or directory",
        "bad-missing-plan.yaml:7: clouds[1].plan: the plan ",
    ],
}


def test_every_bad_fleet_plan_is_in_the_table() -> None:
    assert {p.name for p in HERE.glob("bad-*.yaml")} == set(BAD)


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_fleet_plan(name: str) -> None:
    with pytest.raises(PlanError) as info:
        load_fleet(HERE / name)
    text = str(info.value)
    for expected in BAD[name]:
        assert expected in text, text
    assert len(text.splitlines()) == len(BAD[name]), text


def test_invalid_plan_keeps_its_own_file() -> None:
    with pytest.raises(FleetError) as info:
        load_fleet(HERE / "bad-invalid-plan.yaml")
    files = [Path(e.file).name for e in info.value.errors]
    assert files == ["bad-missing-field.yaml", "bad-invalid-plan.yaml"]


def test_good_fleet_loads_every_plan() -> None:
    fleet = load_fleet(HERE / "good.yaml")
    assert fleet.workflow_id == "fleet/fleet-test" and fleet.canary == ["a"]
    assert [fleet.wave_clouds(i) for i in range(len(fleet.waves))] == [["b"], ["c", "d"]]
    assert [fleet.plan_of(c.name).workflow_id for c in fleet.clouds] == [f"upgrade/cloud-{c}" for c in "abcd"]
    assert fleet.cloud("c").task_queue == "stackhop-us" and Path(fleet.cloud("c").plan).is_absolute()
    assert fleet.waves[1].approval and fleet.waves[1].allowed_failures(2) == 1


def test_digests_compare_as_digests_and_tags_as_written() -> None:
    digest = "sha256:" + "a" * 64
    assert normalized_image(f"eu.registry/keystone@{digest}") == normalized_image(f"us.mirror/keystone@{digest}")
    assert normalized_image("registry/keystone:29.1.0") != normalized_image("mirror/keystone:29.1.0")
    plan = load_fleet(HERE / "good.yaml").plan_of("a")
    assert image_set(plan) == {"keystone": ["registry/keystone:29.1.0"]}
    assert image_differences({"keystone": ["registry/keystone:29.1.0"]}, plan) == []
    assert image_differences({"keystone": ["registry/keystone:29.1.1"]}, plan) == [
        "keystone: registry/keystone:29.1.0 (the canary's: registry/keystone:29.1.1)"
    ]
