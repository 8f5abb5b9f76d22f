"""A tempest workspace pointed at the lab's Keystone (identity tests only)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from lab.openstack import paths

SMOKE_REGEX = r"^tempest\.api\.identity\..*\[.*\bsmoke\b.*\]"
UNAVAILABLE = ("nova", "neutron", "glance", "cinder", "swift", "horizon", "placement", "heat")


def workspace(base: Path) -> Path:
    return base / "tempest" / "ws"


def tempest_bin() -> Path:
    return paths.tempest_venv() / "bin" / "tempest"


def render_conf(*, auth_url: str, admin_password: str, log_dir: Path, region: str = "RegionOne") -> str:
    service_available = "".join(f"{name} = false\n" for name in UNAVAILABLE)
    return (
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


def create(base: Path, *, auth_url: str, admin_password: str) -> Path:
    """`tempest init` once (its workspace registry kept in the lab dir), then (re)write tempest.conf."""
    ws = workspace(base)
    if not (ws / "etc").exists():
        ws.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [str(tempest_bin()), "init", "--workspace-path", str(ws.parent / "workspace.yaml"), str(ws)],
            check=True,
            capture_output=True,
        )
    (ws / "etc" / "tempest.conf").write_text(
        render_conf(auth_url=auth_url, admin_password=admin_password, log_dir=ws / "logs")
    )
    return ws
