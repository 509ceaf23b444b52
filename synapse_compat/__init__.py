"""Compatibility with Synapse: its config keys, its admin API, its database."""
