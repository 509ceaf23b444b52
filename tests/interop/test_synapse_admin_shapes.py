"""The same admin API calls against a real Synapse and against our server:
every key Synapse answers with, we answer with too, with the same JSON type
(where neither is null). Issue 21's shape comparison for list users, user
details, room list and details, event reports, registration tokens, a user's
media, a room's media, media info, media statistics, rate-limit overrides,
pushers and account data; make room admin, forward extremities,
timestamp_to_event, fetch_event, room context, memberships and counts,
background updates and suspension."""

from __future__ import annotations

from typing import Any

import pytest_twisted

from tests.harness import Client, TestServer
from tests.helpers import create_room, join, q, send_text
from tests.interop.synapse import (  # noqa: F401 (the *_fixture imports are fixtures)
    SynapseServer,
    interop_ca_fixture,
    ours_fixture,
    synapse_fixture,
    unique,
)
from tests.media.test_media import png

V1 = "/_synapse/admin/v1"
V2 = "/_synapse/admin/v2"


# maps whose keys are names that differ between the two servers
VARIABLE_KEYED = {"signatures", "memberships", "current_updates"}
# a media's "authenticated" and "safe_from_quarantine": Synapse on SQLite answers the stored 0/1, on
# PostgreSQL and in its docs a boolean (ours)
BOOLEAN_OR_NUMBER = {"authenticated", "safe_from_quarantine"}


def _type(value: Any) -> str:
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else type(value).__name__


