"""Joins, leaves, invites and knocks across servers. (being written)"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from homeserver.server import HomeServer


class FederationMembership:
    def __init__(self, hs: "HomeServer") -> None:
        self.hs = hs
