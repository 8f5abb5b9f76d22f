"""The migration activity's commands come from the recipes (model/recipes/): the same data the
workflow's steps are, read through the names callers always used (PROFILES, profile_for)."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError

from activities import migration
from model import errors
from model.recipes import RECIPES_BY_SERVICE


def test_every_recipe_is_a_profile_with_its_commands() -> None:
    assert set(migration.PROFILES) == set(RECIPES_BY_SERVICE)
    for name, recipe in RECIPES_BY_SERVICE.items():
        profile = migration.profile_for(name)
        assert profile.tool == recipe.tool and profile.phases == dict(recipe.commands)
    nova = migration.profile_for("nova")
    assert nova.phases["expand"] == (("api_db", "sync"), ("db", "sync"))
    assert nova.phases["online"] == nova.phases["migrate"]  # the old phase name still runs them
    assert nova.repeat_phase == "migrate" and nova.repeat_phases == {"online", "migrate"}
    assert migration.profile_for("neutron").check_states == {0: "expand-needed", 1: "offline-contract-needed"}


def test_an_unknown_service_is_a_plan_error() -> None:
    with pytest.raises(ApplicationError) as info:
        migration.profile_for("swift")
    assert info.value.type == errors.PLAN_INVALID and "known: cinder, glance, keystone" in info.value.message


def test_online_data_migrations_run_in_rounds_and_answer_more_to_do() -> None:
    script = migration.phase_script("nova", "online", ["nova-manage"], 3)
    assert script is not None
    assert "for round in $(seq 1 3); do nova-manage db online_data_migrations --max-count 1000;" in script
    assert migration.interpret("nova", "online", 0, 2, 3) == "done"
    assert migration.interpret("nova", "online", 1, 3, 3) == "more-to-do"  # called again by the workflow
    with pytest.raises(ApplicationError, match="still had work after 3/3 rounds"):
        migration.interpret("nova", "migrate", 1, 3, 3)  # the old phase fails as it always did
    with pytest.raises(ApplicationError, match="online exited 2"):
        migration.interpret("placement", "online", 2, 1, 3)


def test_phases_a_service_does_not_have_are_not_applicable() -> None:
    assert migration.phase_script("nova", "contract", ["nova-manage"], 1) is None
    assert migration.phase_script("keystone", "online", ["keystone-manage"], 1) is None
    expand = migration.phase_script("nova", "expand", ["nova-manage"], 1)
    assert expand is not None and expand.index("api_db sync") < expand.index("nova-manage db sync")
