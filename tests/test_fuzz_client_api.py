"""Fuzzing the client-server API from the spec's own OpenAPI definitions.

schemathesis generates requests, schema-conforming and schema-breaking, for
every operation the spec describes, and sends them over real HTTP to a real
server (one per engine). Whatever a client sends, the server must answer
without an internal error: no 5xx, and every 4xx is a Matrix error (a JSON
object with string ``errcode`` and ``error``).

The spec keeps one OpenAPI file per area, each with its own base path in
``servers`` and relative ``$ref``s into ``definitions/`` and the event
schemas; ``bundle_client_server_api`` merges them into one document whose
paths are full (``/_matrix/client/v3/...``) and whose references are inlined.

Generation is derandomized and bounded (a few examples per operation and
mode), so a run is repeatable and takes a minute or two per engine. The
fuzzer runs in a thread (schemathesis and Hypothesis are synchronous) while
the reactor serves the requests.
"""

from __future__ import annotations

import itertools
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest_twisted
import yaml
from twisted.internet import threads

from tests.api.test_rooms import create_room, send_text
from tests.harness import SERVER_NAME, TestServer

# the spec beside the checkout (../shared), else this workplace's copy, as
# the Makefile finds the conformance kit
_SHARED = next((p for p in (Path(__file__).resolve().parent.parent.parent / "shared",
                            Path("/work/shared")) if (p / "matrix-spec").is_dir()),
               Path(__file__).resolve().parent.parent.parent / "shared")
SPEC_DIR = _SHARED / "matrix-spec" / "data" / "api" / "client-server"

# Examples per operation, for each of the two generation modes (schema-
# conforming and schema-breaking). Raise it locally to fuzz harder:
# HS_FUZZ_EXAMPLES=200.
EXAMPLES = int(os.environ.get("HS_FUZZ_EXAMPLES", "5"))
# Cases per operation from schemathesis' coverage phase: deterministic
# boundary values, missing required fields, wrong types, unexpected methods.
# Most operations have fewer; the filter upload alone has ~700.
COVERAGE_CASES = int(os.environ.get("HS_FUZZ_COVERAGE", "60"))

# Operations left out, and why: each would end the fuzzing user's session or
# needs a party outside the server.
EXCLUDED = {
    # end the access token the rest of the run uses
    ("POST", "/_matrix/client/v3/logout"),
    ("POST", "/_matrix/client/v3/logout/all"),
    ("POST", "/_matrix/client/v3/account/deactivate"),
    # single sign-on redirects to an identity provider we do not have
    ("GET", "/_matrix/client/v3/login/sso/redirect"),
    ("GET", "/_matrix/client/v3/login/sso/redirect/{idpId}"),
}

# Operations whose real path parameters would spoil the rest of the run: with
# the fuzzing room's id, a generated request may leave (and forget) the room
# every other operation is pointed at.
NO_REAL_PARAMS = {
    ("POST", "/_matrix/client/v3/rooms/{roomId}/leave"),
    ("POST", "/_matrix/client/v3/rooms/{roomId}/forget"),
    ("POST", "/_matrix/client/v3/rooms/{roomId}/kick"),
    ("POST", "/_matrix/client/v3/rooms/{roomId}/ban"),
    ("POST", "/_matrix/client/v3/rooms/{roomId}/upgrade"),
}

# Operations that fetch from a server the request names: a media origin, a
# room directory, the servers a join goes through. When that server cannot be
# reached (in this run none can) the answer is 502 with a Matrix error, as
# Synapse's is; a 5xx from any other operation is a bug here.
REMOTE = {
    ("GET", "/_matrix/client/v1/media/download/{serverName}/{mediaId}"),
    ("GET", "/_matrix/client/v1/media/download/{serverName}/{mediaId}/{fileName}"),
    ("GET", "/_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}"),
    ("GET", "/_matrix/media/v3/download/{serverName}/{mediaId}"),
    ("GET", "/_matrix/media/v3/download/{serverName}/{mediaId}/{fileName}"),
    ("GET", "/_matrix/media/v3/thumbnail/{serverName}/{mediaId}"),
    ("POST", "/_matrix/client/v3/join/{roomIdOrAlias}"),
    ("POST", "/_matrix/client/v3/rooms/{roomId}/join"),
    ("POST", "/_matrix/client/v3/knock/{roomIdOrAlias}"),
    ("GET", "/_matrix/client/v3/publicRooms"),
    ("POST", "/_matrix/client/v3/publicRooms"),
    ("GET", "/_matrix/client/v3/directory/room/{roomAlias}"),
    ("GET", "/_matrix/client/v3/profile/{userId}"),
    ("GET", "/_matrix/client/v3/profile/{userId}/{keyName}"),
    ("GET", "/_matrix/client/v3/profile/{userId}/displayname"),
    ("GET", "/_matrix/client/v3/profile/{userId}/avatar_url"),
    # these ask the identity server named in the body (id_server)
    ("POST", "/_matrix/client/v3/account/3pid/bind"),
    ("POST", "/_matrix/client/v3/account/3pid/unbind"),
    ("POST", "/_matrix/client/v3/account/3pid/delete"),
    ("POST", "/_matrix/client/v3/rooms/{roomId}/invite"),
}
GATEWAY_ERRORS = {502, 504}

