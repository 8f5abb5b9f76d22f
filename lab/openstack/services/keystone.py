"""Keystone in the cloud lab: the identity service every other service registers with.

The same configuration, WSGI entry point and key repositories as the Keystone lab
(``lab/openstack/keystone.py``), with the public URL on the lab proxy's stable port, so a pod of
either release serves the same tokens; gunicorn with one worker per pod.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from lab.openstack import paths
from lab.openstack.keystone import Keystone
from lab.openstack.services.base import Context, Program, gunicorn, venv


class KeystoneService:
    name = "keystone"
    versions: Mapping[str, str] = MappingProxyType({"2025.2": "28.1.0", "2026.1": "29.1.0"})
    databases = ("keystone",)
    catalog = ("identity", "/v3")

    def _keystone(self, ctx: Context) -> Keystone:
        port = urllib.parse.urlsplit(ctx.endpoints["keystone"]).port or 80
        return Keystone(
            base=ctx.base,
            port=port,
            db_port=ctx.mariadb.port,
            db_password=ctx.db_password,
            admin_password=ctx.admin_password,
        )

    def write_config(self, ctx: Context) -> None:
        self._keystone(ctx).write_files()

    def bootstrap(self, ctx: Context, release: str) -> None:
        """Keys, schema and ``keystone-manage bootstrap`` (admin, RegionOne, the identity endpoints
        at the proxy's URL)."""
        self._keystone(ctx).setup(self.versions[release])

    def programs(self, release: str) -> list[Program]:
        return [
            Program(
                "keystone-api",
                "Deployment",
                gunicorn("keystone_wsgi:application", "keystone"),
                api=True,
                health_path="/v3",
                env={"OS_KEYSTONE_CONFIG_FILES": "{etc}/keystone.conf"},
            )
        ]

    def ready(self, ctx: Context, program: Program, host: str) -> bool:
        return True

    def manage_command(self, ctx: Context, release: str) -> list[str]:
        return self._keystone(ctx).manage_command(self.versions[release])

    def status_command(self, ctx: Context, release: str) -> list[str]:
        return self._keystone(ctx).status_command(self.versions[release])[:-2]  # without "upgrade check"

    def venv(self, release: str) -> Path:
        return venv(self.name, release, self.versions)


SERVICE = KeystoneService()
assert paths.KEYSTONE_RELEASES[:2] == tuple(SERVICE.versions.values())
