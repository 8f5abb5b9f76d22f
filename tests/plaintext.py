"""Is anything secret stored in clear in Temporal? Read the histories as the server holds them.

``assert_no_plaintext`` fetches the history of each workflow and looks at the raw bytes of every
event (protobuf as stored and exported: failure messages as UTF-8 strings, payloads as their raw
data; the JSON export would hide a plain payload behind base64). No secret may occur there; the
names that stay clear by design (workflow ids, search attribute values, activity types, failure
types) must. It returns the secrets it found in the payloads once decrypted with this process's
keys, so a test can also prove its secrets did reach the history (a check that finds nothing
because nothing was written proves nothing).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.client import Client

from model.codec import EncryptionCodec, load_keys


def payloads_in(msg: Message) -> Iterator[Payload]:
    """Every Payload anywhere inside ``msg`` (nested messages, repeated fields and maps)."""
    if isinstance(msg, Payload):
        yield msg
        return
    for field, value in msg.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            items = [v for v in value.values() if isinstance(v, Message)]
        elif field.is_repeated:
            items = list(value)
        else:
            items = [value]
        for item in items:
            yield from payloads_in(item)


async def assert_no_plaintext(
    client: Client, workflow_ids: Iterable[str], secrets: Iterable[str], clear: Iterable[str] = ()
) -> set[str]:
    """No secret in the stored events of these workflows, each ``clear`` name in them; returns the
    secrets found in the decrypted payloads."""
    codec = EncryptionCodec(load_keys())
    secrets, clear = list(secrets), list(clear)
    decrypted: list[bytes] = []
    stored: list[bytes] = []
    for wf_id in workflow_ids:
        history = await client.get_workflow_handle(wf_id).fetch_history()
        assert history.events, f"{wf_id}: no history"
        for event in history.events:
            raw = event.SerializeToString()
            stored.append(raw)
            for secret in secrets:
                assert secret.encode() not in raw, (
                    f"{wf_id}: event {event.event_id} ({event.WhichOneof('attributes')}) holds {secret!r} in clear"
                )
            decrypted.extend(codec.decrypt(p).SerializeToString() for p in payloads_in(event))
    everything = b"\n".join(stored)
    missing = [name for name in clear if name.encode() not in everything]
    assert not missing, f"stored in clear by design, yet not found: {missing}"
    opened = b"\n".join(decrypted)
    return {s for s in secrets if s.encode() in opened}
