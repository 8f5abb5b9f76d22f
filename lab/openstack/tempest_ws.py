"""A tempest workspace pointed at a lab: the Keystone lab (identity tests only) or the cloud lab
(identity, image, network and compute).

For the cloud lab (:func:`create_for_cloud`) the generated tempest.conf gives the image, network
and compute tests what they need, from the cloud itself (tempest 47.0.0's options, tempest/config.py):

* ``[compute] image_ref``/``image_ref_alt``: a public 1 KiB raw image ``lab-tempest-image`` (the
  fake virt driver never reads it); ``flavor_ref``/``flavor_ref_alt``: ``lab.tempest`` and
  ``lab.tempest.alt`` (1 vCPU, 64/128 MiB, 1 GiB disk: a zero-disk flavor is refused to non-admins);
  all created when missing, found by name otherwise.
* ``[compute] min_microversion = 2.37``, ``max_microversion`` = what nova answers: tempest's
  ``create_test_server`` then sends ``networks: "none"`` when the test has no network
  (tempest/api/compute/base.py) — the lab's neutron binds no port, so a server with one would
  fail; classes whose ``max_microversion`` is below 2.37 (``KeyPairsV2TestJSON``) are skipped,
  their tests run in their 2.2+ subclass (``KeyPairsV22TestJSON``).
* ``[auth] create_isolated_networks = false`` (dynamic credentials would create a router: the lab's
  neutron has no L3 plugin), no ``fixed_network_name``, ``[validation] run_validation = false`` (no
  guest to ssh into) and ``[compute-feature-enabled] interface_attach = false``.
* ``[network-feature-enabled] api_extensions``: exactly the aliases neutron lists, so tests of
  extensions the lab lacks (router, floating IPs) skip instead of failing; ``floating_ips = false``;
  ``ipv6 = false`` (the lab's network is IPv4 only; the IPv6 classes repeat the IPv4 calls).
* ``[service_available]``: true for the services the cloud runs, false for the others.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.openstack import paths

SMOKE_REGEX = r"^tempest\.api\.identity\..*\[.*\bsmoke\b.*\]"
UNAVAILABLE = ("nova", "neutron", "glance", "cinder", "swift", "horizon", "placement", "heat")

#: The tempest selections of the whole-cloud plan, per service (tempest 47.0.0's test ids).
IMAGE_SMOKE_REGEX = r"^tempest\.api\.image\..*\[.*\bsmoke\b.*\]"
NETWORK_SMOKE_REGEX = r"^tempest\.api\.network\..*\[.*\bsmoke\b.*\]"
#: flavors (list/show/filter), keypairs (create/list/show/delete, at 2.2+), servers created, listed,
#: shown (ServersTestJSON: its class creates one, networks "none") and deleted (active, building)
COMPUTE_REGEX = (
    r"^tempest\.api\.compute\.("
    r"flavors\.test_flavors\.FlavorsV2TestJSON\."
    r"|keypairs\.test_keypairs_v22\.KeyPairsV22TestJSON\."
    r"|servers\.test_create_server\.ServersTestJSON\."
    r"|servers\.test_delete_server\.DeleteServersTestJSON\.test_delete_(active_server|server_while_in_building_state)\["
    r")"
)
CLOUD_REGEXES: dict[str, str] = {
    "keystone": SMOKE_REGEX,
    "glance": IMAGE_SMOKE_REGEX,
    "neutron": NETWORK_SMOKE_REGEX,
    "nova": COMPUTE_REGEX,
}
#: tempest's [service_available] option of each cloud-lab service (keystone is always there)
AVAILABLE_AS = {"glance": "glance", "neutron": "neutron", "nova": "nova", "placement": "placement"}
TEMPEST_IMAGE = "lab-tempest-image"
TEMPEST_FLAVORS = {"lab.tempest": 64, "lab.tempest.alt": 128}  # name -> RAM MiB
NETWORKS_NONE_MICROVERSION = "2.37"


@dataclass
class CloudResources:
    """What the cloud lab's tempest.conf names: refs, microversions, extensions, services."""

    services: list[str]
    image_ref: str = ""
    flavor_ref: str = ""
    flavor_ref_alt: str = ""
    compute_max_microversion: str = ""
    network_extensions: list[str] = field(default_factory=list)


def workspace(base: Path) -> Path:
    return base / "tempest" / "ws"


def tempest_bin() -> Path:
    return paths.tempest_venv() / "bin" / "tempest"


