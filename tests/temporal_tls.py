"""A TLS-terminating proxy in front of the Temporal dev server, and the certificates it needs.

The dev server speaks plain HTTP/2 only. A real deployment puts TLS (and often mutual TLS and an
API key) in front of Temporal's frontend; this proxy does the same for the tests: TLS 1.2+ with
ALPN ``h2``, optionally requiring a client certificate from a given CA, optionally requiring
``authorization: Bearer <key>`` on every gRPC call. Behind it, the decrypted HTTP/2 bytes go to the
dev server unchanged (h2 over TLS and cleartext h2 with prior knowledge are the same frames).

The API key check reads the HEADERS of every stream the client opens (HPACK-decoded with the
``hpack`` package, one decoder per connection as HTTP/2 requires). A connection whose first call
lacks the key never reaches the server: the proxy answers every call on it itself with gRPC status
16 (UNAUTHENTICATED), what Temporal Cloud answers; a later call without the key closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
import struct
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hpack import Decoder, Encoder, NeverIndexedHeaderTuple

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, SETTINGS, PING, GOAWAY, CONTINUATION = 0x0, 0x1, 0x4, 0x6, 0x7, 0x9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20


# --- certificates --------------------------------------------------------------------------------
@dataclass
class Pair:
    cert: Path
    key: Path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _issue(
    directory: Path, name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None, server: bool = False
) -> tuple[Pair, x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is not None:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        sans = [
            x509.DNSName("temporal.test"),
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    pair = Pair(directory / f"{name}.crt", directory / f"{name}.key")
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(_key_pem(key))
    pair.key.chmod(0o600)
    return pair, cert, key


@dataclass
class PKI:
    """A server CA with the proxy's certificate (temporal.test, localhost, 127.0.0.1), a client CA
    with a client certificate, and an unrelated CA (the wrong one to trust)."""

    ca: Pair
    server: Pair
    client_ca: Pair
    client: Pair
    other_ca: Pair


def make_pki(directory: Path) -> PKI:
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_cert, ca_key = _issue(directory, "server-ca", None)
    server, _, _ = _issue(directory, "server", (ca_cert, ca_key), server=True)
    client_ca, cca_cert, cca_key = _issue(directory, "client-ca", None)
    client, _, _ = _issue(directory, "client", (cca_cert, cca_key))
    other, _, _ = _issue(directory, "other-ca", None)
    return PKI(ca, server, client_ca, client, other)


# --- HTTP/2 frames -------------------------------------------------------------------------------
def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[bytes, int, int, int, bytes]:
    """(raw bytes, type, flags, stream id, payload) of the next frame."""
    head = await reader.readexactly(9)
    length = int.from_bytes(head[:3], "big")
    payload = await reader.readexactly(length)
    return head + payload, head[3], head[4], int.from_bytes(head[5:9], "big") & 0x7FFFFFFF, payload


def header_fragment(kind: int, flags: int, payload: bytes) -> bytes:
    """The header block fragment of a HEADERS (without padding and priority) or CONTINUATION frame."""
    if kind == CONTINUATION:
        return payload
    start, end = 0, len(payload)
    if flags & PADDED:
        start, end = 1, len(payload) - payload[0]
    if flags & PRIORITY:
        start += 5
    return payload[start:end]


@dataclass
class TLSProxy:
    """``async with TLSProxy(backend, pki, ...)``: listens on 127.0.0.1:<port> until the block ends."""

    backend: str  # host:port of the dev server
    pki: PKI
    client_cert_required: bool = True
    api_key: str | None = None
    port: int = 0
    refused: list[str] = field(default_factory=list)  # why connections or calls were refused
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.pki.server.cert, self.pki.server.key)
        ctx.set_alpn_protocols(["h2"])
        if self.client_cert_required:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(self.pki.client_ca.cert)
            # TLS 1.2: the missing certificate fails the client's own handshake, with the server's alert.
            # Under TLS 1.3 the client finishes first and writes; the refusal then reached it as the
            # alert, a reset or a plain "connection closed", depending on timing.
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    async def __aenter__(self) -> TLSProxy:
        # the handshake runs before the handler: a refused certificate never reaches it
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.context())
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _authorized(self, headers: list[tuple[str, str]]) -> bool:
        if self.api_key is None:
            return True
        found = dict(headers).get("authorization", "")
        if found == f"Bearer {self.api_key}":
            return True
        self.refused.append("no API key" if not found else "a wrong API key")
        return False

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
                await self._serve(reader, writer)
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await reader.readexactly(len(PREFACE)) != PREFACE:
            return
        decoder = Decoder()
        held = bytearray(PREFACE)  # what the backend gets once the first call is let through
        block = bytearray()
        while True:  # up to the first complete header block
            raw, kind, flags, stream, payload = await read_frame(reader)
            held += raw
            if kind in (HEADERS, CONTINUATION):
                block += header_fragment(kind, flags, payload)
                if flags & END_HEADERS:
                    break
        headers = [(str(k), str(v)) for k, v in decoder.decode(bytes(block))]
        if not self._authorized(headers):
            await self._refuse(reader, writer, first=stream)
            return
        host, port = self.backend.rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        up_writer.write(bytes(held))
        down = asyncio.create_task(self._pipe(up_reader, writer))
        try:
            block.clear()
            while True:  # every later call is checked too (the decoder must see every block)
                raw, kind, flags, _, payload = await read_frame(reader)
                if kind in (HEADERS, CONTINUATION):
                    block += header_fragment(kind, flags, payload)
                    if flags & END_HEADERS:
                        headers = [(str(k), str(v)) for k, v in decoder.decode(bytes(block))]
                        block.clear()
                        if kind == HEADERS and any(k == ":path" for k, _ in headers) and not self._authorized(headers):
                            return
                up_writer.write(raw)
                await up_writer.drain()
        finally:
            down.cancel()
            up_writer.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        writer.close()

    async def _refuse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first: int) -> None:
        """Answer every call on the connection with UNAUTHENTICATED (the proxy as the server)."""
        encoder = Encoder()

        def unauthenticated(stream: int) -> bytes:
            block = encoder.encode(
                [
                    NeverIndexedHeaderTuple(":status", "200"),
                    NeverIndexedHeaderTuple("content-type", "application/grpc"),
                    NeverIndexedHeaderTuple("grpc-status", "16"),
                    NeverIndexedHeaderTuple("grpc-message", "API key required"),
                ]
            )
            return frame(HEADERS, END_HEADERS | END_STREAM, stream, block)

        writer.write(frame(SETTINGS, 0, 0) + unauthenticated(first))
        await writer.drain()
        while True:
            _, kind, flags, stream, payload = await read_frame(reader)
            if kind == SETTINGS and not flags & ACK:
                writer.write(frame(SETTINGS, ACK, 0))
            elif kind == PING and not flags & ACK:
                writer.write(frame(PING, ACK, 0, payload))
            elif kind == HEADERS and stream > first:
                first = stream
                writer.write(unauthenticated(stream))
            await writer.drain()
