"""Accounts: user IDs, passwords, registration, login sessions and devices."""
