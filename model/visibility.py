"""Typed search attributes: how operators find upgrades in the Temporal UI and `stackhop list`.

The dev server registers them at start (``stackhop dev``, the test fixtures); a production namespace
needs them once: ``temporal operator search-attribute create --name StackhopCloud --type Keyword``
(and the others below).
"""

from __future__ import annotations

from typing import Any

from temporalio.common import SearchAttributeKey

CLOUD = SearchAttributeKey.for_keyword("StackhopCloud")
RELEASE = SearchAttributeKey.for_keyword("StackhopRelease")
PHASE = SearchAttributeKey.for_keyword("StackhopPhase")
SERVICE = SearchAttributeKey.for_keyword_list("StackhopService")

ALL = (CLOUD, RELEASE, PHASE, SERVICE)


def dev_server_flags() -> list[str]:
    """``temporal server start-dev`` flags that register the attributes."""
    kinds: dict[SearchAttributeKey[Any], str] = {
        CLOUD: "Keyword",
        RELEASE: "Keyword",
        PHASE: "Keyword",
        SERVICE: "KeywordList",
    }
    flags: list[str] = []
    for key, kind in kinds.items():
        flags += ["--search-attribute", f"{key.name}={kind}"]
    return flags
