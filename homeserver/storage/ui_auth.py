"""(to be written)"""

from __future__ import annotations

from homeserver.storage.database import Database


class UiAuthStore:
    def __init__(self, db: Database) -> None:
        self.db = db
