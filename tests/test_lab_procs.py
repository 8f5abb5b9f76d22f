"""The lab stops only its own processes, and writes its secrets 0600 (issue 14, item 6).

Real processes (``sleep``), no lab: a recorded pid that now belongs to another process, as after a
reboot, must not be signalled; a pid the lab started is stopped; files holding passwords are 0600.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pytest

from lab.k8s.cluster import KubeLab
from lab.openstack import paths, procs, tempest_ws
from lab.openstack.cloud import CloudLab, PodProc
from lab.openstack.keystone import Keystone
from lab.openstack.manager import OpenStackLab
from lab.openstack.mariadb import MariaDB
from tests.waiting import eventually_sync


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """A process the lab did not start (its pid is what a stale state file may name)."""
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    eventually_sync(lambda: procs.cmdline(proc.pid), within=10, what="sleep's exec")
    yield proc
    proc.kill()
    proc.wait()


def test_a_recorded_pid_of_another_process_is_never_signalled(
    stranger: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    start = procs.start_time(stranger.pid)
    assert start is not None
    # a record whose start time differs: the pid was reused since
    stale = {"pid": stranger.pid, "start": start - 1, "program": "sleep", "cmd": "sleep 300"}
    assert procs.adopt(stale, "sleep") is None
    # right start time, but the command line does not name the program the lab started there
    assert procs.adopt({**stale, "start": start, "program": "mariadbd"}, "mariadbd") is None
    # an old state file's bare pid: trusted only if its command line names the program
    assert procs.adopt(stranger.pid, "mariadbd") is None
    assert not procs.alive(stranger.pid)
    procs.stop(stranger.pid, timeout=1)
    # a state file whose pids were reused: the cloud lab loads them as gone, `down` stops nothing
    pod = asdict(PodProc("nova", "nova-conductor", "2025.2", "lab-node-0", 1, None, False))
    state = {"services": [], "release": "2025.2", "hosts": [], "direct": True, "admin_password": "a"}
    state |= {"passwords": {}, "listen": {}, "proxy_pid": stranger.pid, "pods": {"p": {**pod, "pid": stale}}}
    paths.write_private(tmp_path / "state.json", json.dumps(state))
    cloud = CloudLab.load(tmp_path)
    assert cloud.pods["p"].pid is None and cloud.proxy_pid is None
    cloud.stop_pod("p")
    procs.stop(stranger.pid)
    assert stranger.poll() is None, "a process the lab did not start was signalled"


def test_the_lab_stops_what_it_started_and_a_matching_record(tmp_path: Path) -> None:
    pid = procs.start_detached(["sleep", "300"], tmp_path / "sleep.log")
    saved = json.loads(json.dumps(procs.record(pid)))
    assert saved["start"] == procs.start_time(pid) and saved["program"] == "sleep" and "sleep 300" in saved["cmd"]
    procs._known.pop(pid)  # another process reads the state file: it knows only the record
    child = procs._children.pop(pid)
    assert not procs.alive(pid)  # unknown pid: not the lab's
    assert procs.adopt(saved, "sleep") == pid and procs.alive(pid)
    procs.stop(pid, timeout=5)
    assert child.wait(timeout=5) is not None


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_lab_secrets_are_written_0600(tmp_path: Path) -> None:
    mariadb = MariaDB(base=tmp_path / "mariadb", port=3306)
    mariadb._write_client_cnf()
    mariadb._write_server_cnf()
    keystone = Keystone(base=tmp_path / "ks", port=1, db_port=2, db_password="d", admin_password="a")
    lab = OpenStackLab(base=tmp_path / "lab", mariadb=mariadb, keystone=keystone)
    lab.save()
    lab.write_clouds_yaml()
    cloud = CloudLab(base=tmp_path / "cloud", listen={"keystone": 5000}, mariadb=mariadb)
    cloud.save()
    cloud.write_clouds_yaml()
    (tempest_ws.workspace(cloud.base) / "etc").mkdir(parents=True)  # `tempest init` ran before
    conf = tempest_ws.workspace(cloud.base) / "etc" / "tempest.conf"
    conf.write_text("from an older lab, world-readable\n")
    conf.chmod(0o644)
    tempest_ws.create(cloud.base, auth_url="http://127.0.0.1:5000/v3", admin_password="secret")
    files = [mariadb.defaults_file, mariadb.server_cnf, lab.state_file, lab.clouds_yaml, cloud.state_file]
    files += [cloud.clouds_yaml, conf]
    assert {str(f): oct(mode(f)) for f in files} == {str(f): oct(0o600) for f in files}
    assert "secret" in conf.read_text()
    paths.write_private(tmp_path / "x", "y")
    assert mode(tmp_path / "x") == 0o600


def test_kwokctl_pid_files_naming_another_process_are_dropped(
    stranger: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    """kwokctl signals the pids of its pid files on `delete`: a file whose pid is now another
    process (a reboot) is dropped first; one that still names the cluster's component stays."""
    lab = KubeLab(name="procs", workdir=tmp_path)
    pids = lab.cluster_dir / "pids"
    (lab.cluster_dir / "bin").mkdir(parents=True)
    pids.mkdir()
    sleep = lab.cluster_dir / "bin" / "etcd"  # a stand-in for the cluster's etcd binary
    sleep.symlink_to(shutil.which("sleep") or "/bin/sleep")
    etcd = subprocess.Popen([str(sleep), "300"])  # its path names the cluster's directory
    try:
        eventually_sync(lambda: procs.cmdline(etcd.pid), within=10, what="the stand-in's exec")
        (pids / "kube-apiserver.pid").write_text(f"{stranger.pid}\n")
        lab.stop_apiserver()  # the fault injection's SIGKILL: not for a process that is not the apiserver
        assert not (pids / "kube-apiserver.pid").exists()
        (pids / "etcd.pid").write_text(f"{etcd.pid}\n")
        (pids / "kube-apiserver.pid").write_text(f"{stranger.pid}\n")
        assert lab.drop_stale_pids() == ["kube-apiserver"]
        assert [f.name for f in pids.iterdir()] == ["etcd.pid"]
        assert stranger.poll() is None and etcd.poll() is None
    finally:
        etcd.kill()
        etcd.wait()


def test_write_private_from_threads_at_once(tmp_path: Path) -> None:
    """Two lab threads (a controller, a test's own call) save the same state file at once: each
    writes its own temporary file, so neither finds the other's renamed away."""
    failures: list[BaseException] = []

    def write(n: int) -> None:
        try:
            for i in range(300):
                paths.write_private(tmp_path / "state.json", f"{n}-{i}")
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:1]
    assert (tmp_path / "state.json").read_text().endswith("-299")
