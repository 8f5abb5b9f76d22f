"""db_inspect.classify: who changed each table since the snapshot (a pure function, table-driven)."""

from __future__ import annotations

import pytest

from activities.db_inspect import classify

# (case, snapshot checksums, snapshot definitions, live checksums, live definitions, expected changes)
CASES: list[tuple[str, dict[str, str], dict[str, str], dict[str, str], dict[str, str], dict[str, str]]] = [
    ("nothing changed", {"t": "1"}, {"t": "a"}, {"t": "1"}, {"t": "a"}, {}),
    ("rows only: writers", {"t": "1"}, {"t": "a"}, {"t": "2"}, {"t": "a"}, {"t": "writers"}),
    ("definition only: migration", {"t": "1"}, {"t": "a"}, {"t": "1"}, {"t": "b"}, {"t": "migration"}),
    ("both: unknown", {"t": "1"}, {"t": "a"}, {"t": "2"}, {"t": "b"}, {"t": "unknown"}),
    ("new table: migration", {}, {}, {"n": "0"}, {"n": "a"}, {"n": "migration"}),
    ("dropped table: migration", {"d": "7"}, {"d": "a"}, {}, {}, {"d": "migration"}),
    ("no definitions recorded, rows changed: unknown", {"t": "1"}, {}, {"t": "2"}, {"t": "a"}, {"t": "unknown"}),
    ("no definitions recorded, rows same: unchanged", {"t": "1"}, {}, {"t": "1"}, {"t": "a"}, {}),
    (
        "the migration tool's revision rows: migration",
        {"alembic_version": "1", "migrate_version": "1"},
        {"alembic_version": "a", "migrate_version": "a"},
        {"alembic_version": "2", "migrate_version": "2"},
        {"alembic_version": "a", "migrate_version": "a"},
        {"alembic_version": "migration", "migrate_version": "migration"},
    ),
    (
        "each table on its own",
        {"a": "1", "b": "1", "c": "1", "d": "1"},
        {"a": "x", "b": "x", "c": "x", "d": "x"},
        {"a": "1", "b": "2", "c": "1", "d": "2", "e": "0"},
        {"a": "x", "b": "x", "c": "y", "d": "y", "e": "z"},
        {"b": "writers", "c": "migration", "d": "unknown", "e": "migration"},
    ),
]


@pytest.mark.parametrize(
    ("snap_sums", "snap_defs", "live_sums", "live_defs", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_classify(
    snap_sums: dict[str, str],
    snap_defs: dict[str, str],
    live_sums: dict[str, str],
    live_defs: dict[str, str],
    expected: dict[str, str],
) -> None:
    changes = classify(snap_sums, snap_defs, live_sums, live_defs)
    assert {c.table: c.change for c in changes} == expected
    assert [c.table for c in changes] == sorted(expected)  # in table order
