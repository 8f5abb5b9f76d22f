"""The lab fleet: several Keystone clouds on the labs, for fleet upgrades (issue 15).

Each cloud is the keystone demo's cloud (lab/demo.py: the Helm release ``keystone`` of the lab's
2025.2.0 chart with the operator's values, its pods made Ready by a lab controller once the release
they run really answers) in a namespace of its own on one Kubernetes lab, with a Keystone of its
own: its own schema and MariaDB user on the OpenStack lab's one MariaDB, its own keystone.conf,
fernet keys and port, one gunicorn per release as the demo's. So an upgrade of one cloud runs the
real expand/contract migrations on that cloud's schema only, and a failure injected into one cloud
(``DemoLab.prepare``'s: its 2026.1 pods never become Ready, schema drift, a broken policy) fails
that cloud alone.

What one worker needs to upgrade every cloud (``worker_env``): one kubeconfig with a context per
cloud (named like the cloud), one clouds.yaml with an entry per cloud (named like the cloud), the
shared MariaDB's admin defaults file, and each cloud's own ``keystone-manage``/``keystone-status``.
Those cannot be the worker's STACKHOP_KEYSTONE_MANAGE (one for all plans), so the plans name
``lab-keystone-manage CLOUD {version}`` and ``lab-keystone-status CLOUD {version} upgrade check``:
two scripts the fleet writes to ``<fleet>/bin``, which the worker finds on its PATH and is allowed
to run (STACKHOP_ALLOWED_COMMANDS) — the plans in examples/fleet/ stay free of machine paths.

Set-up is fast: every cloud starts from the OpenStack lab's dump of its bootstrapped 28.1.0 schema
(with its admin password), the catalog's identity endpoints pointed at the cloud's own Keystone —
a load of about a second instead of a db_sync and a bootstrap per cloud — and the clouds are
prepared in parallel.
"""

from __future__ import annotations

import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lab.demo import DemoLab, Inject
from lab.k8s.cluster import KubeLab
from lab.k8s.versions import helm_bin
from lab.openstack import paths
from lab.openstack.keystone import Keystone, write_key_repository
from lab.openstack.manager import ADMIN_CLOUD, OpenStackLab
from model import trust

#: The clouds of examples/fleet/: canary lab-a; wave 1 lab-b, lab-c; wave 2 lab-d, lab-e.
CLOUDS: tuple[str, ...] = ("lab-a", "lab-b", "lab-c", "lab-d", "lab-e")
COMMANDS = ("lab-keystone-manage", "lab-keystone-status")

# The scripts the plans name (a cloud's Keystone lives in <fleet>/<cloud>/keystone: keystone.py's
# layout). Cloud and release are checked before they become paths.
_SCRIPT = """#!/bin/bash
# {name} CLOUD RELEASE [ARGS...]: {what} of Keystone RELEASE with the lab fleet cloud CLOUD's
# keystone.conf (written by lab/fleet.py).
set -eu
cloud=${{1:-}} release=${{2:-}}
case $cloud in ''|*[!a-z0-9-]*) echo "{name}: bad cloud name '$cloud'" >&2; exit 64;; esac
case $release in ''|*[!0-9.]*) echo "{name}: bad release '$release'" >&2; exit 64;; esac
shift 2
ks={base}/$cloud/keystone
[ -f "$ks/keystone.conf" ] || {{ echo "{name}: no lab fleet cloud '$cloud' in {base}" >&2; exit 64; }}
exec {command} "$@"
"""
_MANAGE = '"$ks/venvs/keystone-$release/bin/keystone-manage" --config-file "$ks/keystone.conf"'
_STATUS = '"$ks/venvs/keystone-$release/bin/python" "$ks/keystone_status.py" --config-file "$ks/keystone.conf"'


def database_of(cloud: str) -> str:
    """The cloud's schema and MariaDB user: ``keystone_lab_a`` for ``lab-a``."""
    return "keystone_" + cloud.replace("-", "_")


@dataclass
class CloudLab(DemoLab):
    """The demo's cloud in the fleet's namespace and context, through the fleet's one kubeconfig."""

    fleet_kubeconfig: Path = field(default_factory=Path)

    @property
    def kubeconfig(self) -> Path:
        return self.fleet_kubeconfig


