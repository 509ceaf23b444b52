"""Third-party identifiers: identity servers, e-mail validation, 3PIDs of accounts."""
