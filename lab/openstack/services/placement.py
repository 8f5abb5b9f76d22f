"""Placement in the cloud lab: one API workload, served by gunicorn from placement's WSGI module.

Both releases (14.0.0 = 2025.2, 15.0.0 = 2026.1) read the same placement.conf and share one schema:
15.0.0 brings no new alembic revision (both heads are ``a082b8bb98d0``), so ``db sync`` with the
target release changes nothing and the upgrade's only data step is ``online_data_migrations``
(``set_root_provider_ids``, ``create_incomplete_consumers``: both fix rows older releases left).

The WSGI module (``placement.wsgi.api``) parses an empty argument list, not ``sys.argv``, so unlike
Keystone it needs no wrapper; it finds its config through ``OS_PLACEMENT_CONFIG_DIR``, which gunicorn
sets (``--env``) before it loads the application in its worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from lab.openstack.services.base import Context, Program, ServiceLab, gunicorn, run, venv

CONFIG = "placement.conf"


class Placement:
    name = "placement"
    versions: Mapping[str, str] = MappingProxyType({"2025.2": "14.0.0", "2026.1": "15.0.0"})
    databases: tuple[str, ...] = ("placement",)
    catalog: tuple[str, str] | None = ("placement", "")

    def config_path(self, ctx: Context) -> str:
        return str(ctx.base / CONFIG)

    def write_config(self, ctx: Context) -> None:
        ctx.base.mkdir(parents=True, exist_ok=True)
        path = ctx.base / CONFIG
        path.write_text(
            "[DEFAULT]\n"
            "debug = false\n"
            "\n"
            "[api]\n"
            "auth_strategy = keystone\n"
            "\n"
            "[placement_database]\n"
            f"connection = {ctx.db_url('placement')}\n"
            "max_pool_size = 2\n"
            "\n"
            f"{ctx.keystone_authtoken()}"
        )
        path.chmod(0o600)

    def bootstrap(self, ctx: Context, release: str) -> None:
        run([*self.manage_command(ctx, release), "db", "sync"], ctx.base / "bootstrap.log")

    def programs(self, release: str) -> list[Program]:
        return [
            Program(
                workload="placement-api",
                kind="Deployment",
                argv=gunicorn(
                    "placement.wsgi.api:application", "placement-api", "--env", "OS_PLACEMENT_CONFIG_DIR={etc}"
                ),
                api=True,
                health_path="/",  # the version document: 200 without a token
            )
        ]

    def ready(self, ctx: Context, program: Program, host: str) -> bool:
        return True  # placement has no workload besides its API (ready when it answers)

    def manage_command(self, ctx: Context, release: str) -> list[str]:
        bin_dir = venv(self.name, release, self.versions) / "bin"
        return [str(bin_dir / "placement-manage"), "--config-file", self.config_path(ctx)]

    def status_command(self, ctx: Context, release: str) -> list[str]:
        bin_dir = venv(self.name, release, self.versions) / "bin"
        return [str(bin_dir / "placement-status"), "--config-file", self.config_path(ctx)]


SERVICE: ServiceLab = Placement()