# Long-polls wait as long as the client asks; the fuzzer asks for no wait.
NO_WAIT = {"timeout": 0}

REQUEST_TIMEOUT = 30.0


# -- bundling the spec ---------------------------------------------------


class _Documents:
    """The YAML files of the spec, each loaded once."""

    def __init__(self) -> None:
        self._loaded: dict[str, Any] = {}

    def load(self, path: str) -> Any:
        if path not in self._loaded:
            with open(path, encoding="utf-8") as f:
                self._loaded[path] = yaml.safe_load(f)
        return self._loaded[path]


def _pointer(document: Any, fragment: str) -> Any:
    node = document
    for part in fragment.lstrip("/").split("/"):
        if part:
            part = part.replace("~1", "/").replace("~0", "~")
            node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def _inline(node: Any, path: str, docs: _Documents, seen: frozenset[tuple[str, str]]) -> Any:
    """``node`` with every ``$ref`` replaced by what it points at.

    A reference is relative to the file it is written in; a cycle (a schema
    that contains itself) is cut to ``{}``, which accepts anything."""
    if isinstance(node, list):
        return [_inline(item, path, docs, seen) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        file_part, _, fragment = ref.partition("#")
        target = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) \
            if file_part else path
        key = (target, fragment)
        if key in seen:
            return {}
        resolved = _inline(_pointer(docs.load(target), fragment), target, docs, seen | {key})
        # OpenAPI 3.1 lets siblings (a description, an example) sit beside $ref
        siblings = {k: _inline(v, path, docs, seen) for k, v in node.items() if k != "$ref"}
        if siblings and isinstance(resolved, dict):
            return {**resolved, **siblings}
        return resolved
    return {k: _inline(v, path, docs, seen) for k, v in node.items()}


def bundle_client_server_api(base_url: str) -> dict[str, Any]:
    """One OpenAPI document for the whole client-server API, served at ``base_url``."""
    docs = _Documents()
    paths: dict[str, Any] = {}
    for file in sorted(SPEC_DIR.glob("*.yaml")):
        document = docs.load(str(file))
        base_path = document["servers"][0]["variables"]["basePath"]["default"]
        for route, item in document["paths"].items():
            paths.setdefault(base_path + route, {}).update(_inline(item, str(file), docs,
                                                                   frozenset()))
    security = _inline(docs.load(str(SPEC_DIR / "definitions" / "security.yaml")),
                       str(SPEC_DIR / "definitions" / "security.yaml"), docs, frozenset())
    return {
        "openapi": "3.1.0",
        "info": {"title": "Matrix client-server API", "version": "1"},
        "servers": [{"url": base_url}],
        "paths": paths,
        "components": {"securitySchemes": security},
    }


# -- fuzzing ---------------------------------------------------------------


@dataclass
class Finding:
    """A request the server answered badly, and what it answered."""

    method: str
    path: str
    status: int | None
    body: str
    request: str

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status}: {self.body[:300]}\n  {self.request}"


@dataclass
class FuzzRun:
    statuses: Counter[int] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    unsendable: int = 0  # cases the HTTP client itself refused to send
    gateway: int = 0  # 502/504 from REMOTE operations: another server failed

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def by_class(self) -> dict[str, int]:
        classes: Counter[str] = Counter()
        for status, count in self.statuses.items():
            classes[f"{status // 100}xx"] += count
        return dict(sorted(classes.items()))


def _is_matrix_error(status: int, content: bytes) -> bool:
    """A standard error body, or (401) the spec's user-interactive auth challenge."""
    try:
        body = json.loads(content)
    except ValueError:
        return False
    if not isinstance(body, dict):
        return False
    if status == 401 and isinstance(body.get("flows"), list) and "errcode" not in body:
        # the first step of user-interactive auth: flows and a session, no error yet
        return isinstance(body.get("session"), str)
    return isinstance(body.get("errcode"), str) and isinstance(body.get("error"), str)


