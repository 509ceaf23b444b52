"""homeserver: a Matrix homeserver in Python on Twisted."""
