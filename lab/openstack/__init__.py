"""A real OpenStack target on one machine: MariaDB + Keystone releases + tempest.

See lab/openstack/README.md. Nothing here is mocked: the lab runs the Debian MariaDB server and
Keystone from PyPI (one venv per release, installed from the committed lock files).
"""
