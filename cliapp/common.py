"""What every stackhop command shares: exit codes, consoles, the Temporal connection, error mapping.

Commands raise ``Fail(code, message)`` for anything the operator must act on; ``run()`` turns it,
and the Temporal errors an operator can meet (server down, unknown workflow), into one message on
stderr and the documented exit code, never a traceback.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import re
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar
from urllib.parse import quote

import typer
from rich.console import Console
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.envconfig import ClientConfig
from temporalio.service import RPCError, RPCStatusCode

from model.codec import CodecError

OK, FAILED, BAD_INPUT, UNREACHABLE = 0, 1, 2, 3
DEFAULT_TASK_QUEUE = "stackhop"
DEFAULT_UI = "http://127.0.0.1:8233"
T = TypeVar("T")


class Fail(Exception):
    """Stop the command: print ``message`` on stderr and exit with ``code``."""

    def __init__(self, code: int, message: str):
        self.code = code
        self.message = message
        super().__init__(message)


@dataclass
class Settings:
    """The global options (``stackhop --profile/--address/--task-queue CMD``)."""

    profile: str | None = None
    address: str | None = None
    task_queue: str = DEFAULT_TASK_QUEUE
    ui_url: str | None = None  # the Temporal UI for links; None: STACKHOP_UI_URL or DEFAULT_UI

    def update(self, **values: Any) -> None:
        """Set in place: modules hold a reference to the one ``settings`` object."""
        for k, v in values.items():
            setattr(self, k, v)

    @contextmanager
    def scoped(self, **values: Any) -> Iterator[None]:
        """Override some settings for one block (e.g. the demo's own server and task queue), then
        put the previous values back."""
        saved = {k: getattr(self, k) for k in values}
        self.update(**values)
        try:
            yield
        finally:
            self.update(**saved)


settings = Settings()


# Off a terminal (a pipe, a file, a script) rich would lay tables out for 80 columns and fold long
# cells ("upgrade/r" / "egion-two"); there the console is as wide as the content needs, so every
# table row is one line a script can read. Nothing stackhop prints expands to the console's width.
UNWRAPPED_WIDTH = 10_000


# Consoles are created per call: sys.stdout/sys.stderr may be swapped (tests, redirection).
def out() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal:
        console = Console(highlight=False, width=max(console.width, UNWRAPPED_WIDTH))
    return console


def err() -> Console:
    return Console(stderr=True, highlight=False)


def say(text: str, *, style: str | None = None) -> None:
    """Plain user text on stdout (no markup interpretation: plan paths contain brackets)."""
    out().print(text, style=style, soft_wrap=True, markup=False)


def fail(code: int, message: str) -> NoReturn:
    raise Fail(code, message)


def user() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser()
    except Exception:
        return ""


def target_address() -> str:
    """The Temporal address the CLI will use, for messages (same resolution as worker.connect)."""
    if settings.address:
        return settings.address
    try:
        config = ClientConfig.load_client_connect_config(profile=settings.profile)
    except Exception:
        return "localhost:7233"
    return str(config.get("target_host") or "localhost:7233")


def unreachable_message(detail: str = "") -> str:
    address = target_address()
    why = f" ({detail})" if detail else ""
    return (
        f"cannot reach Temporal at {address}{why}.\n"
        "Start a local one with `stackhop dev`, or point stackhop at yours with "
        "--address HOST:PORT, TEMPORAL_ADDRESS or --profile NAME."
    )


async def connect(within: float = 20) -> Client:
    import worker  # imports the workflows: only for commands that talk to Temporal

    try:  # a bad profile or config file is the operator's input, not an unreachable server
        ClientConfig.load_client_connect_config(profile=settings.profile)
    except Exception as e:
        raise Fail(BAD_INPUT, f"Temporal client configuration (profile {settings.profile or 'default'}): {e}") from None
    try:
        return await asyncio.wait_for(worker.connect(settings.profile, settings.address), within)
    except TimeoutError:
        raise Fail(UNREACHABLE, unreachable_message(f"no answer within {within:.0f}s")) from None
    except CodecError as e:
        raise Fail(BAD_INPUT, f"payload encryption: {e}") from None
    except worker.Unreachable as e:
        found = re.search(r'message: "([^"]+)"', str(e))
        detail = found.group(1) if found else str(e)[-160:]
        raise Fail(UNREACHABLE, unreachable_message(f"{detail}; {e.hint}" if e.hint else detail)) from None


def workflow_id(ref: str) -> str:
    """Accept ``upgrade/lab`` or just the cloud name ``lab``."""
    ref = ref.strip()
    if not ref:
        fail(BAD_INPUT, "give a workflow id such as upgrade/lab (see `stackhop list`)")
    return ref if "/" in ref else f"upgrade/{ref}"


def ui_url(namespace: str, wf_id: str | None = None) -> str:
    base = (settings.ui_url or os.environ.get("STACKHOP_UI_URL", DEFAULT_UI)).rstrip("/")
    if wf_id is None:
        return f"{base}/namespaces/{quote(namespace, safe='')}/workflows"
    return f"{base}/namespaces/{quote(namespace, safe='')}/workflows/{quote(wf_id, safe='')}"


def quoted(value: str) -> str:
    """A value for a visibility query (single-quoted; quotes and backslashes refused)."""
    if not re.fullmatch(r"[^'\"\\]*", value):
        fail(BAD_INPUT, f"{value!r}: quotes and backslashes are not allowed here")
    return f"'{value}'"


# The server's NOT_FOUND answers for a workflow that exists but has ended: a request to a completed
# workflow, and an update the server took but no worker had accepted when the workflow closed.
ENDED_MESSAGES = ("already completed", "aborted by closing workflow")


def ended(wf_id: str, why: str) -> Fail:
    """An upgrade or fleet that ended while a command was on its way to it."""
    name = wf_id.removeprefix("fleet/")
    see = f"stackhop fleet status {name}" if name != wf_id else f"stackhop status {wf_id}"
    return Fail(BAD_INPUT, f"{wf_id} has ended ({why}); see `{see}`")


def update_failure(update: str, e: WorkflowUpdateFailedError, wf_id: str) -> Fail:
    """A refused update: the validator's reason, or (accepted, then the workflow completed before the
    handler did) that the workflow has ended."""
    reason = getattr(e.cause, "message", None) or str(e.cause)
    if getattr(e.cause, "type", None) == "AcceptedUpdateCompletedWorkflow":
        return ended(wf_id, reason)
    return Fail(BAD_INPUT, f"{update} refused: {reason}")


def rpc_failure(e: RPCError, wf_id: str | None = None) -> Fail:
    if e.status == RPCStatusCode.UNAVAILABLE:
        return Fail(UNREACHABLE, unreachable_message(e.message[:200]))
    if e.status == RPCStatusCode.NOT_FOUND and wf_id and any(m in e.message for m in ENDED_MESSAGES):
        # it ended between the command's look at it and its request, or while its update was in flight
        # (an abort's rollback can be that quick)
        return ended(wf_id, e.message)
    if e.status == RPCStatusCode.NOT_FOUND and wf_id:
        return Fail(BAD_INPUT, f"no upgrade {wf_id!r} in this namespace ({e.message}); see `stackhop list --all`")
    if e.status == RPCStatusCode.DEADLINE_EXCEEDED:
        return Fail(
            UNREACHABLE, f"Temporal did not answer in time ({e.message}); is a worker running? `stackhop worker`"
        )
    hint = ""
    if "search attribute" in e.message.lower():
        hint = (
            "\nstackhop's search attributes are not registered in this namespace: run `stackhop setup` once "
            "(it registers them, or prints the `temporal operator search-attribute create` commands)"
        )
    return Fail(BAD_INPUT, f"Temporal refused the request: {e.message}{hint}")


def run(coro: Coroutine[Any, Any, T], wf_id: str | None = None) -> T:
    """Run a command's coroutine; map expected failures to a message and an exit code."""

    async def guarded() -> T:
        try:
            return await coro
        except RPCError as e:
            raise rpc_failure(e, wf_id) from None
        except CodecError as e:  # a payload this process cannot decrypt (key missing or wrong)
            raise Fail(BAD_INPUT, f"payload encryption: {e}") from None

    try:
        return asyncio.run(guarded())
    except KeyboardInterrupt:
        err().print("interrupted (an upgrade that is running goes on: it runs in Temporal, not here)", markup=False)
        raise typer.Exit(130) from None
    except Fail as f:
        err().print(f.message, style="red" if f.code not in (OK, FAILED) else None, soft_wrap=True, markup=False)
        raise typer.Exit(f.code) from None
