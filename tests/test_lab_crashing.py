"""The cloud controller's injected failures (``--crashing``): which pods never start."""

from __future__ import annotations

import pytest

from lab.cloud_controller import crashes, node_crashing


@pytest.mark.parametrize(
    ("crashing", "node", "per_node", "never_starts"),
    [
        ({"2026.1"}, "node-000001", False, True),  # every pod of the release
        ({"nova:2026.1"}, "node-000001", False, True),  # every pod of nova at the release
        ({node_crashing("node-000002")}, "node-000002", True, True),  # that node's compute pod
        ({node_crashing("node-000002")}, "node-000001", True, False),  # another node's compute pod
        # a control plane pod the scheduler put on that node (nova-scheduler): it starts
        ({node_crashing("node-000002")}, "node-000002", False, False),
    ],
)
def test_which_pods_never_start(crashing: set[str], node: str, per_node: bool, never_starts: bool) -> None:
    assert crashes(crashing, "nova", node, "2026.1", per_node) is never_starts
    assert crashes(crashing, "nova", node, "2025.2", per_node) is False
