"""Kubernetes lab fixtures for tests/k8s (until the lead registers lab.k8s.pytest_plugin globally)."""

from lab.k8s.pytest_plugin import k8s_lab, kube_target  # noqa: F401