def render_conf(
    *, auth_url: str, admin_password: str, log_dir: Path, region: str = "RegionOne", cloud: CloudResources | None = None
) -> str:
    available = {AVAILABLE_AS[s] for s in cloud.services if s in AVAILABLE_AS} if cloud else set()
    service_available = "".join(f"{name} = {str(name in available).lower()}\n" for name in UNAVAILABLE)
    identity_only = (
        "[DEFAULT]\n"
        "debug = false\n"
        "use_stderr = false\n"
        "log_file = tempest.log\n"
        f"log_dir = {log_dir}\n"
        "[auth]\n"
        "admin_username = admin\n"
        f"admin_password = {admin_password}\n"
        "admin_project_name = admin\n"
        "admin_domain_name = Default\n"
        "use_dynamic_credentials = true\n"
        # cloud: the isolated network tempest's dynamic credentials would create needs a router
        # (the lab's neutron has no L3 plugin)
        f"{'create_isolated_networks = false' + chr(10) if cloud else ''}"
        "[identity]\n"
        f"uri_v3 = {auth_url}\n"
        "auth_version = v3\n"
        f"region = {region}\n"
        "v3_endpoint_type = public\n"
        "[identity-feature-enabled]\n"
        "api_v2 = false\n"
        "[service_available]\n"
        f"{service_available}"
    )
    return identity_only + (_cloud_sections(cloud) if cloud else "")


def _cloud_sections(cloud: CloudResources) -> str:
    text = "[validation]\nrun_validation = false\n"
    if "glance" in cloud.services:
        text += "[image]\nbuild_timeout = 60\n"
    if "neutron" in cloud.services:
        text += (
            "[network]\n"
            "build_timeout = 60\n"
            "[network-feature-enabled]\n"
            f"api_extensions = {','.join(cloud.network_extensions)}\n"
            "floating_ips = false\n"
            # the lab's network is IPv4 only: the IPv6 classes (NetworksIpV6Test...) repeat the IPv4
            # API calls with v6 subnets, and skipping them halves the network smoke's time
            "ipv6 = false\n"
        )
    if "nova" in cloud.services:
        text += (
            "[compute]\n"
            f"image_ref = {cloud.image_ref}\n"
            f"image_ref_alt = {cloud.image_ref}\n"
            f"flavor_ref = {cloud.flavor_ref}\n"
            f"flavor_ref_alt = {cloud.flavor_ref_alt}\n"
            f"min_microversion = {NETWORKS_NONE_MICROVERSION}\n"
            f"max_microversion = {cloud.compute_max_microversion}\n"
            "build_timeout = 120\n"
            "[compute-feature-enabled]\n"
            "interface_attach = false\n"
            "resize = false\n"
            "console_output = false\n"
        )
    return text


def create(base: Path, *, auth_url: str, admin_password: str, cloud: CloudResources | None = None) -> Path:
    """`tempest init` once (its workspace registry kept in the lab dir), then (re)write tempest.conf."""
    ws = workspace(base)
    if not (ws / "etc").exists():
        ws.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [str(tempest_bin()), "init", "--workspace-path", str(ws.parent / "workspace.yaml"), str(ws)],
            check=True,
            capture_output=True,
        )
    # it holds the admin password: readable by the lab's user only
    paths.write_private(
        ws / "etc" / "tempest.conf",
        render_conf(auth_url=auth_url, admin_password=admin_password, log_dir=ws / "logs", cloud=cloud),
    )
    return ws


def cloud_resources(conn: Any, services: Sequence[str]) -> CloudResources:
    """Find (or create, the first time) what the cloud lab's tempest tests need, and read the
    compute microversion range and neutron's extensions from the cloud."""
    from lab.openstack import smoke

    found = CloudResources(services=list(services))
    if "glance" in services:
        image = conn.image.find_image(TEMPEST_IMAGE, ignore_missing=True)
        if image is None:
            image = smoke.upload_image(conn, TEMPEST_IMAGE, smoke.image_data(1024, TEMPEST_IMAGE), visibility="public")
        found.image_ref = image.id
    if "nova" in services:
        flavor, alt = (smoke.ensure_flavor(conn, name, ram=ram) for name, ram in TEMPEST_FLAVORS.items())
        found.flavor_ref, found.flavor_ref_alt = flavor.id, alt.id
        found.compute_max_microversion = smoke.compute_max_microversion(conn)
    if "neutron" in services:
        found.network_extensions = sorted(e.alias for e in conn.network.extensions())
    return found


def create_for_cloud(base: Path, conn: Any, *, auth_url: str, admin_password: str, services: Sequence[str]) -> Path:
    """The cloud lab's workspace (``<cloud>/tempest/ws``): resources ensured, tempest.conf (re)written.
    Idempotent and cheap (a few API calls): call it again after a reset that dropped the image."""
    return create(base, auth_url=auth_url, admin_password=admin_password, cloud=cloud_resources(conn, services))
