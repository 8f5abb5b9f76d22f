"""The payload codec (model/codec.py): keys, rotation, refusals; and the codec server as the Temporal
UI calls it (cliapp/codec_server.py): CORS preflight from the UI's origin, the namespace header,
the bearer token. No browser and no Temporal server: aiohttp's client on a real loopback port."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import aiohttp
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.exceptions import ApplicationError

from cliapp import codec_server
from model.codec import (
    ENCODING,
    KEY_ID_META,
    KEYS_ENV,
    KEYS_FILE_ENV,
    CodecError,
    EncryptionCodec,
    Keys,
    data_converter,
    load_keys,
    new_key_line,
    parse_keys,
    write_key_file,
)

SECRET = "password=Fak3-zq"


def keys(*ids: str) -> Keys:
    return parse_keys("".join(new_key_line(i) for i in ids), "test")


async def test_round_trip_encrypts_values_and_failure_messages() -> None:
    conv = data_converter(keys("k1"))
    (payload,) = await conv.encode([{"cmd": SECRET}])
    assert payload.metadata["encoding"] == ENCODING and payload.metadata[KEY_ID_META] == b"k1"
    assert SECRET.encode() not in payload.SerializeToString()
    assert await conv.decode([payload]) == [{"cmd": SECRET}]
    from temporalio.api.failure.v1 import Failure

    failure = Failure()
    await conv.encode_failure(ApplicationError(f"tool said {SECRET}", type="MigrationFailed"), failure)
    assert SECRET.encode() not in failure.SerializeToString()
    assert failure.application_failure_info.type == "MigrationFailed"  # failure types stay clear
    err = await conv.decode_failure(failure)
    assert isinstance(err, ApplicationError) and err.message == f"tool said {SECRET}"


async def test_rotation_the_last_key_encrypts_every_key_decrypts() -> None:
    old = keys("k1")
    (written_before,) = await EncryptionCodec(old).encode([Payload(data=b"x")])
    rotated = parse_keys(
        "\n".join(f"{i}:{base64.b64encode(k).decode()}" for i, k in old.keys) + "\n" + new_key_line("k2"), "test"
    )
    codec = EncryptionCodec(rotated)
    (written_after,) = await codec.encode([Payload(data=b"y")])
    assert written_after.metadata[KEY_ID_META] == b"k2"
    assert [p.data for p in await codec.decode([written_before, written_after])] == [b"x", b"y"]


async def test_unknown_key_and_tampered_payload_are_refused_plain_passes() -> None:
    (payload,) = await EncryptionCodec(keys("k1")).encode([Payload(data=b"x")])
    with pytest.raises(CodecError, match=rf"key 'k1', which is not configured .*{KEYS_FILE_ENV}"):
        await EncryptionCodec(keys("k2")).decode([payload])
    with pytest.raises(CodecError, match="no key is configured"):
        await EncryptionCodec(None).decode([payload])
    forged = keys("k1")  # same id, another key
    with pytest.raises(CodecError, match="does not decrypt"):
        await EncryptionCodec(forged).decode([payload])
    codec = EncryptionCodec(keys("k1"))
    (ok,) = await codec.encode([Payload(data=b"x")])
    flipped = bytearray(ok.data)
    flipped[-1] ^= 1
    with pytest.raises(CodecError, match="altered"):
        await codec.decode([Payload(metadata=dict(ok.metadata), data=bytes(flipped))])
    plain = Payload(metadata={"encoding": b"json/plain"}, data=b'"x"')
    assert await codec.decode([plain]) == [plain]  # histories written before encryption still read
    assert await EncryptionCodec(None).encode([plain]) == [plain]  # no keys: plain, as before


def test_key_configuration_errors_name_the_setting(tmp_path: Path) -> None:
    assert load_keys({}) is None
    file = tmp_path / "keys"
    write_key_file(file, "a")
    assert stat.S_IMODE(os.stat(file).st_mode) == 0o600
    file.write_text(file.read_text() + "# rotated\n" + new_key_line("b"))
    assert load_keys({KEYS_FILE_ENV: str(file)}).current == "b"  # type: ignore[union-attr]
    for text, message in [
        ("a:notbase64!", "not valid base64"),
        ("a:" + base64.b64encode(b"short").decode(), "5 bytes"),
        ("no-colon", "KEY_ID:BASE64_KEY"),
        (new_key_line("a") + new_key_line("a"), "appears twice"),
        ("# nothing\n", "no key"),
    ]:
        with pytest.raises(CodecError, match=message):
            load_keys({KEYS_ENV: text})
    with pytest.raises(CodecError, match="set one"):
        load_keys({KEYS_ENV: new_key_line("a"), KEYS_FILE_ENV: str(file)})
    with pytest.raises(CodecError, match=f"{KEYS_FILE_ENV}=.*missing.*cannot read"):
        load_keys({KEYS_FILE_ENV: str(tmp_path / "missing")})


UI = "http://localhost:8233"
TOKEN = "t0ken-zq"
# Long enough that random ciphertext cannot contain it by chance (a 2-byte "hi" did, once in CI).
PLAIN = b'"what the UI shows once decoded"'


async def test_codec_server_as_the_ui_calls_it() -> None:
    ks = keys("k1")
    config = codec_server.CodecServerConfig(ks, codec_server.DEFAULT_ORIGINS, ("default",), TOKEN)
    runner, url = await codec_server.start(config, "127.0.0.1", 0)
    (encrypted,) = await EncryptionCodec(ks).encode([Payload(metadata={"encoding": b"json/plain"}, data=PLAIN)])
    body = json_format.MessageToJson(Payloads(payloads=[encrypted]))
    headers = {"Origin": UI, "Content-Type": "application/json", "X-Namespace": "default"}
    try:
        async with aiohttp.ClientSession() as http:
            async with http.options(
                f"{url}/decode",
                headers={
                    "Origin": UI,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
                },
            ) as pre:
                assert pre.status == 204
                assert pre.headers["Access-Control-Allow-Origin"] == UI
                assert "POST" in pre.headers["Access-Control-Allow-Methods"]
                allowed = {h.strip() for h in pre.headers["Access-Control-Allow-Headers"].split(",")}
                assert {"content-type", "x-namespace", "authorization"} <= allowed
            async with http.options(f"{url}/decode", headers={"Origin": "http://evil.test"}) as other:
                assert other.status == 403 and "Access-Control-Allow-Origin" not in other.headers

            auth = {**headers, "Authorization": f"Bearer {TOKEN}"}
            async with http.post(f"{url}/decode", data=body, headers=auth) as resp:
                assert resp.status == 200, await resp.text()
                assert resp.headers["Access-Control-Allow-Origin"] == UI
                (decoded,) = json_format.Parse(await resp.text(), Payloads()).payloads
                assert decoded.data == PLAIN and decoded.metadata["encoding"] == b"json/plain"
            async with http.post(
                f"{url}/encode", data=json_format.MessageToJson(Payloads(payloads=[decoded])), headers=auth
            ) as resp:
                (again,) = json_format.Parse(await resp.text(), Payloads()).payloads
                assert again.metadata["encoding"] == ENCODING and PLAIN.strip(b'"') not in again.data
                assert (await EncryptionCodec(ks).decode([again]))[0].data == PLAIN

            async with http.post(f"{url}/decode", data=body, headers=headers) as resp:
                assert resp.status == 401 and "Access-Control-Allow-Origin" in resp.headers  # the UI can read why
            async with http.post(
                f"{url}/decode", data=body, headers={**headers, "Authorization": "Bearer nope"}
            ) as resp:
                assert resp.status == 403
            other_ns = {**auth, "X-Namespace": "prod"}
            async with http.post(f"{url}/decode", data=body, headers=other_ns) as resp:
                assert resp.status == 403 and "prod" in await resp.text()
    finally:
        await runner.cleanup()


def test_codec_server_command_needs_keys() -> None:
    from typer.testing import CliRunner

    from cli import app

    res = CliRunner().invoke(app, ["codec-server"], env={KEYS_ENV: None, KEYS_FILE_ENV: None})
    assert res.exit_code == 2 and f"set {KEYS_FILE_ENV}" in res.stderr, res.output
    res = CliRunner().invoke(app, ["codec-server"], env={KEYS_ENV: "k1:short", KEYS_FILE_ENV: None})
    assert res.exit_code == 2 and "not valid base64" in res.stderr, res.output
