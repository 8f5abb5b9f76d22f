"""`stackhop codec-server`: the Temporal UI's (and CLI's) remote codec endpoint, so operators still
read encrypted upgrades.

The UI posts ``{"payloads": [{"metadata": {...base64}, "data": "base64"}]}`` to ``/decode`` (and
``/encode`` when someone starts or signals from the UI) with an ``X-Namespace`` header, from the
browser: a cross-origin request, so the server answers the CORS preflight (OPTIONS) for the UI's
origins only. Keys are the workers' (``model.codec``); the server listens on 127.0.0.1 unless told
otherwise, refuses namespaces it was not started for, and with a token (``--token`` /
STACKHOP_CODEC_TOKEN) refuses a request without ``Authorization: Bearer <token>`` (401) or with
another token (403). The UI sends a bearer token only when it has a login of its own ("pass access
token"); on a workstation the loopback address and CORS are what keeps other origins out.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiohttp import hdrs, web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from model.codec import CodecError, EncryptionCodec, Keys

TOKEN_ENV = "STACKHOP_CODEC_TOKEN"
DEFAULT_ORIGINS = ("http://localhost:8233", "http://127.0.0.1:8233")
ALLOW_HEADERS = "content-type, x-namespace, authorization"
MAX_BODY = 32 * 1024 * 1024  # a page of history: many payloads of up to Temporal's 2 MB each


@dataclass(frozen=True)
class CodecServerConfig:
    keys: Keys
    origins: tuple[str, ...] = DEFAULT_ORIGINS
    namespaces: tuple[str, ...] = ("default",)
    token: str | None = None


def ui_origins(ui_port: int) -> tuple[str, ...]:
    """The origins a local UI on ``ui_port`` is opened from (whichever host the operator typed)."""
    return (f"http://localhost:{ui_port}", f"http://127.0.0.1:{ui_port}")


def build_app(config: CodecServerConfig) -> web.Application:
    codec = EncryptionCodec(config.keys)

    def cors(request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get(hdrs.ORIGIN)
        if origin in config.origins:
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
            response.headers[hdrs.ACCESS_CONTROL_ALLOW_CREDENTIALS] = "true"  # "include cross-origin credentials"
            response.headers[hdrs.VARY] = "Origin"

    async def preflight(request: web.Request) -> web.Response:
        if request.headers.get(hdrs.ORIGIN) not in config.origins:
            return web.Response(status=403, text="origin not allowed\n")
        response = web.Response(status=204)
        cors(request, response)
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = "POST, OPTIONS"
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = ALLOW_HEADERS
        response.headers[hdrs.ACCESS_CONTROL_MAX_AGE] = "600"
        return response

    def refused(request: web.Request) -> web.Response | None:
        if config.token is not None:
            auth = request.headers.get(hdrs.AUTHORIZATION, "")
            scheme, _, given = auth.partition(" ")
            if scheme.lower() != "bearer" or not given:
                return web.Response(
                    status=401, text="missing bearer token\n", headers={hdrs.WWW_AUTHENTICATE: "Bearer"}
                )
            if not hmac.compare_digest(given.strip().encode(), config.token.encode()):
                return web.Response(status=403, text="wrong token\n")
        namespace = request.headers.get("X-Namespace")
        if namespace is not None and namespace not in config.namespaces:
            return web.Response(
                status=403, text=f"namespace {namespace!r} is not served here ({', '.join(config.namespaces)})\n"
            )
        return None

    def endpoint(
        fn: Callable[[Sequence[Payload]], Awaitable[list[Payload]]],
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            response = refused(request)
            if response is None:
                try:
                    payloads = json_format.Parse(await request.read(), Payloads())
                except (json_format.ParseError, UnicodeDecodeError) as e:
                    response = web.Response(status=400, text=f'expected {{"payloads": [...]}}: {e}\n')
                else:
                    try:
                        result = Payloads(payloads=await fn(payloads.payloads))
                        response = web.json_response(text=json_format.MessageToJson(result))
                    except CodecError as e:
                        response = web.Response(status=400, text=f"{e}\n")
            cors(request, response)
            return response

        return handle

    app = web.Application(client_max_size=MAX_BODY)
    for path, fn in (("/encode", codec.encode), ("/decode", codec.decode)):
        app.router.add_post(path, endpoint(fn))
        app.router.add_route("OPTIONS", path, preflight)
    return app


async def start(config: CodecServerConfig, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Serve in the running event loop; (runner to ``cleanup()``, the endpoint's URL)."""
    runner = web.AppRunner(build_app(config), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = int(runner.addresses[0][1])  # port 0: the one the OS chose
    return runner, f"http://{host}:{bound}"


async def serve(config: CodecServerConfig, host: str, port: int, stop: asyncio.Event) -> None:
    from cliapp.common import say

    runner, url = await start(config, host, port)
    try:
        say(f"codec server on {url} (keys: {config.keys.source}; origins: {', '.join(config.origins)})")
        say(f"UI: Settings → Codec Server → {url}; CLI: temporal workflow show --codec-endpoint {url} ...")
        await stop.wait()
    finally:
        await runner.cleanup()


async def command(host: str, port: int, origins: Sequence[str], namespaces: Sequence[str], token: str | None) -> int:
    """``stackhop codec-server``: serve until Ctrl-C with the keys of this environment."""
    from cliapp.common import BAD_INPUT, OK, Fail, settings
    from cliapp.dev import stop_event
    from model.codec import KEYS_ENV, KEYS_FILE_ENV, load_keys

    try:
        keys = load_keys()
    except CodecError as e:
        raise Fail(BAD_INPUT, f"payload encryption: {e}") from None
    if keys is None:
        raise Fail(BAD_INPUT, f"no payload keys configured: set {KEYS_FILE_ENV} (or {KEYS_ENV}) as for the workers")
    if not namespaces:
        from temporalio.envconfig import ClientConfig

        try:
            configured = ClientConfig.load_client_connect_config(profile=settings.profile).get("namespace")
        except Exception:
            configured = None
        namespaces = [configured or "default"]
    config = CodecServerConfig(keys, tuple(origins) or DEFAULT_ORIGINS, tuple(namespaces), token or None)
    try:
        await serve(config, host, port, stop_event())
    except OSError as e:
        raise Fail(BAD_INPUT, f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return OK
