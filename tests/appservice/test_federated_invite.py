"""An invite from another server to one of a service's users reaches the
service (an out-of-band membership: our server is not in the room), as it
does on Synapse: that is how a bridge learns it was invited."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from tests.appservice.conftest import AS_TOKEN, registration, write_registration
from tests.appservice.fake_as import FakeAppService
from tests.federation.conftest import federation, test_ca  # noqa: F401 - fixtures
from tests.helpers import create_room


@pytest_twisted.ensureDeferred
async def test_a_remote_invite_to_a_ghost_reaches_the_service(
        federation: Any, tmp_path: Any, appservice: FakeAppService) -> None:  # noqa: F811
    path = write_registration(tmp_path, registration(appservice.url, namespaces={
        "users": [{"exclusive": True, "regex": "@bridge_.*"}], "aliases": [], "rooms": []}))
    ours = await federation(app_service_config_files=[path])
    other = await federation()
    resp = await ours.client(AS_TOKEN).post("/_matrix/client/v3/register", {
        "type": "m.login.application_service", "username": "bridge_joe",
        "inhibit_login": True})
    assert resp.code == 200, resp.body
    ghost = str(resp.body["user_id"])
    carol = await other.register("carol")
    room_id = await create_room(carol)
    resp = await carol.post(f"/_matrix/client/v3/rooms/{room_id}/invite", {"user_id": ghost})
    assert resp.code == 200, resp.body

    def invited() -> bool:
        return any(e["type"] == "m.room.member" and e.get("state_key") == ghost
                   and e["content"].get("membership") == "invite"
                   for e in appservice.events())

    await appservice.wait_for(invited, timeout=20)
    invite = next(e for e in appservice.events() if e["type"] == "m.room.member")
    assert invite["room_id"] == room_id and invite["sender"] == carol.user_id
