"""OpenStack release arithmetic: ordering, adjacency and SLURP.

Releases are named YYYY.1 and YYYY.2 since 2023. The .1 releases are SLURP (Skip Level Upgrade
Release Process): an operator may go straight from one SLURP to the next, skipping the .2 between.
Any other jump is unsupported upstream, so a plan asking for it is refused.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

Release = Annotated[str, StringConstraints(pattern=r"^20[0-9]{2}\.[12]$")]


def key(release: str) -> tuple[int, int]:
    year, n = release.split(".")
    return int(year), int(n)


def is_slurp(release: str) -> bool:
    return key(release)[1] == 1


def next_release(release: str) -> str:
    year, n = key(release)
    return f"{year}.2" if n == 1 else f"{year + 1}.1"


def upgrade_problem(src: str, dst: str) -> tuple[str, str] | None:
    """Why ``src -> dst`` is not a supported upgrade, as (problem, fix); None when it is."""
    if key(dst) == key(src):
        return (f"from and to are both {src}: nothing to upgrade", "set release.to to a later release")
    if key(dst) < key(src):
        return (
            f"{src} -> {dst} is a downgrade",
            "stackhop upgrades forward only; roll back a failed upgrade with `stackhop abort`",
        )
    if dst == next_release(src):
        return None
    if is_slurp(src) and dst == next_release(next_release(src)):
        return None
    if is_slurp(src):
        hint = f"upgrade to {next_release(src)} or to the next SLURP {next_release(next_release(src))} first"
    else:
        hint = f"upgrade to {next_release(src)} first (skip-level upgrades go SLURP -> SLURP only)"
    return (f"{src} -> {dst} skips releases and is not a SLURP -> SLURP upgrade", hint)
