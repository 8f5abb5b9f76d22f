"""OpenStack lab fixtures for tests/openstack (until the lead registers lab.openstack.pytest_plugin)."""

from lab.openstack.pytest_plugin import (  # noqa: F401
    keystone_at,
    lab_cloud,
    lab_running,
    openstack_lab,
    pytest_configure,
    tempest_command,
)
