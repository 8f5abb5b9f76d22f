"""The Kubernetes activities of stackhop, in one list (for workers that run only these, e.g. tests).

Implementation lives in kube_rollout.py (images and rollouts), kube_jobs.py (Jobs), kube_scale.py
(replicas: quiesce and back), kube_watch.py (resilient watches, heartbeats, cancellation),
kube_status.py (kubectl's rollout verdict) and kube_client.py (client construction, error
mapping). ``run_job`` is not an activity of its own: the database and migration activities run
their Jobs through it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from activities.kube_jobs import JobResult, RunJobInput, run_job
from activities.kube_rollout import read_images, set_images, undo_images, wait_rollout
from activities.kube_scale import scale

KUBE_ACTIVITIES: list[Callable[..., Any]] = [read_images, set_images, wait_rollout, undo_images, scale]

__all__ = [
    "KUBE_ACTIVITIES",
    "JobResult",
    "RunJobInput",
    "read_images",
    "run_job",
    "scale",
    "set_images",
    "undo_images",
    "wait_rollout",
]
