"""Payload encryption: the one data converter of the worker, the CLI and the codec server.

Temporal stores every workflow and activity input and result, heartbeat details, memos, failure
messages and stack traces in its history, in plain text unless a payload codec encodes them. An
upgrade's payloads hold what an attacker wants (image references, commands, file paths, database
names, tool output), so stackhop encrypts them with AES-256-GCM before they leave the process.

Keys: ``STACKHOP_CODEC_KEYS_FILE`` names a file, or ``STACKHOP_CODEC_KEYS`` holds the same text
inline; one key per line (or comma-separated inline), ``KEY_ID:BASE64_KEY`` (16, 24 or 32 bytes;
``openssl rand -base64 32``), ``#`` comments and blank lines ignored. The **last** key encrypts;
every key decrypts, so rotation is: append a new key, restart workers and CLIs, and keep the old
line as long as histories written with it must be read. The key id goes in the payload metadata
(``encryption-key-id``, ``encoding: binary/encrypted``, as temporalio/samples-python's encryption
sample and its Go/TypeScript twins), so a payload always says which key it needs.

No key configured: payloads are written plain (existing setups keep working), and an encrypted
payload met then fails with an error naming its key id and the setting to fix. A payload that is
not ``binary/encrypted`` always passes through: the committed plain histories still replay.

Failure messages and stack traces are moved into an encoded payload too
(``DefaultFailureConverterWithEncodedAttributes``); failure *types* stay clear, and so do workflow
ids, search attributes, activity types, task queues and timer ids (they are not payloads).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

KEYS_ENV = "STACKHOP_CODEC_KEYS"
KEYS_FILE_ENV = "STACKHOP_CODEC_KEYS_FILE"
ENCODING = b"binary/encrypted"
KEY_ID_META = "encryption-key-id"
NONCE_BYTES = 12
KEY_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")


class CodecError(Exception):
    """Keys missing, malformed or unknown, or a payload that does not decrypt. Not retryable by
    waiting: the operator fixes the key configuration and restarts the process."""


@dataclass(frozen=True)
class Keys:
    """Configured keys in file order: the last one encrypts. ``source`` names where they came from."""

    keys: tuple[tuple[str, bytes], ...]
    source: str

    @property
    def current(self) -> str:
        return self.keys[-1][0]


def parse_keys(text: str, source: str) -> Keys:
    """``KEY_ID:BASE64_KEY`` lines (or comma-separated entries); errors name ``source`` and the line."""
    keys: list[tuple[str, bytes]] = []
    entries = [(n, e.strip()) for n, line in enumerate(text.splitlines(), 1) for e in line.split("#", 1)[0].split(",")]
    for n, entry in entries:
        if not entry:
            continue
        where = f"{source}, line {n}"
        key_id, sep, b64 = entry.partition(":")
        key_id, b64 = key_id.strip(), b64.strip()
        if not sep or not KEY_ID_RE.fullmatch(key_id):
            raise CodecError(f"{where}: expected KEY_ID:BASE64_KEY with KEY_ID of letters, digits, '.', '_', '-'")
        try:
            key = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise CodecError(f"{where}: key {key_id!r} is not valid base64 (fix: openssl rand -base64 32)") from None
        if len(key) not in (16, 24, 32):
            raise CodecError(f"{where}: key {key_id!r} is {len(key)} bytes; AES-GCM takes 16, 24 or 32 (32 advised)")
        if any(k == key_id for k, _ in keys):
            raise CodecError(f"{where}: key id {key_id!r} appears twice")
        keys.append((key_id, key))
    if not keys:
        raise CodecError(f"{source}: no key in it (one KEY_ID:BASE64_KEY per line; the last one encrypts)")
    return Keys(tuple(keys), source)


def load_keys(environ: dict[str, str] | None = None) -> Keys | None:
    """The keys configured by STACKHOP_CODEC_KEYS or STACKHOP_CODEC_KEYS_FILE (not both); None: none."""
    env = os.environ if environ is None else environ
    inline, file = env.get(KEYS_ENV, "").strip(), env.get(KEYS_FILE_ENV, "").strip()
    if inline and file:
        raise CodecError(f"both {KEYS_ENV} and {KEYS_FILE_ENV} are set: set one")
    if inline:
        return parse_keys(inline, KEYS_ENV)
    if not file:
        return None
    try:
        text = Path(file).read_text()
    except OSError as e:
        raise CodecError(f"{KEYS_FILE_ENV}={file}: cannot read the key file: {e.strerror or e}") from None
    return parse_keys(text, f"{KEYS_FILE_ENV}={file}")


def new_key_line(key_id: str | None = None) -> str:
    """A fresh 256-bit key as a key-file line."""
    return f"{key_id or 'k-' + secrets.token_hex(4)}:{base64.b64encode(secrets.token_bytes(32)).decode()}\n"


def write_key_file(path: Path, key_id: str | None = None) -> None:
    """Create ``path`` (0600, never overwriting) holding one new key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("# stackhop payload keys: KEY_ID:BASE64_KEY, the last line encrypts\n" + new_key_line(key_id))


class EncryptionCodec(PayloadCodec):
    """AES-GCM over the serialized payload, a random 96-bit nonce in front (the samples' format)."""

    def __init__(self, keys: Keys | None):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.keys = keys
        self._ciphers = {key_id: AESGCM(key) for key_id, key in (keys.keys if keys else ())}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        if self.keys is None:
            return payload
        key_id = self.keys.current
        nonce = os.urandom(NONCE_BYTES)
        data = nonce + self._ciphers[key_id].encrypt(nonce, payload.SerializeToString(), None)
        return Payload(metadata={"encoding": ENCODING, KEY_ID_META: key_id.encode()}, data=data)

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # plain: written before encryption was on, or by a client without keys
        key_id = payload.metadata.get(KEY_ID_META, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            where = (
                f"the keys of {self.keys.source} are {', '.join(k for k, _ in self.keys.keys)}"
                if self.keys
                else "no key is configured"
            )
            raise CodecError(
                f"a payload is encrypted with key {key_id!r}, which is not configured ({where}): "
                f"add that key to {KEYS_FILE_ENV} (or {KEYS_ENV}) of this process"
            )
        from cryptography.exceptions import InvalidTag

        try:
            plain = cipher.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], None)
        except InvalidTag:
            raise CodecError(
                f"a payload encrypted with key {key_id!r} does not decrypt: it was altered, or the key "
                f"configured under that id is not the one it was written with"
            ) from None
        return Payload.FromString(plain)


def data_converter(keys: Keys | None = None, *, from_env: bool = True) -> DataConverter:
    """The pydantic converter with the encryption codec and encoded failure messages: every client
    and worker of stackhop uses this one. ``keys`` default to the environment's (``load_keys``).
    Without keys, failures keep their message in clear as before (nothing would hide it), and the
    codec still decodes nothing but refuses encrypted payloads with a clear error."""
    from temporalio.contrib.pydantic import pydantic_data_converter  # here: the CLI imports CodecError early

    if keys is None and from_env:
        keys = load_keys()
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(keys),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes if keys else DefaultFailureConverter,
    )
