"""Glance in the cloud lab: glance-api with the file store under the service's directory.

The API is served by gunicorn from ``glance.wsgi.api:application`` in both releases, not by the
``glance-api`` console script: 32.0.0 (2026.1) deprecates that eventlet server ("Glance must now be
run using WSGI", release note eventlet-deprecation) and 33.0.0 (2026.2) removes it; the WSGI module
exists in 31.1.0 and 32.0.0 alike. It parses an empty argument list (no ``sys.argv``: no wrapper as
Keystone needs) and reads ``glance-api.conf`` from ``OS_GLANCE_CONFIG_DIR``, set by gunicorn's
``--env`` before the worker loads it.

Schema: glance's last alembic revisions are 2024.1's (``2024_1_expand01``, ``2024_1_contract01``),
so 31.1.0 and 32.0.0 share one schema and expand/migrate/contract between them change nothing.
Both releases ship the same ``glance-api-paste.ini``; the lab keeps one copy beside the config.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from types import MappingProxyType

from lab.openstack.services.base import RELEASES, Context, Program, ServiceLab, gunicorn, run, venv

CONFIG = "glance-api.conf"
PASTE = "glance-api-paste.ini"


class Glance:
    name = "glance"
    versions: Mapping[str, str] = MappingProxyType({"2025.2": "31.1.0", "2026.1": "32.0.0"})
    databases: tuple[str, ...] = ("glance",)
    catalog: tuple[str, str] | None = ("image", "")

    def config_path(self, ctx: Context) -> str:
        return str(ctx.base / CONFIG)

    def write_config(self, ctx: Context) -> None:
        ctx.base.mkdir(parents=True, exist_ok=True)
        stores = {name: ctx.base / "stores" / name for name in ("images", "staging", "tasks")}
        for directory in stores.values():
            directory.mkdir(parents=True, exist_ok=True)
        packaged = venv(self.name, RELEASES[0], self.versions) / "etc" / "glance" / PASTE
        shutil.copyfile(packaged, ctx.base / PASTE)
        path = ctx.base / CONFIG
        path.write_text(
            "[DEFAULT]\n"
            "debug = false\n"
            "workers = 1\n"
            "enabled_backends = fs:file\n"
            "\n"
            "[database]\n"
            f"connection = {ctx.db_url('glance')}\n"
            "max_pool_size = 2\n"
            "\n"
            "[glance_store]\n"
            "default_backend = fs\n"
            "\n"
            "[fs]\n"
            f"filesystem_store_datadir = {stores['images']}\n"
            "\n"
            "[os_glance_staging_store]\n"
            f"filesystem_store_datadir = {stores['staging']}\n"
            "\n"
            "[os_glance_tasks_store]\n"
            f"filesystem_store_datadir = {stores['tasks']}\n"
            "\n"
            "[paste_deploy]\n"
            "flavor = keystone\n"
            f"config_file = {ctx.base / PASTE}\n"
            "\n"
            f"{ctx.keystone_authtoken()}"
        )
        path.chmod(0o600)

    def bootstrap(self, ctx: Context, release: str) -> None:
        run([*self.manage_command(ctx, release), "db", "sync"], ctx.base / "bootstrap.log")

    def programs(self, release: str) -> list[Program]:
        return [
            Program(
                workload="glance-api",
                kind="Deployment",
                argv=gunicorn("glance.wsgi.api:application", "glance-api", "--env", "OS_GLANCE_CONFIG_DIR={etc}"),
                api=True,
                health_path="/healthcheck",  # oslo.middleware's healthcheck: 200 once the app is loaded
            )
        ]

    def ready(self, ctx: Context, program: Program, host: str) -> bool:
        return True  # glance-api is the only workload (ready when it answers)

    def manage_command(self, ctx: Context, release: str) -> list[str]:
        bin_dir = venv(self.name, release, self.versions) / "bin"
        return [str(bin_dir / "glance-manage"), "--config-file", self.config_path(ctx)]

    def status_command(self, ctx: Context, release: str) -> list[str]:
        bin_dir = venv(self.name, release, self.versions) / "bin"
        return [str(bin_dir / "glance-status"), "--config-file", self.config_path(ctx)]


SERVICE: ServiceLab = Glance()
