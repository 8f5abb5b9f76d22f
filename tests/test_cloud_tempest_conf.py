"""The cloud lab's tempest.conf and the seed record, without a cloud (the cloud itself: tests/cloud/test_smoke.py)."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

from lab.openstack import smoke, tempest_ws

CLOUD = tempest_ws.CloudResources(
    services=["keystone", "placement", "glance", "neutron", "nova"],
    image_ref="img-1",
    flavor_ref="fl-1",
    flavor_ref_alt="fl-2",
    compute_max_microversion="2.100",
    network_extensions=["network", "port-security", "security-group"],
)


def parse(text: str) -> configparser.ConfigParser:
    conf = configparser.ConfigParser(interpolation=None, strict=True)  # strict: a section twice fails
    conf.read_string(text)
    return conf


def test_identity_only_conf_is_unchanged_and_the_cloud_conf_gives_each_service_what_it_needs() -> None:
    identity = parse(tempest_ws.render_conf(auth_url="http://k/v3", admin_password="pw", log_dir=Path("/l")))
    assert {k for k, v in identity["service_available"].items() if v == "true"} == set()
    assert not identity.has_section("compute") and "create_isolated_networks" not in identity["auth"]

    conf = parse(tempest_ws.render_conf(auth_url="http://k/v3", admin_password="pw", log_dir=Path("/l"), cloud=CLOUD))
    available = {k for k, v in conf["service_available"].items() if v == "true"}
    assert available == {"glance", "neutron", "nova", "placement"}
    assert conf["auth"]["create_isolated_networks"] == "false"
    assert conf["validation"]["run_validation"] == "false"
    assert (
        dict(conf["compute"]).items()
        >= {
            "image_ref": "img-1",
            "flavor_ref": "fl-1",
            "flavor_ref_alt": "fl-2",
            "min_microversion": "2.37",
            "max_microversion": "2.100",
        }.items()
    )
    assert "fixed_network_name" not in conf["compute"]
    assert conf["network-feature-enabled"]["api_extensions"] == "network,port-security,security-group"

    only_keystone = tempest_ws.CloudResources(services=["keystone"])
    conf = parse(tempest_ws.render_conf(auth_url="u", admin_password="p", log_dir=Path("/l"), cloud=only_keystone))
    assert not conf.has_section("compute") and not conf.has_section("network-feature-enabled")


def test_the_plan_regexes_select_by_service() -> None:
    regexes = {s: re.compile(r) for s, r in tempest_ws.CLOUD_REGEXES.items()}
    ids = {
        "keystone": "tempest.api.identity.v3.test_tokens.TokensV3Test.test_create_token[id-6f8e4436,smoke]",
        "glance": "tempest.api.image.v2.test_images.BasicOperationsImagesTest.test_delete_image[id-f848bb94,smoke]",
        "neutron": "tempest.api.network.test_networks.NetworksTest.test_list_networks[id-f7ffdeda,smoke]",
        "nova": "tempest.api.compute.servers.test_delete_server.DeleteServersTestJSON.test_delete_active_server[id-9]",
    }
    for service, regex in regexes.items():
        assert {s for s, test_id in ids.items() if regex.search(test_id)} == {service}
    nova = regexes["nova"]
    servers = "tempest.api.compute.servers"
    assert not nova.search(
        f"{servers}.test_delete_server.DeleteServersTestJSON.test_delete_server_while_in_shelved_state["
    )
    assert not nova.search(f"{servers}.test_create_server.ServersTestManualDisk.test_list_servers[id-1]")


def test_seeded_round_trips_through_a_file(tmp_path: Path) -> None:
    seeded = smoke.Seeded(
        image_id="i",
        image_name="n",
        image_size=8,
        image_checksum="c" * 32,
        image_hash_algo="sha512",
        image_hash_value="h",
        network_id="net",
        network_name="nn",
        flavor_id="f",
        servers=[smoke.SeededServer(id="s1", name="a", host="lab-node-0")],
    )
    assert smoke.Seeded.load(seeded.save(tmp_path / "d" / "seeded.json")) == seeded
    assert smoke.image_data(100) == smoke.image_data(100) and len(smoke.image_data(100)) == 100
