"""A small identity server (Identity Service API v2) over real TLS, for tests.

It keeps bindings and stored invites in memory, answers the calls the
homeserver makes (hash_details, lookup, store-invite, 3pid/bind,
3pid/unbind, pubkey/isvalid) and can call a homeserver's
``/_matrix/federation/v1/3pid/onbind`` as a real identity server does when
an address is bound. Its certificate comes from a throwaway CA the
homeserver does not trust, so the homeserver must run with
``use_insecure_ssl_client_just_for_testing_do_not_use``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import treq
from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from signedjson.sign import sign_json
from twisted.internet import ssl
from twisted.web import resource, server

from tests.federation.ca import TestCA

ACCESS_TOKEN = "swordfish"
PEPPER = "matrixrocks"


class FakeIdentityServer(resource.Resource):
    isLeaf = True  # noqa: N815 (Twisted API)

    def __init__(self) -> None:
        super().__init__()
        self.key = generate_signing_key("0")
        self.valid = True  # what pubkey/isvalid says
        self.bindings: dict[tuple[str, str], str] = {}
        self.sessions: dict[str, tuple[str, str]] = {}
        self.invites: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, str, Any, dict[str, list[str]]]] = []
        self.port: Any = None
        self._next = 0

    # -- set-up ------------------------------------------------------------------

    def listen(self, ca: TestCA) -> None:
        from twisted.internet import reactor
        cert_path, key_path = ca.issue("identity")
        with open(cert_path, "rb") as c, open(key_path, "rb") as k:
            cert = ssl.PrivateCertificate.loadPEM(c.read() + k.read())
        self.port = reactor.listenSSL(0, server.Site(self), cert.options(),  # type: ignore[attr-defined]
                                      interface="127.0.0.1")

    @property
    def name(self) -> str:
        return f"localhost:{self.port.getHost().port}"

    @property
    def public_key(self) -> str:
        return str(encode_verify_key_base64(get_verify_key(self.key)))

    def validated_session(self, medium: str, address: str) -> str:
        """A session the client validated with us (the identity server's own)."""
        self._next += 1
        sid = f"session_{self._next}"
        self.sessions[sid] = (medium, address)
        return sid

    async def bind_and_notify(self, hs_base_url: str, medium: str, address: str,
                              mxid: str, agent: Any = None) -> Any:
        """Bind out of band and call the homeserver's onbind with our invites
        (``agent``: one that trusts the homeserver's certificate, for https)."""
        self.bindings[(medium, address)] = mxid
        invites = []
        for invite in self.invites.get((medium, address), []):
            signed = sign_json({"mxid": mxid, "token": invite["token"]}, self.name, self.key)
            invites.append({**invite, "mxid": mxid, "signed": signed})
        body = sign_json({"medium": medium, "address": address, "mxid": mxid,
                          "invites": invites}, self.name, self.key)
        extra: dict[str, Any] = {"agent": agent} if agent is not None else {}
        resp = await treq.post(f"{hs_base_url}/_matrix/federation/v1/3pid/onbind",
                               data=json.dumps(body).encode(),
                               headers={b"Content-Type": [b"application/json"]}, **extra)
        return resp.code, json.loads(await resp.content())

    # -- the API -------------------------------------------------------------------

    def render(self, request: Any) -> bytes:
        path = request.path.decode()
        body: Any = None
        raw = request.content.read()
        if raw:
            body = json.loads(raw)
        args = {k.decode(): [v.decode() for v in vs] for k, vs in request.args.items()}
        self.requests.append((request.method.decode(), path, body, args))
        code, answer = self._answer(request, path, body, args)
        request.setResponseCode(code)
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(answer).encode()

    def _authorised(self, request: Any) -> bool:
        return request.getHeader(b"Authorization") == f"Bearer {ACCESS_TOKEN}".encode()

    def _answer(self, request: Any, path: str, body: Any,
                args: dict[str, list[str]]) -> tuple[int, Any]:
        v2 = "/_matrix/identity/v2"
        if path == f"{v2}/pubkey/isvalid":
            return 200, {"valid": self.valid and args.get("public_key") == [self.public_key]}
        if path == f"{v2}/3pid/unbind":
            key = (body["threepid"]["medium"], body["threepid"]["address"])
            if self.bindings.get(key) != body["mxid"]:
                return 404, {"errcode": "M_NOT_FOUND", "error": "no such binding"}
            del self.bindings[key]
            return 200, {}
        if not self._authorised(request):
            return 401, {"errcode": "M_UNAUTHORIZED", "error": "bad token"}
        if path == f"{v2}/hash_details":
            return 200, {"algorithms": ["none", "sha256"], "lookup_pepper": PEPPER}
        if path == f"{v2}/lookup":
            mappings = {}
            for h in body["addresses"]:
                for (medium, address), mxid in self.bindings.items():
                    digest = hashlib.sha256(f"{address} {medium} {PEPPER}".encode()).digest()
                    if base64.urlsafe_b64encode(digest).decode().rstrip("=") == h:
                        mappings[h] = mxid
            return 200, {"mappings": mappings}
        if path == f"{v2}/store-invite":
            self._next += 1
            token = f"token{self._next}"
            self.invites.setdefault((body["medium"], body["address"]), []).append(
                {"medium": body["medium"], "address": body["address"],
                 "room_id": body["room_id"], "sender": body["sender"], "token": token})
            url = f"https://{self.name}{v2}/pubkey/isvalid"
            return 200, {"token": token, "display_name": "B...@e...", "public_key":
                         self.public_key,
                         "public_keys": [{"public_key": self.public_key,
                                          "key_validity_url": url}]}
        if path == f"{v2}/3pid/bind":
            if body["sid"] not in self.sessions:
                return 400, {"errcode": "M_NO_VALID_SESSION", "error": "unknown session"}
            medium, address = self.sessions[body["sid"]]
            self.bindings[(medium, address)] = body["mxid"]
            return 200, {"medium": medium, "address": address, "mxid": body["mxid"],
                         "not_before": 0, "not_after": 4582425849161, "ts": 0}
        return 404, {"errcode": "M_UNRECOGNIZED", "error": path}
