"""End-to-end fixtures: the labs (one Kubernetes cluster, one OpenStack lab) for the whole session."""

from __future__ import annotations

pytest_plugins = ["lab.k8s.pytest_plugin", "lab.openstack.pytest_plugin"]
