"""Rooms: auth rules, state resolution, creation, membership. The pure parts take plain data."""
