"""Ephemeral data units: typing, receipts, presence, send-to-device."""
