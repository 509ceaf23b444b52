"""Sync: stream tokens, the notifier, and the /sync response builder."""
