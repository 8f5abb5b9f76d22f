"""What a worker trusts a plan with: the commands it may run and the files it may read or write.

Why: whoever can start a workflow on the task queue hands the worker a plan, and the plan names
commands (``migration.command``, ``checks[].command``), credential files (``database.defaults_file``,
``cloud.kubernetes.kubeconfig``) and snapshot directories (``database.snapshot_dir``). The CLI's
validation protects an operator from mistakes, not the worker from a hostile caller: the worker
decides for itself, from its own configuration (environment variables, read on every admission so a
changed environment needs no restart of the tests' in-process workers):

* ``STACKHOP_ALLOWED_COMMANDS`` — extra commands a plan may run, separated by ``:`` or newlines;
  each is a shell-style pattern (fnmatch) matched against the command's first word as the plan
  writes it (``{version}`` unexpanded): ``/opt/venvs/keystone-*/bin/keystone-manage``, or
  ``/opt/venvs/*/bin/*-manage``. The recipes' own tools and status commands (``keystone-manage``,
  ``keystone-status``, ``nova-manage``, …: model/recipes/) are always allowed, by name, which the
  worker looks up on its own PATH.
* ``STACKHOP_CREDENTIAL_ROOTS`` — directories (or files) under which a credential file a plan
  names must be; default: where the tools look for their own (``~/.kube``, ``~/.config/openstack``,
  ``/etc/openstack``, ``~/.my.cnf``, ``/etc/mysql``, ``/etc/stackhop``) and the directories of the
  worker's own ``KUBECONFIG``, ``OS_CLIENT_CONFIG_FILE`` and ``STACKHOP_DB_DEFAULTS_FILE``.
* ``STACKHOP_SNAPSHOT_ROOTS`` — directories under which a plan's ``snapshot_dir`` must be (local
  runner; a job runner's directory is inside its pod); default: ``STACKHOP_SNAPSHOT_DIR`` and
  ``~/.local/state/stackhop/snapshots`` (the default snapshot directory).

Paths are compared after resolving symlinks and ``..`` on the worker (``os.path.realpath``), so a
plan cannot leave a root through a link or ``../``. Pure but for reading the environment and
resolving paths: the model layer does no other I/O.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass
from pathlib import Path

from model import recipes
from model.plan import UpgradePlan

ALLOWED_COMMANDS_ENV = "STACKHOP_ALLOWED_COMMANDS"
CREDENTIAL_ROOTS_ENV = "STACKHOP_CREDENTIAL_ROOTS"
SNAPSHOT_ROOTS_ENV = "STACKHOP_SNAPSHOT_ROOTS"


@dataclass(frozen=True)
class Refusal:
    """One thing the worker does not allow: the plan field, why, and the fix (model.loading's shape)."""

    path: str
    message: str
    fix: str


def _split(raw: str) -> list[str]:
    return [p.strip() for p in re.split(rf"[\n{re.escape(os.pathsep)}]", raw) if p.strip()]


def builtin_commands() -> set[str]:
    """The first words of every recipe's manage tool and status command (always allowed)."""
    names: set[str] = set()
    for r in recipes.RECIPES_BY_SERVICE.values():
        names.update(words[0] for words in (r.tool, r.status) if words)
    return names


def allowed_commands() -> list[str]:
    return _split(os.environ.get(ALLOWED_COMMANDS_ENV, ""))


def default_credential_roots() -> list[str]:
    home = Path.home()
    roots = [
        str(home / ".kube"),
        str(home / ".config" / "openstack"),
        "/etc/openstack",
        str(home / ".my.cnf"),
        "/etc/mysql",
        "/etc/stackhop",
    ]
    for env in ("OS_CLIENT_CONFIG_FILE", "STACKHOP_DB_DEFAULTS_FILE"):
        if value := os.environ.get(env):
            roots.append(str(Path(value).parent))
    roots += [str(Path(p).parent) for p in _split(os.environ.get("KUBECONFIG", ""))]
    return roots


def credential_roots() -> list[str]:
    raw = os.environ.get(CREDENTIAL_ROOTS_ENV)
    return _split(raw) if raw is not None else default_credential_roots()


def default_snapshot_roots() -> list[str]:
    roots = [str(Path.home() / ".local" / "state" / "stackhop" / "snapshots")]
    if env := os.environ.get("STACKHOP_SNAPSHOT_DIR"):
        roots.append(env)
    return roots


def snapshot_roots() -> list[str]:
    raw = os.environ.get(SNAPSHOT_ROOTS_ENV)
    return _split(raw) if raw is not None else default_snapshot_roots()


def with_root(env: str, path: str | Path, defaults: list[str]) -> str:
    """The value of ``env`` (else the defaults) plus one more root: what a lab sets for its workers."""
    raw = os.environ.get(env)
    roots = _split(raw) if raw is not None else defaults
    return os.pathsep.join([*roots, str(path)])


def under(path: str, roots: list[str]) -> bool:
    """``path`` is one of ``roots`` or inside one, both resolved (symlinks and ``..``) first."""
    real = os.path.realpath(os.path.expanduser(path))
    for root in roots:
        r = os.path.realpath(os.path.expanduser(root))
        if real == r or real.startswith(r.rstrip(os.sep) + os.sep):
            return True
    return False


def command_allowed(command: list[str]) -> bool:
    """A plan's command runs only if its first word is a recipe's tool or matches the allow-list."""
    if not command:
        return True  # the plan's default: the worker's own or the recipe's command
    first = command[0]
    if first in builtin_commands():
        return True
    # `..` resolved first: fnmatch's * crosses "/", so /opt/venvs/*/bin/x would match /opt/venvs/../../tmp/bin/x
    if "/" in first:
        first = os.path.normpath(first)
    return any(fnmatch.fnmatchcase(first, pattern) for pattern in allowed_commands())


def refusals(plan: UpgradePlan) -> list[Refusal]:
    """Everything in ``plan`` this worker's configuration does not allow (empty: admitted)."""
    out: list[Refusal] = []
    cred_roots, snap_roots = credential_roots(), snapshot_roots()
    allowed_fix = (
        f"use the recipe's tool ({', '.join(sorted(builtin_commands()))}) or omit the command (the worker's "
        f"STACKHOP_<SERVICE>_MANAGE / _STATUS applies), or have the worker's operator add it to {ALLOWED_COMMANDS_ENV}"
    )
    kubeconfig = plan.cloud.kubernetes.kubeconfig
    if kubeconfig and not under(kubeconfig, cred_roots):
        out.append(_outside("cloud.kubernetes.kubeconfig", kubeconfig, "credential", CREDENTIAL_ROOTS_ENV, cred_roots))
    for i, s in enumerate(plan.services):
        at = f"services[{i}]"
        if s.migration.command and not command_allowed(s.migration.command):
            out.append(
                Refusal(
                    f"{at}.migration.command",
                    f"{s.migration.command[0]!r} is not a command this worker runs",
                    allowed_fix,
                )
            )
        for j, check in enumerate(s.checks):
            command = getattr(check, "command", None)
            if command and not command_allowed(command):
                out.append(
                    Refusal(
                        f"{at}.checks[{j}].command",
                        f"{command[0]!r} is not a command this worker runs",
                        allowed_fix,
                    )
                )
        field = "databases" if s.databases else "database"
        for k, db in enumerate(s.all_databases):
            dat = f"{at}.{field}[{k}]" if s.databases else f"{at}.database"
            if db.runner != "local":
                continue  # the job runner's files are the pod's: a Secret and a PVC
            if db.defaults_file and not under(db.defaults_file, cred_roots):
                out.append(
                    _outside(f"{dat}.defaults_file", db.defaults_file, "credential", CREDENTIAL_ROOTS_ENV, cred_roots)
                )
            if db.snapshot_dir and not under(db.snapshot_dir, snap_roots):
                out.append(_outside(f"{dat}.snapshot_dir", db.snapshot_dir, "snapshot", SNAPSHOT_ROOTS_ENV, snap_roots))
    return out


def _outside(path: str, value: str, what: str, env: str, roots: list[str]) -> Refusal:
    real = os.path.realpath(os.path.expanduser(value))
    shown = value if real == value else f"{value} (resolved: {real})"
    return Refusal(
        path,
        f"{shown} is outside this worker's {what} roots ({', '.join(roots) or 'none'})",
        f"use a path under {env} of the worker, or omit the field (the worker's own default applies)",
    )
