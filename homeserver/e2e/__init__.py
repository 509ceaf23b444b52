"""End-to-end encryption key distribution: device keys, one-time and fallback
keys (``keys.py``), cross-signing (``cross_signing.py``), server-side key
backup (``backup.py``). The server never sees a private key or a message in
clear: it stores and hands out what clients upload, checks signatures where
the spec says so, and tells other servers when device lists change."""
