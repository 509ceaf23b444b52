"""Storage: the Database, schema migrations, and one store per aggregate.

SQL lives only in this package, always with bound parameters.
"""

from __future__ import annotations

from homeserver.storage.database import Database
from homeserver.storage.devices import DeviceStore
from homeserver.storage.tokens import TokenStore
from homeserver.storage.users import UserStore


class Stores:
    """Every store of one database, built once by the HomeServer."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.users = UserStore(db)
        self.devices = DeviceStore(db)
        self.tokens = TokenStore(db)
