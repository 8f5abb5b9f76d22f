"""Side effects counted from the labs' own logs, never from the workflow's records.

* kube-apiserver's audit log (lab/k8s/cluster.py AUDIT_POLICY): every write to a workload with its
  request and response. The worker authenticates as its own service account, so its writes are
  told apart from the lab's (which creates the Deployment) and the controllers'. A side effect is a
  *transition* of a workload's desired state (its images, its replicas) made by the worker: an
  idempotent PATCH re-sent by a retry changes nothing and is counted as a re-sent write, not as a
  side effect. A transition to the same state twice, or any object the worker created twice, is a
  duplicated side effect.
* MariaDB's general log: per migration revision the alembic_version writes of the db_sync sessions
  (a revision applied twice is written twice), ``DROP DATABASE`` per restore, and the scratch
  schemas each verify creates (expected once per verify run, so not a duplicate).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WORKLOAD_SPEC = ("images", "replicas")


def tail(path: Path, offset: int) -> str:
    """The file's text from ``offset`` (the size it had when the case began) on."""
    if not path.exists():
        return ""
    with path.open("rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", errors="replace")


def size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


@dataclass
class KubeEffects:
    transitions: list[tuple[str, str, str]] = field(default_factory=list)  # (object, field, new value)
    writes: int = 0  # every write request the worker sent (re-sent idempotent ones included)
    creates: Counter[str] = field(default_factory=Counter)

    @property
    def duplicated(self) -> int:
        repeated = sum(n - 1 for n in Counter(self.transitions).values() if n > 1)
        return repeated + sum(n - 1 for n in self.creates.values() if n > 1)


def _state(obj: dict[str, Any]) -> dict[str, str]:
    """The desired state a write left: replicas (a Scale or a workload) and images (a workload)."""
    spec = obj.get("spec") or {}
    state = {}
    if "replicas" in spec:
        state["replicas"] = str(spec["replicas"])
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers")
    if containers:
        state["images"] = ",".join(f"{c['name']}={c['image']}" for c in containers)
    return state


def kube_effects(text: str, worker_user: str) -> KubeEffects:
    """The worker's side effects in an audit log excerpt (JSON lines, stage ResponseComplete)."""
    out = KubeEffects()
    last: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        ev = json.loads(line)
        ref, response = ev.get("objectRef") or {}, ev.get("responseObject") or {}
        code = (ev.get("responseStatus") or {}).get("code", 0)
        obj = f"{ref.get('resource')}/{ref.get('namespace')}/{ref.get('name')}"
        if ev.get("stage") != "ResponseComplete" or not 200 <= code < 300:
            continue
        if ev["verb"] == "delete":
            last.pop(obj, None)
            continue
        state = _state(response)
        before = last.setdefault(obj, {})
        by_worker = ev["user"]["username"] == worker_user
        if by_worker:
            out.writes += 1
            if ev["verb"] == "create":
                out.creates[obj] += 1
        for key, value in state.items():
            if by_worker and before.get(key) not in (None, value):
                out.transitions.append((obj, key, value))
            before[key] = value
    return out


# MariaDB general log: "[YYMMDD HH:MM:SS]\t<id> <Command>\t<argument>"; other lines continue the last.
_ENTRY = re.compile(r"^(?:\d{6}\s+\d{1,2}:\d{2}:\d{2})?\s+(\d+)\s+(\w[\w ]*?)\t(.*)$")
_REVISION = re.compile(
    r"(?:UPDATE alembic_version SET version_num\s*=\s*'([^']+)'"
    r"|INSERT INTO alembic_version \(version_num\) VALUES \('([^']+)'\))",
    re.IGNORECASE,
)
_DROP_DB = re.compile(r"^\s*DROP\s+(?:DATABASE|SCHEMA)\s+(?:IF\s+EXISTS\s+)?`?(\w+)`?", re.IGNORECASE)
_CREATE_DB = re.compile(r"^\s*CREATE\s+(?:DATABASE|SCHEMA)\s+(?:IF\s+NOT\s+EXISTS\s+)?`?(\w+)`?", re.IGNORECASE)


@dataclass
class DbEffects:
    revisions: Counter[str] = field(default_factory=Counter)  # alembic revision -> times written
    drops: Counter[str] = field(default_factory=Counter)  # database -> DROP DATABASE statements
    creates: Counter[str] = field(default_factory=Counter)  # database -> CREATE DATABASE statements

    @property
    def duplicated(self) -> int:
        return sum(n - 1 for n in self.revisions.values() if n > 1)


def statements(text: str) -> list[tuple[str, str]]:
    """(user, SQL) of every Query in a general log excerpt; the user comes from its session's Connect."""
    users: dict[str, str] = {}
    out: list[list[str]] = []
    for line in text.splitlines():
        m = _ENTRY.match(line)
        if not m:
            if out:
                out[-1][1] += "\n" + line
            continue
        session, command, argument = m.groups()
        if command.strip() == "Connect":
            users[session] = argument.split("@", 1)[0]
        elif command.strip() == "Query":
            out.append([users.get(session, "?"), argument])
    return [(u, q) for u, q in out]


def db_effects(text: str, database: str) -> DbEffects:
    out = DbEffects()
    for _user, sql in statements(text):
        for m in _REVISION.finditer(sql):
            out.revisions[m.group(1) or m.group(2)] += 1
        if m2 := _DROP_DB.match(sql):
            out.drops[m2.group(1)] += 1
        if m3 := _CREATE_DB.match(sql):
            out.creates[m3.group(1)] += 1
    return out
