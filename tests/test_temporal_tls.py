"""TLS, client certificates and API keys to Temporal, through worker.connect (the one place the
worker, the CLI and the codec server connect), configured as operators do: Temporal's environment
variables (TEMPORAL_TLS_*, TEMPORAL_API_KEY) or a profile file (TEMPORAL_CONFIG_FILE).

The dev server has no TLS: tests/temporal_tls.py puts a TLS-terminating proxy (HTTP/2 via ALPN h2)
in front of the session's dev server. The right CA and client certificate work; no client
certificate, a CA that did not sign the server, or a missing API key where one is required, are
refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.testing import WorkflowEnvironment

import worker
from tests.temporal_tls import PKI, TLSProxy, make_pki

TLS_ENV = (
    "TEMPORAL_ADDRESS",
    "TEMPORAL_PROFILE",
    "TEMPORAL_CONFIG_FILE",
    "TEMPORAL_API_KEY",
    "TEMPORAL_TLS",
    "TEMPORAL_TLS_SERVER_NAME",
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
    "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "TEMPORAL_TLS_CLIENT_KEY_PATH",
)


@pytest.fixture
def pki(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PKI]:
    for name in TLS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "none.toml"))  # not ~/.config's
    yield make_pki(tmp_path / "pki")


def backend(env: WorkflowEnvironment) -> str:
    return env.client.service_client.config.target_host


def use_tls(monkeypatch: pytest.MonkeyPatch, ca: Path, cert: Path | None = None, key: Path | None = None) -> None:
    monkeypatch.setenv("TEMPORAL_TLS", "true")
    monkeypatch.setenv("TEMPORAL_TLS_SERVER_NAME", "temporal.test")
    monkeypatch.setenv("TEMPORAL_TLS_SERVER_CA_CERT_PATH", str(ca))
    if cert and key:
        monkeypatch.setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", str(cert))
        monkeypatch.setenv("TEMPORAL_TLS_CLIENT_KEY_PATH", str(key))


async def works(address: str) -> str:
    """Connect as the worker does and make a call; the namespace's name on success."""
    client = await asyncio.wait_for(worker.connect(None, address), 30)
    answer = await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace="default"))
    return str(answer.namespace_info.name)


async def refused(address: str) -> str:
    with pytest.raises(worker.Unreachable) as caught:
        await works(address)
    return str(caught.value)


async def test_mutual_tls(temporal_env: WorkflowEnvironment, pki: PKI, monkeypatch: pytest.MonkeyPatch) -> None:
    async with TLSProxy(backend(temporal_env), pki, client_cert_required=True) as proxy:
        use_tls(monkeypatch, pki.ca.cert, pki.client.cert, pki.client.key)
        assert await works(proxy.address) == "default"

        use_tls(monkeypatch, pki.ca.cert)  # no client certificate
        monkeypatch.delenv("TEMPORAL_TLS_CLIENT_CERT_PATH")
        monkeypatch.delenv("TEMPORAL_TLS_CLIENT_KEY_PATH")
        assert "client certificate" in await refused(proxy.address)

        use_tls(monkeypatch, pki.other_ca.cert, pki.client.cert, pki.client.key)  # a CA that did not sign it
        assert "TEMPORAL_TLS_SERVER_CA_CERT_PATH" in await refused(proxy.address)

        # plain text to a TLS port is refused too (what a worker without TLS settings would do)
        for name in TLS_ENV[3:]:
            monkeypatch.delenv(name, raising=False)
        await refused(proxy.address)


async def test_api_key_from_a_profile(
    temporal_env: WorkflowEnvironment, pki: PKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Server-side TLS with an API key, the way Temporal Cloud takes one, from a profile file."""
    profile = tmp_path / "temporal.toml"
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(profile))

    def write(api_key: str | None) -> None:
        key = f'api_key = "{api_key}"\n' if api_key else ""
        profile.write_text(
            f"[profile.default]\n{key}"
            f'[profile.default.tls]\nserver_name = "temporal.test"\nserver_ca_cert_path = "{pki.ca.cert}"\n'
        )

    async with TLSProxy(backend(temporal_env), pki, client_cert_required=False, api_key="s3cret-key") as proxy:
        write(None)
        assert "Temporal refused the credentials" in await refused(proxy.address)
        write("wrong-key")
        await refused(proxy.address)
        assert proxy.refused == ["no API key", "a wrong API key"]
        write("s3cret-key")
        assert await works(proxy.address) == "default"
        # the environment variable does the same as the profile's api_key
        write(None)
        monkeypatch.setenv("TEMPORAL_API_KEY", "s3cret-key")
        assert await works(proxy.address) == "default"