def assert_same_shape(theirs: Any, ours: Any, where: str) -> None:
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), where
        missing = sorted(set(theirs) - set(ours))
        assert not missing, f"{where}: we lack {missing}"
        for key, value in theirs.items():
            if key in VARIABLE_KEYED:
                continue  # keyed by server names: only the type matters
            if key in BOOLEAN_OR_NUMBER and isinstance(ours[key], bool):
                continue
            if value is not None and ours[key] is not None:
                assert_same_shape(value, ours[key], f"{where}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list), where
        if theirs and ours:
            assert_same_shape(theirs[0], ours[0], f"{where}[0]")
    else:
        assert _type(theirs) == _type(ours), f"{where}: {theirs!r} vs {ours!r}"


async def scenario(admin: Client, user: Client, reporter: Client) -> dict[str, Any]:
    """The same story on one server; the admin API's answers."""
    room_id = await create_room(user, name="Shapes", preset="public_chat")
    await join(reporter, room_id)
    event_id = await send_text(user, room_id, "report me")
    resp = await reporter.post(f"/_matrix/client/v3/rooms/{q(room_id)}/report/{q(event_id)}",
                               {"reason": "spam", "score": -100})
    assert resp.code == 200, resp.body
    upload = await user.post("/_matrix/media/v3/upload", raw=png(),
                             headers={"Content-Type": "image/png"}, params={"filename": "a.png"})
    assert upload.code == 200, upload.body
    mxc = upload.body["content_uri"]
    server_name, media_id = mxc[len("mxc://"):].split("/")
    resp = await user.put(f"/_matrix/client/v3/rooms/{q(room_id)}/send/m.room.message/img",
                          {"msgtype": "m.image", "body": "a.png", "url": mxc})
    assert resp.code == 200, resp.body
    await user.put(f"/_matrix/client/v3/user/{q(user.user_id)}/account_data/org.example.x",
                   {"a": 1})
    out: dict[str, Any] = {}
    calls = {
        "users": ("GET", f"{V2}/users", None),
        "user": ("GET", f"{V2}/users/{q(user.user_id)}", None),
        "rooms": ("GET", f"{V1}/rooms", None),
        "room": ("GET", f"{V1}/rooms/{q(room_id)}", None),
        "members": ("GET", f"{V1}/rooms/{q(room_id)}/members", None),
        "reports": ("GET", f"{V1}/event_reports", None),
        "token": ("POST", f"{V1}/registration_tokens/new", {"uses_allowed": 3}),
        "tokens": ("GET", f"{V1}/registration_tokens", None),
        "admin_flag": ("GET", f"{V1}/users/{q(user.user_id)}/admin", None),
        "joined_rooms": ("GET", f"{V1}/users/{q(user.user_id)}/joined_rooms", None),
        "devices": ("GET", f"{V2}/users/{q(user.user_id)}/devices", None),
        "user_media": ("GET", f"{V1}/users/{q(user.user_id)}/media", None),
        "room_media": ("GET", f"{V1}/room/{q(room_id)}/media", None),
        "media_info": ("GET", f"{V1}/media/{server_name}/{media_id}", None),
        "media_stats": ("GET", f"{V1}/statistics/users/media", None),
        "set_ratelimit": ("POST", f"{V1}/users/{q(user.user_id)}/override_ratelimit",
                          {"messages_per_second": 5, "burst_count": 20}),
        "ratelimit": ("GET", f"{V1}/users/{q(user.user_id)}/override_ratelimit", None),
        "pushers": ("GET", f"{V1}/users/{q(user.user_id)}/pushers", None),
        "account_data": ("GET", f"{V1}/users/{q(user.user_id)}/accountdata", None),
        # before make_room_admin replaces the power levels: the states' orders differ
        "context": ("GET", f"{V1}/rooms/{q(room_id)}/context/{q(event_id)}?limit=4", None),
        "make_room_admin": ("POST", f"{V1}/rooms/{q(room_id)}/make_room_admin",
                            {"user_id": reporter.user_id}),
        "extremities": ("GET", f"{V1}/rooms/{q(room_id)}/forward_extremities", None),
        "clear_extremities": ("DELETE", f"{V1}/rooms/{q(room_id)}/forward_extremities", None),
        "timestamp": ("GET", f"{V1}/rooms/{q(room_id)}/timestamp_to_event?ts=0&dir=f", None),
        "fetch_event": ("GET", f"{V1}/fetch_event/{q(event_id)}", None),
        "memberships": ("GET", f"{V1}/users/{q(user.user_id)}/memberships", None),
        "invite_count": ("GET", f"{V1}/users/{q(user.user_id)}/sent_invite_count?from_ts=0",
                         None),
        "joined_count": ("GET", f"{V1}/users/{q(user.user_id)}/"
                         "cumulative_joined_room_count?from_ts=0", None),
        "background_updates": ("GET", f"{V1}/background_updates/status", None),
        "background_enabled": ("POST", f"{V1}/background_updates/enabled",
                               {"enabled": True}),
        "unsuspend": ("PUT", f"{V1}/suspend/{q(reporter.user_id)}", {"suspend": False}),
    }
    for name, (method, path, body) in calls.items():
        resp = await admin.request(method, path, body)
        assert resp.code == 200, (name, resp.code, resp.body)
        out[name] = resp.body
    # keyed by the user's ID, which differs
    out["unsuspend"] = {k.replace(reporter.user_id, "@user"): v
                        for k, v in out["unsuspend"].items()}
    # the two servers list the state in different orders: compare like with like
    out["context"]["state"].sort(key=lambda e: (e["type"], e["state_key"]))
    report_id = out["reports"]["event_reports"][0]["id"]
    resp = await admin.get(f"{V1}/event_reports/{report_id}")
    assert resp.code == 200, resp.body
    out["report"] = resp.body
    return out


@pytest_twisted.ensureDeferred
async def test_admin_answers_have_synapses_shapes(synapse: SynapseServer,
                                                  ours: TestServer) -> None:
    s_admin = await synapse.register(unique("admin"), admin=True)
    s_user = await synapse.register(unique("user"))
    s_reporter = await synapse.register(unique("reporter"))
    theirs = await scenario(s_admin, s_user, s_reporter)
    o_admin = await ours.register(unique("admin"), admin=True)
    o_user = await ours.register(unique("user"))
    o_reporter = await ours.register(unique("reporter"))
    mine = await scenario(o_admin, o_user, o_reporter)
    for name in theirs:
        assert_same_shape(theirs[name], mine[name], name)
