"""The cloud lab's own plumbing, on the session cloud: the proxy routes only to ready pods, a swap
is rolling, a reset puts every database back."""

from __future__ import annotations

import json
import urllib.request

import pytest

from lab.openstack.cloud import CloudLab


def _version_doc(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        status: int = response.status
        json.load(response)
        return status


def test_the_catalog_names_the_proxy_and_it_routes_to_a_ready_pod(cloud: CloudLab) -> None:
    conn = cloud.connect()
    urls = {e.url for e in conn.identity.endpoints()}
    assert f"{cloud.endpoints['keystone']}/v3" in urls
    pods = cloud.pods_of("keystone")
    assert pods and all(p.routed for p in pods.values())
    assert all(cloud.endpoints["keystone"] != f"http://127.0.0.1:{p.port}" for p in pods.values())
    assert _version_doc(cloud.auth_url) == 200


def test_a_stopped_service_refuses_then_a_swap_serves_the_other_release(cloud: CloudLab) -> None:
    cloud.stop_service("keystone")
    routes = json.loads(cloud.routes_file.read_text())
    assert routes["backends"].get("keystone", []) == []
    with pytest.raises(OSError):  # refused or reset: no endpoint, as a Service without a ready pod
        urllib.request.urlopen(cloud.auth_url, timeout=5)
    cloud.serve("keystone", "2026.1")
    assert cloud.served("keystone") == "2026.1"
    assert _version_doc(cloud.auth_url) == 200
    cloud.reset(["keystone"])
    assert cloud.served("keystone") == "2025.2"
    assert _version_doc(cloud.auth_url) == 200


def test_memory_counts_every_part(cloud: CloudLab) -> None:
    rss = cloud.memory()
    assert rss["mariadb"] > 20 and rss["rabbitmq"] > 20 and rss["proxy"] > 5
    assert all(rss[pod] > 20 for pod in cloud.pods)  # a pod counts its process group
    assert rss["total"] == pytest.approx(sum(v for k, v in rss.items() if k != "total"), abs=1)
