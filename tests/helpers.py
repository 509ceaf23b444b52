"""The common client moves of the tests: create a room, join it, send to it.

Each asserts the request succeeded, so a test reads like the story it tells
(``room_id = await create_room(alice)``) and a failing move says which one
failed. Registering is ``TestServer.register`` (``tests/harness.py``).
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

from tests.harness import Client

V3 = "/_matrix/client/v3"


def q(value: str) -> str:
    """``value`` as one path segment (room IDs hold ``!`` and ``:``)."""
    return quote(value, safe="")


async def create_room(client: Client, **body: Any) -> str:
    """A new room with the /createRoom ``body`` as given; its ID."""
    resp = await client.post(f"{V3}/createRoom", body)
    assert resp.code == 200, resp.body
    return str(resp.body["room_id"])


async def create_public_room(client: Client, **body: Any) -> str:
    """``create_room`` with the ``public_chat`` preset unless ``body`` names one."""
    return await create_room(client, **{"preset": "public_chat", **body})


async def join(client: Client, room_id: str, via: str | None = None) -> None:
    """``client`` joins ``room_id`` (through the server ``via``, for a remote room)."""
    if via is None:
        resp = await client.post(f"{V3}/rooms/{q(room_id)}/join", {})
    else:
        # the spec's ``via`` and the older ``server_name`` (Synapse reads either)
        resp = await client.post(f"{V3}/join/{q(room_id)}", {},
                                 params={"via": via, "server_name": via})
    assert resp.code == 200, f"{client.user_id} joining {room_id}: {resp.body}"
    assert resp.body["room_id"] == room_id


async def send(client: Client, room_id: str, content: Any, txn_id: str,
               event_type: str = "m.room.message") -> Any:
    """PUT one event; the response, whatever it is (tests of refusals read it)."""
    return await client.put(f"{V3}/rooms/{q(room_id)}/send/{event_type}/{txn_id}", content)


async def send_text(client: Client, room_id: str, text: str, txn_id: str | None = None) -> str:
    """A plain ``m.text`` message (a fresh transaction ID unless given); its event ID."""
    resp = await send(client, room_id, {"msgtype": "m.text", "body": text},
                      txn_id if txn_id is not None else uuid.uuid4().hex)
    assert resp.code == 200, resp.body
    return str(resp.body["event_id"])
