"""The cloud lab: MariaDB, a RabbitMQ node, Keystone and the other services, one process per pod.

What every service shares lives here; what is particular to a service lives in its module under
``lab/openstack/services/`` (see base.py for the contract). A pod is one process on its own
loopback port, started for the pod's release; the lab proxy (proxy.py) gives each service one
stable port, routed only to its ready API pods, and that port is what Keystone's catalog lists.

Two modes: *direct* (no Kubernetes: the cloud starts one pod per workload itself — what the recipe
tests use) and Kubernetes (``direct=False``: the lab's cloud controller starts a process for each
pod kwok runs, and marks it Ready only once ``pod_ready`` says so).

State (ports, pids, generated passwords, pods) is persisted in ``<cloud>/state.json`` (0600), so a
CLI call, a controller process and a pytest run act on the same servers.
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, cast

import structlog
import yaml

from lab.openstack import install, paths, procs, tempest_ws
from lab.openstack.mariadb import MariaDB
from lab.openstack.proxy import write_routes
from lab.openstack.rabbitmq import RabbitMQ
from lab.openstack.services.base import RELEASES, Context, Program, ServiceLab, venv

log = structlog.get_logger(__name__)

#: Every service the cloud lab knows, in OpenStack's upgrade order.
SERVICES: tuple[str, ...] = ("keystone", "placement", "glance", "neutron", "nova")
ADMIN_CLOUD = "lab-admin"


def service_lab(name: str) -> ServiceLab:
    if name not in SERVICES:
        raise ValueError(f"unknown service {name!r}; the cloud lab has {', '.join(SERVICES)}")
    return cast(ServiceLab, importlib.import_module(f"lab.openstack.services.{name}").SERVICE)


def cloud_dir() -> Path:
    return paths.lab_dir().parent / "cloud"


def release_of(service: str, tag: str) -> str | None:
    """The release an image tag names: ``2025.2-ubuntu_noble`` → 2025.2; a PyPI version of the
    service (``32.2.1``) → its release; anything else None (an image the lab cannot run)."""
    for release in RELEASES:
        if tag == release or tag.startswith(f"{release}-"):
            return release
    versions = service_lab(service).versions
    return next((r for r, v in versions.items() if v == tag), None)


@dataclass
class PodProc:
    service: str
    workload: str
    release: str
    host: str
    port: int
    pid: int | None
    api: bool
    routed: bool = False


def _pods(saved: dict[str, dict[str, Any]]) -> dict[str, PodProc]:
    """The pods of a state file, each pid adopted only while it is still that pod's process (older
    state files: a bare pid whose command line names the service)."""
    return {name: PodProc(**{**p, "pid": procs.adopt(p.get("pid"), p["service"])}) for name, p in saved.items()}


@dataclass
class CloudLab:
    base: Path = field(default_factory=cloud_dir)
    services: list[str] = field(default_factory=list)  # set up, in order
    release: str = RELEASES[0]  # the release the databases were bootstrapped at
    hosts: list[str] = field(default_factory=lambda: ["lab-node-0"])
    direct: bool = True
    admin_password: str = field(default_factory=lambda: secrets.token_hex(12))
    passwords: dict[str, dict[str, str]] = field(default_factory=dict)  # service -> {"db", "service"}
    listen: dict[str, int] = field(default_factory=dict)  # service -> the proxy's port
    pods: dict[str, PodProc] = field(default_factory=dict)
    proxy_pid: int | None = None
    mariadb: MariaDB | None = None
    rabbit: RabbitMQ | None = None
    timings: dict[str, float] = field(default_factory=dict)
    # service -> time.monotonic() when this process last changed its routes (a pod in or out): the
    # moment its API went away or came back for a client of the proxy (not persisted)
    routed_at: dict[str, float] = field(default_factory=dict)

    # --- persistence ---------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.base / "state.json"

    @classmethod
    def load(cls, base: Path | None = None) -> CloudLab:
        lab = cls(base=base or cloud_dir())
        if lab.state_file.exists():
            state = json.loads(lab.state_file.read_text())
            for key in ("services", "release", "hosts", "direct", "admin_password", "passwords", "listen"):
                setattr(lab, key, state[key])
            lab.proxy_pid = procs.adopt(state["proxy_pid"], "lab.openstack.proxy")
            lab.pods = _pods(state["pods"])
            if state.get("mariadb"):
                mariadb = {**state["mariadb"], "pid": procs.adopt(state["mariadb"].get("pid"), "mariadbd")}
                lab.mariadb = MariaDB(base=lab.base / "mariadb", **mariadb)
            if state.get("rabbit"):
                rabbit = {**state["rabbit"], "pid": procs.adopt(state["rabbit"].get("pid"), "rabbit")}
                lab.rabbit = RabbitMQ(base=lab.base / "rabbitmq", **rabbit)
        return lab

    def reload(self) -> None:
        """Re-read the pods another process (the controller) may have changed."""
        if self.state_file.exists():
            self.pods = _pods(json.loads(self.state_file.read_text())["pods"])

    def save(self) -> None:
        state: dict[str, Any] = {
            key: getattr(self, key)
            for key in ("services", "release", "hosts", "direct", "admin_password", "passwords", "listen")
        }
        state["proxy_pid"] = procs.record(self.proxy_pid)
        state["pods"] = {name: {**asdict(p), "pid": procs.record(p.pid)} for name, p in self.pods.items()}
        if self.mariadb:
            state["mariadb"] = {"port": self.mariadb.port, "admin_password": self.mariadb.admin_password}
            state["mariadb"]["pid"] = procs.record(self.mariadb.pid)
        if self.rabbit:
            state["rabbit"] = {k: getattr(self.rabbit, k) for k in ("port", "dist_port", "password")}
            state["rabbit"]["pid"] = procs.record(self.rabbit.pid)
        paths.write_private(self.state_file, json.dumps(state, indent=1))

    # --- what services see ---------------------------------------------------------------------
    @property
    def endpoints(self) -> dict[str, str]:
        return {name: f"http://127.0.0.1:{port}" for name, port in self.listen.items()}

    @property
    def auth_url(self) -> str:
        return f"{self.endpoints['keystone']}/v3"

    def service(self, name: str) -> ServiceLab:
        return service_lab(name)

    def context(self, name: str) -> Context:
        assert self.mariadb and self.rabbit, "the cloud is not up"
        secret = self.passwords.setdefault(name, {"db": secrets.token_hex(12), "service": secrets.token_hex(12)})
        base = self.base / name
        base.mkdir(parents=True, exist_ok=True)
        return Context(
            base=base,
            mariadb=self.mariadb,
            transport_url=self.rabbit.url,
            auth_url=self.auth_url,
            admin_password=self.admin_password,
            service_password=secret["service"],
            db_password=secret["db"],
            endpoints=self.endpoints,
            hosts=tuple(self.hosts),
        )

    # --- lifecycle -----------------------------------------------------------------------------
    def up(
        self,
        services: Sequence[str] = SERVICES,
        release: str = RELEASES[0],
        hosts: Sequence[str] = ("lab-node-0",),
        direct: bool = True,
    ) -> dict[str, float]:
        """Install what is missing; start MariaDB, RabbitMQ and the proxy; set each service up once
        (databases, Keystone registration, config, bootstrap at ``release``); in direct mode start
        one pod per workload of each service (DaemonSets: one per host)."""
        started = time.monotonic()
        wanted = [s for s in SERVICES if s in services or s == "keystone"]
        for s in services:
            service_lab(s)  # an unknown name fails before anything starts
        self.hosts, self.direct = list(hosts), direct
        install.ensure_cloud(wanted)
        self.timings["install"] = time.monotonic() - started
        for s in SERVICES:
            self.listen.setdefault(s, paths.free_port())
        if self.mariadb is None:
            self.mariadb = MariaDB(base=self.base / "mariadb", port=paths.free_port())
        if self.rabbit is None:
            self.rabbit = RabbitMQ(base=self.base / "rabbitmq")
        self._timed("mariadb", self.mariadb.start)
        self.save()
        self._timed("rabbitmq", self.rabbit.start)
        self.save()
        self._start_proxy()
        for name in wanted:
            if name not in self.services:
                self._timed(f"{name}_setup", lambda name=name: self._setup(name, release))
                self.services.append(name)
                self.release = release
                self.save()
            if name == "keystone":
                self.write_clouds_yaml()
                if not direct and any(s not in self.services for s in wanted) and not self.served("keystone"):
                    # services still to register need Keystone answering before its pods exist: a
                    # process no pod stands for, which the cloud controller hands over to the first
                    # Ready keystone-api pod
                    self.serve("keystone", release)
            if direct:
                self._timed(f"{name}_serve", lambda name=name: self.serve(name, self.served(name) or release))
        if direct and "nova" in wanted:
            self._timed("zones", self.ensure_zones)  # every compute is mapped once nova is served
        self.timings["total"] = time.monotonic() - started
        log.info("cloud_lab_up", services=wanted, **{k: round(v, 1) for k, v in self.timings.items()})
        return self.timings

    def _timed(self, what: str, fn: Any) -> None:
        t0 = time.monotonic()
        fn()
        self.timings[what] = time.monotonic() - t0

    def _setup(self, name: str, release: str) -> None:
        svc = service_lab(name)
        ctx = self.context(name)
        assert self.mariadb
        for database in svc.databases:
            self.mariadb.create_service_database(database, name, ctx.db_password)
        svc.write_config(ctx)
        self._link_commands(name, svc, ctx)
        if name == "keystone":
            svc.bootstrap(ctx, release)  # bootstrap registers identity itself
            self.save()
            self.serve("keystone", release)  # every other registration needs it answering
        else:
            self._register(name, svc, ctx)
            svc.bootstrap(ctx, release)

    def _link_commands(self, name: str, svc: ServiceLab, ctx: Context) -> None:
        """``<cloud>/bin/<service>-manage|status RELEASE ARGS``: one command for every release, so a
        worker's STACKHOP_<SERVICE>_MANAGE can template the release (``{version}``, from the image
        tag: ``2026.1-ubuntu_noble``, ``2026.1`` or the PyPI version all work)."""
        bindir = self.base / "bin"
        bindir.mkdir(parents=True, exist_ok=True)
        for kind in ("manage", "status"):
            cases = []
            for release in RELEASES:
                argv = svc.manage_command(ctx, release) if kind == "manage" else svc.status_command(ctx, release)
                words = " ".join(_sh(a) for a in argv)
                cases.append(f'  {release}|{release}-*|{svc.versions[release]}) shift; exec {words} "$@" ;;')
            script = bindir / f"{name}-{kind}"
            script.write_text(
                "#!/bin/sh\n# generated by the cloud lab: the first argument picks the release\n"
                'case "$1" in\n' + "\n".join(cases) + '\n  *) echo "no release $1 in the lab" >&2; exit 64 ;;\nesac\n'
            )
            script.chmod(0o700)

    def _register(self, name: str, svc: ServiceLab, ctx: Context) -> None:
        """The service's Keystone user (admin in project ``service``), service and endpoints."""
        conn = self.connect()
        project = conn.identity.find_project("service") or conn.identity.create_project(
            name="service", domain_id="default"
        )
        user = conn.identity.find_user(name, domain_id="default")
        if user is None:
            user = conn.identity.create_user(name=name, password=ctx.service_password, domain_id="default")
        else:
            conn.identity.update_user(user, password=ctx.service_password)
        role = conn.identity.find_role("admin")
        conn.identity.assign_project_role_to_user(project, user, role)
        # keystonemiddleware 13 requires the `service` role on a service token (nova sends one with
        # its calls to neutron, placement, glance: `service_token_roles_required` defaults to true)
        service_role = conn.identity.find_role("service") or conn.identity.create_role(name="service")
        conn.identity.assign_project_role_to_user(project, user, service_role)
        if svc.catalog is None:
            return
        kind, path = svc.catalog
        service = conn.identity.find_service(name) or conn.identity.create_service(name=name, type=kind)
        present = {e.interface for e in conn.identity.endpoints(service_id=service.id)}
        for interface in ("public", "internal", "admin"):
            if interface not in present:
                conn.identity.create_endpoint(
                    service_id=service.id, interface=interface, url=self.endpoints[name] + path, region_id="RegionOne"
                )

    def connect(self) -> Any:
        import openstack

        return openstack.connect(
            auth_url=self.auth_url,
            username="admin",
            password=self.admin_password,
            project_name="admin",
            user_domain_name="Default",
            project_domain_name="Default",
            region_name="RegionOne",
            identity_api_version="3",
        )

    def _start_proxy(self) -> None:
        self._write_routes()
        if procs.alive(self.proxy_pid):
            return
        self.proxy_pid = procs.start_detached(
            [sys.executable, "-m", "lab.openstack.proxy", str(self.routes_file)],
            self.base / "proxy.log",
            cwd=paths.REPO_ROOT,
            program="lab.openstack.proxy",
        )
        procs.wait_for(self._proxy_listens, 30, "lab proxy", pid=self.proxy_pid, log=self.base / "proxy.log")
        self.save()

    def _proxy_listens(self) -> bool:
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.listen["keystone"]), timeout=1):
                return True
        except OSError:
            return False

    @property
    def routes_file(self) -> Path:
        return self.base / "routes.json"

    def _write_routes(self) -> None:
        backends: dict[str, list[int]] = {}
        for pod in self.pods.values():
            if pod.api and pod.routed:
                backends.setdefault(pod.service, []).append(pod.port)
        write_routes(self.routes_file, self.listen, backends)

    # --- pods ----------------------------------------------------------------------------------
    def program(self, service: str, workload: str, release: str) -> Program:
        for p in service_lab(service).programs(release):
            if p.workload == workload:
                return p
        raise KeyError(f"{service} {release} has no workload {workload!r}")

    def start_pod(self, service: str, workload: str, release: str, pod: str, host: str) -> PodProc:
        """Start the process of one pod (its release's program on a port of its own); a pod already
        running is returned as it is."""
        current = self.pods.get(pod)
        if current and current.release == release and procs.alive(current.pid):
            return current
        if current:
            self.stop_pod(pod)
        program = self.program(service, workload, release)
        svc = service_lab(service)
        ctx = self.context(service)
        port = paths.free_port()
        values = {"etc": str(ctx.base), "release": release, "host": host, "port": str(port)}
        env = dict(os.environ, **{k: v.format(**values) for k, v in program.env.items()})
        argv = program.command(venv(service, release, svc.versions), ctx.base, port, host, release)
        log_path = ctx.base / "logs" / f"{pod}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a") as out:
            out.write(f"\n===== {pod}: {service} {workload} {release} on {host}, port {port} =====\n")
        # the service's name stays in the command line even when the program retitles itself
        # (gunicorn: "gunicorn: master [nova-api-2026.1]"; oslo.service workers)
        pid = procs.start_detached(argv, log_path, env=env, cwd=ctx.base, program=service)
        proc = PodProc(service, workload, release, host, port, pid, program.api)
        self.pods[pod] = proc
        self.save()
        log.info("cloud_pod_started", pod=pod, service=service, workload=workload, release=release, pid=pid, port=port)
        return proc

    def pod_ready(self, pod: str) -> bool:
        """Whether a pod serves: an API answers HTTP below 500 on its port; any other program lives
        and its service says it is ready. A ready API pod is routed from then on."""
        proc = self.pods.get(pod)
        if proc is None or not procs.alive(proc.pid):
            if proc and proc.routed:
                self._unroute(pod)
            return False
        program = self.program(proc.service, proc.workload, proc.release)
        if not program.api:
            return service_lab(proc.service).ready(self.context(proc.service), program, proc.host)
        if not _answers(f"http://127.0.0.1:{proc.port}{program.health_path}"):
            return False
        if not proc.routed:
            proc.routed = True
            self._write_routes()
            self.routed_at[proc.service] = time.monotonic()
            self.save()
        return True

    def _unroute(self, pod: str) -> None:
        self.pods[pod].routed = False
        self._write_routes()
        self.routed_at[self.pods[pod].service] = time.monotonic()
        self.save()

    def stop_pod(self, pod: str) -> None:
        """Take the pod out of the routes first (new connections go elsewhere), then stop it
        (SIGTERM: gunicorn finishes what it serves)."""
        proc = self.pods.get(pod)
        if proc is None:
            return
        if proc.routed:
            self._unroute(pod)
        procs.stop(proc.pid, timeout=15)
        del self.pods[pod]
        self.save()
        log.info("cloud_pod_stopped", pod=pod)

    def pods_of(self, service: str) -> dict[str, PodProc]:
        return {n: p for n, p in self.pods.items() if p.service == service}

    def served(self, service: str) -> str | None:
        """The release a service's live pods run (the newest when mixed), None when none runs."""
        releases = sorted({p.release for p in self.pods_of(service).values() if procs.alive(p.pid)})
        return releases[-1] if releases else None

    def serve(self, service: str, release: str, timeout: float = 180) -> float:
        """Direct mode's rolling swap: start every workload of ``release`` (DaemonSets on every host),
        wait until each is ready, then stop the pods of any other release. Returns seconds."""
        started = time.monotonic()
        wanted = []
        for program in service_lab(service).programs(release):
            for host in self.hosts if program.kind == "DaemonSet" else self.hosts[:1]:
                name = f"{program.workload}-{host}" if program.kind == "DaemonSet" else program.workload
                pod = f"{name}-{release}"
                self.start_pod(service, program.workload, release, pod, host)
                wanted.append(pod)
        for pod in wanted:
            proc = self.pods[pod]
            log_path = self.base / service / "logs" / f"{pod}.log"
            procs.wait_for(partial(self.pod_ready, pod), timeout, f"{service} {pod}", proc.pid, log_path)
        for pod in list(self.pods_of(service)):
            if pod not in wanted:
                self.stop_pod(pod)
        return time.monotonic() - started

    def stop_service(self, service: str) -> None:
        """Every pod of the service stopped: what scaling its workloads to 0 does (quiesced)."""
        for pod in list(self.pods_of(service)):
            self.stop_pod(pod)

    # --- nova's computes -------------------------------------------------------------------------
    def zones(self) -> dict[str, str]:
        """host -> availability zone of every compute host (alternating az-1, az-2 in host order)."""
        from lab.openstack.services import nova

        return nova.zones(self.hosts)

    def ensure_zones(self, placement: dict[str, str] | None = None) -> dict[str, list[str]]:
        """A nova host aggregate per availability zone (``availability_zone`` metadata) holding its
        hosts (default: ``zones()``); idempotent. The hosts' computes must be mapped. Zone -> hosts."""
        from lab.openstack.services import nova

        conn = self.connect()
        try:
            return nova.ensure_zones(conn, placement if placement is not None else self.zones())
        finally:
            conn.close()

    def servers_on(self, host: str) -> list[str]:
        """The uuids of the servers nova places on ``host`` now (cell1's ``instances``: host = it, not
        deleted), read from the database: what a compute's replacement would find on its node."""
        assert self.mariadb
        rows = self.mariadb.sql(
            f"SELECT uuid FROM instances WHERE deleted = 0 AND host = '{host}' ORDER BY created_at", database="nova"
        )
        return [r.strip() for r in rows.splitlines() if r.strip()]

    def manage(self, service: str, release: str, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """The service's manage tool of ``release`` (output captured, exit code not checked)."""
        argv = [*service_lab(service).manage_command(self.context(service), release), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)

    def down(self, purge: bool = False) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.pods, stopping = {}, list(self.pods.values())
        if self.routes_file.exists():
            self._write_routes()
        with ThreadPoolExecutor(max_workers=16) as pool:  # SIGTERM to every pod at once, then wait
            list(pool.map(lambda p: procs.stop(p.pid, timeout=15), stopping))
        procs.stop(self.proxy_pid, timeout=5)
        self.proxy_pid = None
        if self.rabbit:
            self.rabbit.stop()
        if self.mariadb:
            self.mariadb.stop()
        if self.state_file.exists() or self.mariadb:
            self.save()
        if purge and self.base.exists():
            shutil.rmtree(self.base)
            self.services, self.passwords, self.listen = [], {}, {}
            self.mariadb = self.rabbit = None

    def status(self) -> dict[str, Any]:
        self.reload()
        return {
            "cloud_dir": str(self.base),
            "mariadb": bool(self.mariadb and procs.alive(self.mariadb.pid)),
            "rabbitmq": bool(self.rabbit and procs.alive(self.rabbit.pid)),
            "proxy": procs.alive(self.proxy_pid),
            "services": {s: self.endpoints.get(s) for s in self.services},
            "pods": {n: {**asdict(p), "alive": procs.alive(p.pid)} for n, p in sorted(self.pods.items())},
            "clouds_yaml": str(self.clouds_yaml),
        }

    def memory(self) -> dict[str, float]:
        """RSS in MiB of each part of the cloud (a pod counts its process group: gunicorn's master
        and worker), measured now; ``total`` is their sum."""
        import psutil  # type: ignore[import-untyped]

        def group_rss(pid: int | None) -> float:
            if not procs.alive(pid):
                return 0.0
            assert pid is not None
            total = 0
            for proc in psutil.process_iter(["pid"]):
                try:
                    if os.getsid(proc.pid) == pid:
                        total += proc.memory_info().rss
                except (psutil.Error, ProcessLookupError, PermissionError):
                    continue
            return total / 2**20

        parts = {
            "mariadb": group_rss(self.mariadb.pid if self.mariadb else None),
            "rabbitmq": group_rss(self.rabbit.pid if self.rabbit else None),
            "proxy": group_rss(self.proxy_pid),
        }
        for name, pod in sorted(self.pods.items()):
            parts[name] = group_rss(pod.pid)
        parts["total"] = sum(parts.values())
        return {k: round(v, 1) for k, v in parts.items()}

    # --- baseline (cheap reset between tests) ----------------------------------------------------
    @property
    def baseline_dir(self) -> Path:
        return self.base / "baseline"

    def databases(self, services: Sequence[str] | None = None) -> list[str]:
        return [d for s in self.services if services is None or s in services for d in service_lab(s).databases]

    def save_baseline(self) -> Path:
        """Dump every database as set up, one file each (lab plumbing, not the snapshot activity
        under test), so a test resets only the services it changes."""
        assert self.mariadb
        dump = install.find_tool("mariadb-dump") or "mariadb-dump"
        self.baseline_dir.mkdir(parents=True, exist_ok=True)
        for database in self.databases():
            with open(self.baseline_dir / f"{database}.sql", "wb") as out:
                subprocess.run(
                    [dump, f"--defaults-file={self.mariadb.defaults_file}", "--single-transaction", database],
                    stdout=out,
                    check=True,
                )
        return self.baseline_dir

    def reset(self, services: Sequence[str] | None = None) -> float:
        """The databases of ``services`` (default: all) back to the baseline and those services
        served at the bootstrapped release, their pods restarted (no process keeps state from
        before). Keystone is reset only when named (or with everything). Returns seconds."""
        assert self.mariadb
        started = time.monotonic()
        chosen = [s for s in self.services if services is None or s in services]
        for s in reversed(chosen):
            self.stop_service(s)
        client = install.find_tool("mariadb") or "mariadb"
        for database in self.databases(chosen):
            self.mariadb.sql(
                f"DROP DATABASE IF EXISTS `{database}`; "
                f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
            )
            with open(self.baseline_dir / f"{database}.sql", "rb") as dump:
                subprocess.run(
                    [client, f"--defaults-file={self.mariadb.defaults_file}", database], stdin=dump, check=True
                )
        for s in chosen:
            self.serve(s, self.release)
        return time.monotonic() - started

    # --- clients -------------------------------------------------------------------------------
    @property
    def clouds_yaml(self) -> Path:
        return self.base / "clouds.yaml"

    def write_clouds_yaml(self) -> Path:
        auth = {
            "auth_url": self.auth_url,
            "username": "admin",
            "password": self.admin_password,
            "user_domain_name": "Default",
            "project_name": "admin",
            "project_domain_name": "Default",
        }
        clouds = {"clouds": {ADMIN_CLOUD: {"auth": auth, "region_name": "RegionOne", "identity_api_version": 3}}}
        paths.write_private(self.clouds_yaml, yaml.safe_dump(clouds, sort_keys=False))
        return self.clouds_yaml

    @property
    def tempest_workspace(self) -> Path:
        return tempest_ws.workspace(self.base)

    def write_tempest_workspace(self) -> Path:
        """``<cloud>/tempest/ws`` for the services set up (their APIs must answer): tempest's image
        and flavors ensured, tempest.conf (re)written; ``worker_env`` names it from then on."""
        return tempest_ws.create_for_cloud(
            self.base,
            self.connect(),
            auth_url=self.auth_url,
            admin_password=self.admin_password,
            services=self.services,
        )

    def worker_env(self) -> dict[str, str]:
        """Environment for a stackhop worker acting on this cloud (activities read these)."""
        assert self.mariadb
        env = {
            "OS_CLIENT_CONFIG_FILE": str(self.clouds_yaml),
            "STACKHOP_DB_DEFAULTS_FILE": str(self.mariadb.defaults_file),
            "STACKHOP_SNAPSHOT_DIR": str(self.base / "snapshots"),
        }
        if (self.tempest_workspace / "etc" / "tempest.conf").is_file():  # write_tempest_workspace()
            env["STACKHOP_TEMPEST_WORKSPACE"] = str(self.tempest_workspace)
            env["STACKHOP_TEMPEST_COMMAND"] = str(tempest_ws.tempest_bin())
        for s in self.services:
            env[f"STACKHOP_{s.upper()}_MANAGE"] = f"{self.base / 'bin' / (s + '-manage')} {{version}}"
            env[f"STACKHOP_{s.upper()}_STATUS"] = f"{self.base / 'bin' / (s + '-status')} {{version}} upgrade check"
        return env


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            status: int = response.status
            return status < 500
    except urllib.error.HTTPError as e:
        return e.code < 500
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def _sh(word: str) -> str:
    import shlex

    return shlex.quote(word)
