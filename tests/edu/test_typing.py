"""The typing manager on its own: fake collaborators (memberships in a dict,
a virtual clock, a notifier that records), no reactor and no database."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from homeserver.edu import typing as typing_module
from homeserver.edu.typing import TypingManager
from homeserver.errors import MatrixError


class FakeRooms:
    def __init__(self, joined: dict[str, set[str]]) -> None:
        self.joined = joined

    async def get_room(self, room_id: str) -> Any:
        if room_id not in self.joined:
            return None
        return type("Room", (), {"room_nid": room_id})()

    async def get_membership(self, user_id: str, room_nid: str) -> Any:
        if user_id not in self.joined[room_nid]:
            return None
        return type("Membership", (), {"membership": "join"})()


class FakeNotifier:
    def __init__(self) -> None:
        self.rooms: list[str] = []

    def notify_room(self, room_id: str, stream_pos: int | None = None) -> None:
        assert stream_pos is None
        self.rooms.append(room_id)


class FakeContext:
    """The server context as typing uses it: a virtual clock, no local users."""

    def __init__(self) -> None:
        self.clock = Clock()

    def is_mine(self, user_id: str) -> bool:
        return False


def manager(rooms: int = 3, users: tuple[str, ...] = ("@a:x", "@b:x")) -> TypingManager:
    joined = {f"!r{i}:x": set(users) for i in range(rooms)}
    return TypingManager(FakeContext(), FakeRooms(joined), FakeNotifier())  # type: ignore[arg-type]


@pytest_twisted.ensureDeferred
async def test_each_change_moves_the_position_and_notifies_the_room() -> None:
    typing = manager()
    await typing.set_typing("@a:x", "!r0:x", True, 1000)
    await typing.set_typing("@b:x", "!r1:x", True, 1000)
    await typing.set_typing("@a:x", "!r0:x", False, 0)
    await typing.set_typing("@a:x", "!r0:x", False, 0)  # not typing: no change
    assert typing.current_position() == 3
    assert typing.notifier.rooms == ["!r0:x", "!r1:x", "!r0:x"]  # type: ignore[attr-defined]


@pytest_twisted.ensureDeferred
async def test_only_rooms_changed_after_the_position_are_returned() -> None:
    typing = manager()
    await typing.set_typing("@a:x", "!r0:x", True, 1000)
    mark = typing.current_position()
    await typing.set_typing("@b:x", "!r1:x", True, 1000)
    rooms = ["!r0:x", "!r1:x", "!r2:x"]
    assert typing.get_typing(rooms, mark) == {"!r1:x": ["@b:x"]}
    assert typing.rooms_changed_since(mark) == ["!r1:x"]
    assert typing.get_typing(rooms, 0) == {"!r0:x": ["@a:x"], "!r1:x": ["@b:x"]}
    assert sorted(typing.rooms_changed_since(0)) == ["!r0:x", "!r1:x"]
    # rooms the reader is not in are not theirs to see
    assert typing.get_typing(["!r2:x"], 0) == {}


@pytest_twisted.ensureDeferred
async def test_not_joined_is_forbidden() -> None:
    typing = manager(users=("@a:x",))
    with pytest.raises(MatrixError) as err:
        await typing.set_typing("@b:x", "!r0:x", True, 1000)
    assert (err.value.status, err.value.errcode) == (403, "M_FORBIDDEN")
    with pytest.raises(MatrixError):
        await typing.set_typing("@a:x", "!unknown:x", True, 1000)


@pytest_twisted.ensureDeferred
async def test_expiry_and_leaving_stop_typing() -> None:
    typing = manager()
    clock: Clock = typing.ctx.clock  # type: ignore[assignment]
    await typing.set_typing("@a:x", "!r0:x", True, 1000)
    await typing.set_typing("@b:x", "!r0:x", True, 60_000)
    clock.advance(1)
    assert typing.get_typing(["!r0:x"], 0) == {"!r0:x": ["@b:x"]}
    typing.left_room("@b:x", "!r0:x")
    typing.left_room("@b:x", "!r0:x")  # twice: nothing more
    assert typing.get_typing(["!r0:x"], 2) == {"!r0:x": []}
    assert typing.current_position() == 4
    assert not clock.getDelayedCalls()  # the stopped user's timer is gone


@pytest_twisted.ensureDeferred
async def test_forgotten_idle_rooms_still_clear_for_old_readers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(typing_module, "MAX_IDLE_ROOMS", 4)
    typing = manager(rooms=10)
    await typing.set_typing("@a:x", "!r0:x", True, 1000)
    mark = typing.current_position()
    await typing.set_typing("@a:x", "!r0:x", False, 0)
    for i in range(1, 10):  # many rooms with a typist who stops
        await typing.set_typing("@b:x", f"!r{i}:x", True, 1000)
        await typing.set_typing("@b:x", f"!r{i}:x", False, 0)
    assert len(typing._changed) <= 5
    # a reader from before the forgotten changes is told every room is quiet
    assert typing.get_typing(["!r0:x", "!r1:x"], mark) == {"!r0:x": [], "!r1:x": []}
    # a reader from after them gets only the real changes
    recent = typing.current_position() - 1
    assert typing.get_typing(["!r0:x", "!r9:x"], recent) == {"!r9:x": []}
