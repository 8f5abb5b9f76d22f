"""The data plane activities' pure parts: placing servers on placement's candidates (largest first,
each taking its room), what counts as a pod on the target images, the cell database's answer."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from activities.dataplane import choose, is_new, size_key
from activities.dataplane_kube import repository, runs_targets
from activities.dataplane_nova import parse_versions, versions_script
from activities.dbtools import parse_markers
from model.io_dataplane import cell_database
from model.plan import Service


def answer(free: dict[str, int], need: dict[str, int]) -> dict[str, Any]:
    """placement's allocation candidates: one request per provider, each with its summary."""
    return {
        "allocation_requests": [{"allocations": {rp: {"resources": need}}} for rp in free],
        "provider_summaries": {
            rp: {"resources": {"MEMORY_MB": {"capacity": mem + 512, "used": 512}, "VCPU": {"capacity": 16, "used": 0}}}
            for rp, mem in free.items()
        },
    }


HOSTS = {"rp-a": "node-a", "rp-b": "node-b", "rp-c": "node-c"}


def test_two_servers_cannot_both_claim_the_last_room() -> None:
    taken: dict[str, dict[str, int]] = {}
    need = {"MEMORY_MB": 3000, "VCPU": 1}
    free = {"rp-b": 4000, "rp-c": 1000}
    assert choose(answer(free, need), need, HOSTS, {"node-a"}, taken) == "rp-b"
    assert taken == {"rp-b": {"MEMORY_MB": 3000, "VCPU": 1}}
    # placement still says 4000 free on b (nothing moved yet): the first server's claim counts
    assert choose(answer(free, need), need, HOSTS, {"node-a"}, taken) == ""


def test_excluded_hosts_never_chosen_and_most_room_wins() -> None:
    need = {"MEMORY_MB": 100}
    free = {"rp-a": 9000, "rp-b": 500, "rp-c": 800}
    assert choose(answer(free, need), need, HOSTS, {"node-a"}, {}) == "rp-c"
    assert choose(answer(free, need), need, HOSTS, {"node-a", "node-c"}, {}) == "rp-b"
    assert choose(answer(free, need), need, HOSTS, set(HOSTS.values()), {}) == ""


def test_largest_first() -> None:
    sizes = [{"MEMORY_MB": 64, "VCPU": 1}, {"MEMORY_MB": 4096, "VCPU": 1}, {"MEMORY_MB": 64, "VCPU": 4}]
    assert sorted(sizes, key=size_key, reverse=True) == [sizes[1], sizes[2], sizes[0]]


def test_target_images() -> None:
    assert repository("reg.lab:5000/openstack/nova:2026.1-ubuntu_noble") == "reg.lab:5000/openstack/nova"
    assert repository("reg.lab:5000/nova") == "reg.lab:5000/nova"
    assert repository("nova@sha256:abc") == "nova"
    target = ["reg/nova:2026.1"]
    assert runs_targets(["reg/nova:2026.1", "reg/sidecar:1"], target)
    assert not runs_targets(["reg/nova:2025.2", "reg/sidecar:1"], target)
    assert not runs_targets(["reg/sidecar:1"], target)  # none of its containers is the data plane's
    pod = {"metadata": {"labels": {"pod-template-generation": "3"}}, "spec": {"containers": [{"image": "reg/nova:1"}]}}
    assert is_new(pod, 3, target) and not is_new(pod, 4, target) and not is_new(pod, 4, [])


def test_service_versions_from_the_cell_database(tmp_path: Path) -> None:
    assert parse_versions("node-a:70,node-b:72,bad host:1,node-c:x,") == {"node-a": 70, "node-b": 72}
    fake = tmp_path / "mariadb"  # answers as `mariadb -N -B` does, and records what it was asked
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args\nprintf "node-a:70\\nnode-b:72\\n"\n')
    fake.chmod(0o755)
    script = versions_script("nova", "nova-compute", "/etc/my.cnf")
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    ran = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, check=True)
    assert parse_markers(ran.stdout) == {"versions": "node-a:70,node-b:72"}
    args = (tmp_path / "args").read_text()
    assert "--defaults-file=/etc/my.cnf -N -B nova -e" in args and "`binary` = 'nova-compute'" in args


WORKLOAD = {"kind": "Deployment", "name": "api", "container": "api", "image": "reg/api:1"}


def test_the_cell_database_is_the_one_named_after_the_service() -> None:
    def svc(name: str, dbs: list[str]) -> Service:
        names: dict[str, object] = {"databases": [{"name": d} for d in dbs]} if dbs else {}
        return Service.model_validate({"name": name, **names, "workloads": [WORKLOAD], "migration": {"mode": "none"}})

    cell = cell_database(svc("nova", ["nova_api", "nova", "nova_cell0"]))
    assert cell is not None and cell.name == "nova"
    last = cell_database(svc("compute", ["compute_api", "compute_cell1"]))
    assert last is not None and last.name == "compute_cell1"
    assert cell_database(svc("nova", [])) is None


def test_a_drain_never_takes_an_older_move_of_the_server_for_its_own() -> None:
    """The CI failure of the whole-cloud test: the server came to node-0 by an earlier live migration
    (record 7, completed, dest node-0); the drain of node-0 started a new one, and before nova wrote
    its record the newest record was 7, read as "done, moved to node-0, a host of the batch"."""
    from activities.dataplane_node import move_record
    from model.io_dataplane import MovedServer

    older = {"id": 7, "migration_type": "live-migration", "source_compute": "node-2", "dest_compute": "node-0"}
    move = MovedServer(server="s", kind="live", source="node-0", since_id=7)
    assert move_record([older], move) is None  # not written yet: not done
    own = {"id": 9, "migration_type": "live-migration", "source_compute": "node-0", "dest_compute": "node-1"}
    cold = {"id": 8, "migration_type": "migration", "source_compute": "node-0", "dest_compute": "node-3"}
    assert move_record([own, cold, older], move) == own
    # a move the drain found under way (no since_id): only a record from the drained node counts
    found = MovedServer(server="s", kind="live", source="node-0")
    assert move_record([older], found) is None
    assert move_record([own, older], found) == own
    # once its id is known, that record and no other
    assert move_record([own], move.model_copy(update={"migration_id": 9})) == own
    assert move_record([own], move.model_copy(update={"migration_id": 10})) is None
