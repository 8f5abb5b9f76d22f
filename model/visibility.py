"""Typed search attributes: how operators find upgrades in the Temporal UI and `stackhop list`.

The dev server registers them at start (``stackhop dev``, the test fixtures); any other namespace
needs them once: ``stackhop setup`` (cliapp/setup.py) registers them or prints the commands.
"""

from __future__ import annotations

from typing import Any

from temporalio.common import SearchAttributeKey

CLOUD = SearchAttributeKey.for_keyword("StackhopCloud")
RELEASE = SearchAttributeKey.for_keyword("StackhopRelease")
PHASE = SearchAttributeKey.for_keyword("StackhopPhase")
SERVICE = SearchAttributeKey.for_keyword_list("StackhopService")
FLEET = SearchAttributeKey.for_keyword("StackhopFleet")  # a Fleet workflow, and the upgrades it started

ALL = (CLOUD, RELEASE, PHASE, SERVICE, FLEET)


def dev_server_flags() -> list[str]:
    """``temporal server start-dev`` flags that register the attributes."""
    kinds: dict[SearchAttributeKey[Any], str] = {
        CLOUD: "Keyword",
        RELEASE: "Keyword",
        PHASE: "Keyword",
        SERVICE: "KeywordList",
        FLEET: "Keyword",
    }
    flags: list[str] = []
    for key, kind in kinds.items():
        flags += ["--search-attribute", f"{key.name}={kind}"]
    return flags
