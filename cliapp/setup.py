"""`stackhop setup`: register stackhop's search attributes in the Temporal namespace, once.

`stackhop start` tags every upgrade with the typed search attributes of ``model.visibility`` (how
`stackhop list` and the UI find upgrades by cloud), and a namespace without them refuses the start.
The dev server gets them as flags (`stackhop dev`); any other namespace gets them here, through the
operator service. Registering is idempotent: an attribute already there with the right type is
fine, one with another type is an error naming both types (Temporal cannot change a type). Where
the server does not let this client register them (permissions, Temporal Cloud), the command prints
the `temporal operator search-attribute create` commands to run instead.
"""

from __future__ import annotations

from collections.abc import Mapping

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from cliapp.common import BAD_INPUT, OK, Fail, connect, say
from model import visibility

# Statuses with which a server says "not for you": permissions, or no operator service (Cloud).
REFUSED = (RPCStatusCode.PERMISSION_DENIED, RPCStatusCode.UNIMPLEMENTED, RPCStatusCode.UNAUTHENTICATED)
CLI_TYPES = {  # IndexedValueType -> the name `temporal operator search-attribute create --type` takes
    IndexedValueType.INDEXED_VALUE_TYPE_TEXT: "Text",
    IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD: "Keyword",
    IndexedValueType.INDEXED_VALUE_TYPE_INT: "Int",
    IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE: "Double",
    IndexedValueType.INDEXED_VALUE_TYPE_BOOL: "Bool",
    IndexedValueType.INDEXED_VALUE_TYPE_DATETIME: "Datetime",
    IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST: "KeywordList",
}


def wanted() -> dict[str, IndexedValueType.ValueType]:
    """Name -> indexed value type of every search attribute stackhop writes."""
    return {key.name: IndexedValueType.ValueType(int(key.indexed_value_type)) for key in visibility.ALL}


def type_name(value_type: int) -> str:
    kind = IndexedValueType.ValueType(value_type)
    return CLI_TYPES.get(kind) or IndexedValueType.Name(kind)


def commands(namespace: str, names: list[str] | None = None) -> list[str]:
    """The `temporal` commands that register the attributes by hand."""
    return [
        f"temporal operator search-attribute create --namespace {namespace} --name {name} --type {type_name(kind)}"
        for name, kind in wanted().items()
        if names is None or name in names
    ]


def _by_hand(client: Client, e: RPCError, names: list[str]) -> Fail:
    lines = "\n".join(f"  {c}" for c in commands(client.namespace, names))
    return Fail(
        BAD_INPUT,
        f"Temporal did not let stackhop register its search attributes in namespace {client.namespace} "
        f"({e.status.name if e.status else 'error'}: {e.message}).\nRegister them once with an account "
        f"that may (on Temporal Cloud: `tcld namespace search-attributes add` or the web UI):\n{lines}",
    )


async def registered(client: Client) -> Mapping[str, int]:
    """Name -> indexed value type of the namespace's custom search attributes."""
    resp = await client.operator_service.list_search_attributes(ListSearchAttributesRequest(namespace=client.namespace))
    return dict(resp.custom_attributes)


def mismatches(have: Mapping[str, int]) -> list[str]:
    return [
        f"{name} is registered as {type_name(have[name])}, stackhop needs {type_name(kind)}"
        for name, kind in wanted().items()
        if name in have and have[name] != kind
    ]


async def setup() -> int:
    client = await connect()
    need = wanted()
    try:
        have = await registered(client)
    except RPCError as e:
        if e.status in REFUSED:
            raise _by_hand(client, e, list(need)) from None
        raise
    wrong = mismatches(have)
    if wrong:
        raise Fail(
            BAD_INPUT,
            f"namespace {client.namespace}: " + "; ".join(wrong) + ". A search attribute's type cannot change: "
            "remove it (`temporal operator search-attribute remove --name NAME`) if nothing else uses it, "
            "or use another namespace.",
        )
    missing = {name: kind for name, kind in need.items() if name not in have}
    if missing:
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
            )
        except RPCError as e:
            if e.status in REFUSED:
                raise _by_hand(client, e, list(missing)) from None
            if e.status != RPCStatusCode.ALREADY_EXISTS:
                raise
            wrong = mismatches(await registered(client))  # registered meanwhile (another setup)
            if wrong:
                raise Fail(BAD_INPUT, f"namespace {client.namespace}: " + "; ".join(wrong)) from None
    for name, kind in need.items():
        state = "registered" if name in missing else "already registered"
        say(f"{name} ({type_name(kind)}): {state}")
    say(f"namespace {client.namespace} is ready for `stackhop start`")
    return OK