@dataclass
class FleetLab:
    kube: KubeLab
    openstack: OpenStackLab  # its MariaDB and its baseline dump serve every cloud
    clouds: tuple[str, ...] = CLOUDS
    labs: dict[str, CloudLab] = field(default_factory=dict)

    @property
    def base(self) -> Path:
        return self.openstack.base / "fleet"

    @property
    def kubeconfig(self) -> Path:
        return self.base / "kubeconfig.yaml"

    @property
    def clouds_yaml(self) -> Path:
        return self.base / "clouds.yaml"

    @property
    def bin_dir(self) -> Path:
        return self.base / "bin"

    # --- set-up ---------------------------------------------------------------------------------
    def prepare(self, inject: dict[str, Inject] | None = None) -> None:
        """Every cloud at its 28.1.0 baseline, keystone-api 28.1.0 available (in parallel); a cloud
        named in ``inject`` gets that failure, the others none."""
        inject = inject or {}
        unknown = set(inject) - set(self.clouds)
        if unknown:
            raise ValueError(f"no cloud {', '.join(sorted(unknown))} in the fleet ({', '.join(self.clouds)})")
        if not self.openstack.baseline_file.exists():
            raise RuntimeError(f"the OpenStack lab has no baseline dump ({self.openstack.baseline_file})")
        self.close()
        self._write_kubeconfig()
        self._write_commands()
        self.labs = {cloud: self._cloud(cloud) for cloud in self.clouds}
        self._write_clouds_yaml()
        with ThreadPoolExecutor(max_workers=len(self.clouds), thread_name_prefix="fleet-prepare") as pool:
            done = [pool.submit(lab.prepare, inject.get(cloud)) for cloud, lab in self.labs.items()]
            for future in done:
                future.result()

    def _cloud(self, cloud: str) -> CloudLab:
        """The cloud's Keystone (files, keys, schema user) and its baseline: the shared dump with
        the catalog pointing at this cloud's own Keystone."""
        mariadb, shared = self.openstack.mariadb, self.openstack.keystone
        assert mariadb and shared, "the OpenStack lab is up"
        directory = self.base / cloud
        keystone = Keystone(
            base=directory / "keystone",
            port=paths.free_port(),
            db_port=mariadb.port,
            db_password=secrets.token_hex(12),
            admin_password=shared.admin_password,  # the dump's admin
            database=database_of(cloud),
        )
        keystone.write_files()
        for sub in ("fernet-keys", "fernet-receipts", "credential-keys"):
            write_key_repository(keystone.base / sub)
        mariadb.create_service_database(keystone.database, keystone.database, keystone.db_password)
        osl = OpenStackLab(base=directory, mariadb=mariadb, keystone=keystone, bootstrapped=True)
        dump = self.openstack.baseline_file.read_text()
        osl.baseline_file.write_text(f"{dump}\nUPDATE endpoint SET url = '{keystone.url}';\n")
        osl.write_clouds_yaml()
        return CloudLab(self.kube, osl, namespace=cloud, context=cloud, fleet_kubeconfig=self.kubeconfig)

    def _write_kubeconfig(self) -> None:
        """The lab's kubeconfig with one context per cloud (its namespace the cloud's)."""
        doc = yaml.safe_load(self.kube.kubeconfig.read_text())
        current = next(c for c in doc["contexts"] if c["name"] == doc["current-context"])
        doc["contexts"] = [
            {"name": cloud, "context": {**current["context"], "namespace": cloud}} for cloud in self.clouds
        ]
        doc["current-context"] = self.clouds[0]
        paths.write_private(self.kubeconfig, yaml.safe_dump(doc))

    def _write_commands(self) -> None:
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        for name, what, command in (
            ("lab-keystone-manage", "keystone-manage", _MANAGE),
            ("lab-keystone-status", "keystone-status", _STATUS),
        ):
            script = self.bin_dir / name
            script.write_text(_SCRIPT.format(name=name, what=what, base=self.base, command=command))
            script.chmod(0o755)

    def _write_clouds_yaml(self) -> None:
        """One entry per cloud, named like it: each cloud's own lab-admin entry."""
        entries = {}
        for cloud, lab in self.labs.items():
            entries[cloud] = yaml.safe_load(lab.openstack.clouds_yaml.read_text())["clouds"][ADMIN_CLOUD]
        paths.write_private(self.clouds_yaml, yaml.safe_dump({"clouds": entries}, sort_keys=False))

    # --- the worker -------------------------------------------------------------------------------
    def worker_env(self) -> dict[str, str]:
        """Environment for one worker that upgrades every cloud of the fleet."""
        assert self.openstack.mariadb
        allowed = os.environ.get(trust.ALLOWED_COMMANDS_ENV, "")
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "OS_CLIENT_CONFIG_FILE": str(self.clouds_yaml),
            "STACKHOP_DB_DEFAULTS_FILE": str(self.openstack.mariadb.defaults_file),
            "STACKHOP_SNAPSHOT_DIR": str(self.base / "snapshots"),
            "STACKHOP_HELM": str(helm_bin()),
            "PATH": os.pathsep.join([str(self.bin_dir), os.environ.get("PATH", "")]),
            trust.ALLOWED_COMMANDS_ENV: os.pathsep.join(p for p in [allowed, *COMMANDS] if p),
        }

    # --- what an operator checks afterwards --------------------------------------------------------
    def schema_version(self, cloud: str) -> str:
        """The cloud's alembic revision(s): which migrations ran on its own schema."""
        assert self.openstack.mariadb
        rows = self.openstack.mariadb.sql("SELECT version_num FROM alembic_version", database=database_of(cloud))
        return ",".join(sorted(rows.split()))

    # --- tear-down --------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop every cloud's lab controller and Keystone, in parallel (the namespaces and schemas stay)."""

        def close(lab: CloudLab) -> None:
            lab.close()
            if lab.openstack.keystone and lab.openstack.keystone.pid:
                lab.openstack.stop_keystone()

        if self.labs:
            with ThreadPoolExecutor(max_workers=len(self.labs), thread_name_prefix="fleet-close") as pool:
                list(pool.map(close, self.labs.values()))

    def delete_namespaces(self) -> None:
        for cloud in self.clouds:
            self.kube.kubectl_run("delete", "namespace", cloud, "--wait=false", "--ignore-not-found", check=False)