def fuzz(base_url: str, access_token: str, real_params: dict[str, str],
         examples: int = EXAMPLES) -> FuzzRun:
    """Every operation of the spec, ``examples`` cases in each mode (blocking)."""
    import hypothesis
    import requests
    import schemathesis
    from hypothesis import strategies as st
    from schemathesis.generation.modes import GenerationMode

    schema = schemathesis.openapi.from_dict(bundle_client_server_api(base_url))
    run = FuzzRun()
    session = requests.Session()
    headers = {"Authorization": f"Bearer {access_token}"}

    def send(case: Any) -> None:
        try:
            response = case.call(base_url=base_url, session=session, headers=headers,
                                 timeout=REQUEST_TIMEOUT)
        except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL,
                UnicodeEncodeError):
            # requests refuses to put such a header or URL on the wire
            run.unsendable += 1
            return
        except requests.RequestException as e:
            # no answer at all: the server dropped the connection or hung
            run.findings.append(Finding(case.method, case.path, None, repr(e),
                                        case.as_curl_command(headers=headers)))
            return
        status = response.status_code
        run.statuses[status] += 1
        matrix_error = _is_matrix_error(status, response.content)
        if status in GATEWAY_ERRORS and matrix_error \
                and (case.method.upper(), case.path) in REMOTE:
            run.gateway += 1
            return
        bad = status >= 500 or (400 <= status < 500 and not matrix_error)
        if bad:
            run.findings.append(Finding(
                case.method, case.path, status,
                response.content.decode("utf-8", "replace"),
                case.as_curl_command(headers=headers)))

    for result in schema.get_all_operations():
        operation = result.ok()
        key = (operation.method.upper(), operation.path)
        if key in EXCLUDED:
            continue
        query = {k: v for k, v in NO_WAIT.items()
                 if any(p.name == k for p in operation.query)} or None
        real = {k: v for k, v in real_params.items() if "{" + k + "}" in operation.path}
        if key in NO_REAL_PARAMS:
            real = {}

        coverage = schema.iter_coverage_cases(
            operation, generation_modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
            generation_config=schema.config.generation)
        for n, case in enumerate(itertools.islice(coverage, COVERAGE_CASES)):
            if query:
                case.query = {**(case.query or {}), **query}
            if real and n % 2 and case.path_parameters:
                # every other case points at things that exist (see below)
                case.path_parameters = {**case.path_parameters, **real}
            send(case)

        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = operation.as_strategy(generation_mode=mode, query=query)
            if real:
                # half the cases point at things that exist (the fuzzing
                # room, its event, the fuzzing user), so handlers get past
                # their not-found checks
                strategy = st.one_of(strategy, operation.as_strategy(
                    generation_mode=mode, query=query, path_parameters=real))

            @hypothesis.settings(max_examples=examples, derandomize=True, database=None,
                                 deadline=None, phases=[hypothesis.Phase.generate],
                                 suppress_health_check=list(hypothesis.HealthCheck))
            @hypothesis.given(strategy)
            def fuzz_operation(case: Any) -> None:
                send(case)

            try:
                fuzz_operation()
            except hypothesis.errors.Unsatisfiable:
                # the schema leaves nothing to break in this mode
                pass
    return run


@pytest_twisted.ensureDeferred
async def test_no_request_from_the_spec_gets_a_server_error(make_server: Any) -> None:
    # Generated requests name made-up servers (media origins, room directories,
    # remote users, identity servers); with no server allowed and every address
    # refused by the outbound guard the run never leaves the machine, and each
    # such request takes the same path as an unreachable server.
    server: TestServer = await make_server(federation_domain_whitelist=[],
                                           ip_range_blacklist=["0.0.0.0/0", "::/0"])
    fuzzer = await server.register("fuzzer")
    room_id = await create_room(fuzzer, name="fuzzing ground")
    event_id = await send_text(fuzzer, room_id, "something to point at", "fuzz-1")
    upload = await fuzzer.request("POST", "/_matrix/media/v3/upload", raw=b"hello",
                                  headers={"Content-Type": "text/plain"})
    assert upload.code == 200, upload.body
    media_id = upload.body["content_uri"].rsplit("/", 1)[1]
    assert fuzzer.access_token and fuzzer.user_id
    real = {"roomId": room_id, "roomIdOrAlias": room_id, "eventId": event_id,
            "userId": fuzzer.user_id, "serverName": SERVER_NAME, "mediaId": media_id}

    run = await threads.deferToThread(fuzz, server.base_url, fuzzer.access_token, real)

    print(f"\nfuzz on {server.engine}: {run.requests} requests, {run.by_class()}, "
          f"of which {run.gateway} from another server; "
          f"{run.unsendable} not sendable")
    assert run.requests > 500, "the fuzzer barely ran"
    assert run.statuses.keys() & {200}, "no request at all succeeded"
    distinct = {(f.method, f.path, f.status): f for f in run.findings}
    assert not run.findings, f"{len(run.findings)} bad answers, {len(distinct)} distinct:\n" \
        + "\n".join(str(f) for f in list(distinct.values())[:60])
