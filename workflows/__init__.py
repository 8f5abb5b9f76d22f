"""The workflows: Upgrade (one cloud), ServiceUpgrade (one service, a child), DataPlaneBatch (one batch
of a service's data plane nodes, a child of the service), Canary (a schedule's run), Fleet (a canary
and waves of clouds, each cloud an Upgrade child: workflows/fleet.py).

Deterministic code only (import-linter keeps client libraries and activities out): every effect is
an activity, every wait a timer or a condition, so a worker that restarts replays the history and
reaches the same state.

Versioning policy
-----------------
A running upgrade may outlive the worker version that started it, so a change to a workflow's
commands (activities, timers, children, signals, updates, search attributes, in what order) must
still replay the histories it wrote. tests/workflows/test_replay.py replays the committed histories
of every path (tests/histories/record.py lists them: success, each rollback kind, gate approve and
timeout, pause/resume, abort, inconclusive check approved, failed step resumed, canary run, nova's
recipe, the availability probe at a success and a rollback, nova's data plane in batches); the Fleet's
history is recorded by tests/histories/record_fleet.py and replayed by tests/workflows/test_fleet_replay.py.
The Upgrade workflow's ``parent_*`` signals (the fleet's forwarded commands) are handlers only: no
history without a fleet has them, so they need no patch. The
data plane needs no patch: its step and its waits change only a plan with a ``data_plane`` block,
which no older history has. The per-service recipes
(model/recipes/) are the first change versioned with ``workflow.patched("service-recipes")``
(workflows/service.py) instead of re-recording; the availability probe the second
(``workflow.patched("availability-probe")``).

* Before the first tagged release: a change that breaks replay re-records the histories
  (``.venv/bin/python -m tests.histories.record``) in the same commit, and the commit message says
  so. Nothing that runs in production depends on old histories yet.
* From the first tagged release on: a change that breaks replay is versioned instead — behind
  ``workflow.patched("<why>")`` (old branch kept until no history needs it, then
  ``workflow.deprecate_patch``), or as a new worker deployment version (worker versioning) — and
  the committed histories are never re-recorded for it; the change adds the histories of its new
  path beside them.
"""
