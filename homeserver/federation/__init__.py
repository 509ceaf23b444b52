"""Federation: the server-server API between homeservers.

- ``keys.py``: our signing keys as served at /_matrix/key/v2/server, and the
  keys of other servers (fetched from them or from notaries, cached).
- ``request_auth.py``: the X-Matrix Authorization header: signing our
  outbound requests, verifying inbound ones.
- ``discovery.py``, ``tls.py``, ``client.py``: finding a server (well-known,
  SRV, IP literals, port 8448), TLS with certificate checks, and the HTTP
  client every outbound request goes through (signed, size- and time-limited,
  never to private address ranges unless configured).
- ``sender.py``: per-destination queues of PDUs and EDUs, persisted, with
  backoff and catch-up.
- ``transactions.py``: inbound transactions (PUT /send): limits, each
  room's PDUs in order, a result per PDU, EDUs handed to ``edus.py``.
- ``event_handler.py``: the inbound PDU pipeline (signatures, hashes, auth,
  state resolution, soft-fail, persistence), fetching what is missing.
- ``membership.py``: joins, leaves, invites and knocks across servers.
- ``edus.py``: inbound EDUs (typing, receipts, presence, to-device, device
  lists) and the queries (profile, directory).

The HTTP endpoints are in ``api/federation/``.
"""
