"""Push rules: a user reads and changes their own ruleset (``global`` scope only).

The ruleset is the server-default rules (``push/rules.py``) merged with the
user's own (``storage/push_rules.py``). A user adds, replaces and deletes
their own rules; of a server-default rule (ID starting with ``.``) they may
change only ``enabled`` and ``actions``. A body is validated whole before
anything is stored: a malformed structure is 400 M_BAD_JSON, a well-formed
but unknown action or a bad condition parameter 400 M_INVALID_PARAM, a
``before``/``after`` naming no user rule 400 M_UNKNOWN (the spec's example),
an unknown rule 404 M_NOT_FOUND. A glob ``pattern`` over 1000 characters or
with more than 20 ``*`` is 400 M_INVALID_PARAM (``rules.pattern_problem``).

Paths, as Synapse reads them (the spec names only the full forms): a
trailing slash asks for a listing (``/pushrules/`` everything,
``/pushrules/global/`` the scope, ``/pushrules/global/{kind}/`` one kind);
the same path without it is 400 M_UNRECOGNIZED (``/pushrules`` alone 404, no
such endpoint), as are an unknown scope, kind or attribute and a PUT or
DELETE whose path stops before the rule ID. ``GET .../{ruleId}/{attr}``
also answers the rule's other keys (``pattern``, ``conditions``), as
Synapse. The router ignores trailing slashes, so the listings look at the
raw path themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeserver.errors import Codes, MatrixError, bad_json, invalid_param, not_found
from homeserver.http.parse import query_str
from homeserver.http.request import HttpRequest
from homeserver.http.router import Endpoint, Router
from homeserver.push.rules import (
    DEFAULT_KIND_OF,
    KINDS,
    client_rule,
    client_ruleset,
    pattern_problem,
)
from homeserver.storage.push_rules import RuleNotFound

if TYPE_CHECKING:
    from homeserver.server import HomeServer
    from homeserver.storage.push_rules import PushRuleStore

CLIENT_V3 = "/_matrix/client/v3"
SCOPE = "global"
SIMPLE_ACTIONS = ("notify", "dont_notify", "coalesce")
MAX_RULE_ID_BYTES = 255


def check_actions(actions: Any) -> list[Any]:
    if not isinstance(actions, list):
        raise bad_json("'actions' must be a list")
    for action in actions:
        if isinstance(action, str):
            if action not in SIMPLE_ACTIONS:
                raise invalid_param(f"Unknown action {action!r}")
        elif isinstance(action, dict):
            if not isinstance(action.get("set_tweak"), str):
                raise invalid_param("An action object must have a string 'set_tweak'")
        else:
            raise bad_json("Each action must be a string or an object")
    return actions


_STRING_PARAMS = {
    "event_match": ("key", "pattern"),
    "event_property_is": ("key",),
    "event_property_contains": ("key",),
    "room_member_count": ("is",),
    "sender_notification_permission": ("key",),
    "contains_display_name": (),
}


def check_conditions(conditions: Any) -> list[Any]:
    if not isinstance(conditions, list):
        raise bad_json("'conditions' must be a list")
    for cond in conditions:
        if not isinstance(cond, dict) or not isinstance(cond.get("kind"), str):
            raise bad_json("Each condition must be an object with a string 'kind'")
        # unknown kinds are allowed: they never match (the spec)
        for param in _STRING_PARAMS.get(cond["kind"], ()):
            if not isinstance(cond.get(param), str):
                raise invalid_param(f"Condition {cond['kind']} needs a string {param!r}")
        if cond["kind"] == "event_match":
            check_pattern(cond["pattern"])
        if cond["kind"] in ("event_property_is", "event_property_contains"):
            value = cond.get("value", ...)
            if not (value is None or isinstance(value, (str, bool))
                    or (isinstance(value, int) and abs(value) < 2**53)):
                raise invalid_param("'value' must be a string, integer, boolean or null")
    return conditions


def check_pattern(pattern: str) -> None:
    """Refuse a glob that would cost every message in the user's rooms too much."""
    problem = pattern_problem(pattern)
    if problem is not None:
        raise invalid_param(f"The pattern {problem}")


def unrecognized(msg: str = "Unrecognized request") -> MatrixError:
    return MatrixError(400, Codes.UNRECOGNIZED, msg)


def require_trailing_slash(req: HttpRequest) -> None:
    """A listing is asked for with a trailing slash; without one the path
    names nothing (Synapse's "slightly pedantic" 400)."""
    if not req.raw.path.endswith(b"/"):
        raise unrecognized("Push rule listings need a trailing slash")


def check_scope(req: HttpRequest) -> None:
    if req.params["scope"] != SCOPE:
        raise unrecognized("Only the 'global' scope is supported")


def kind_of(req: HttpRequest) -> str:
    check_scope(req)
    kind = req.params["kind"]
    if kind not in KINDS:
        raise unrecognized(f"Unknown push rule kind {kind!r}")
    return kind


def path_of(req: HttpRequest) -> tuple[str, str]:
    return kind_of(req), req.params["ruleId"]


async def find(store: PushRuleStore, req: HttpRequest) -> tuple[str, dict[str, Any]]:
    kind, rule_id = path_of(req)
    ruleset = await store.get_ruleset(req.user_id)
    for rule in ruleset[kind]:
        if rule["rule_id"] == rule_id:
            return kind, rule
    raise not_found("The push rule was not found.")


async def get_all(store: PushRuleStore, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/pushrules/"""
    if not req.raw.path.endswith(b"/"):
        # Synapse has no endpoint at /pushrules
        raise MatrixError(404, Codes.UNRECOGNIZED, "Unrecognized request")
    return 200, {SCOPE: client_ruleset(await store.get_ruleset(req.user_id))}


async def get_scope(store: PushRuleStore, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/pushrules/global/"""
    check_scope(req)
    require_trailing_slash(req)
    return 200, client_ruleset(await store.get_ruleset(req.user_id))


async def get_kind(store: PushRuleStore, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/pushrules/global/{kind}/"""
    kind = kind_of(req)
    require_trailing_slash(req)
    return 200, client_ruleset(await store.get_ruleset(req.user_id))[kind]


async def no_rule_id(store: PushRuleStore, req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/client/v3/pushrules/global/{kind}/ (and shorter; DELETE too)

    A change needs a rule ID: a path that stops before it is refused."""
    raise unrecognized("The path names no push rule")


async def get_other_attribute(store: PushRuleStore, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/{attr}

    Besides ``enabled`` and ``actions`` (their own endpoints), any key the
    rule shows (``pattern``, ``conditions``, ...), as Synapse answers; other
    names 400 M_UNRECOGNIZED."""
    kind, rule = await find(store, req)
    attr = req.params["attr"]
    shown = client_rule(kind, rule)
    if attr not in shown:
        raise unrecognized(f"Unknown push rule attribute {attr!r}")
    return 200, {attr: shown[attr]}


async def put_other_attribute(store: PushRuleStore, req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/{attr}

    Only ``enabled`` and ``actions`` can be set on their own."""
    path_of(req)
    raise unrecognized(f"Push rule attribute {req.params['attr']!r} cannot be set")


async def get_rule(store: PushRuleStore, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}"""
    kind, rule = await find(store, req)
    return 200, client_rule(kind, rule)


def parse_rule_body(kind: str, body: dict[str, Any]) -> tuple[list[Any], str | None, list[Any]]:
    """(conditions, pattern, actions) of a PUT rule body, checked for ``kind``."""
    if "actions" not in body:
        raise MatrixError(400, Codes.BAD_JSON, "Missing 'actions'")
    actions = check_actions(body["actions"])
    conditions: list[Any] = []
    pattern: str | None = None
    if kind in ("override", "underride"):
        conditions = check_conditions(body.get("conditions", []))
    elif kind == "content":
        pattern = body.get("pattern")
        if not isinstance(pattern, str):
            raise bad_json("A content rule needs a string 'pattern'")
        check_pattern(pattern)
    return conditions, pattern, actions


async def put_rule(store: PushRuleStore, req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}"""
    kind, rule_id = path_of(req)
    if rule_id.startswith("."):
        raise invalid_param("Server-default rules cannot be created or replaced")
    if not rule_id or len(rule_id.encode("utf-8")) > MAX_RULE_ID_BYTES:
        raise invalid_param("Invalid rule ID")
    if "/" in rule_id or "\\" in rule_id:
        raise invalid_param("A rule ID may not contain slashes")
    conditions, pattern, actions = parse_rule_body(kind, req.json())
    before = query_str(req.args, "before", None)
    after = query_str(req.args, "after", None)
    if before is not None and after is not None:
        raise invalid_param("Give 'before' or 'after', not both")
    try:
        await store.add_rule(req.user_id, kind, rule_id, conditions, pattern, actions,
                             before, after)
    except RuleNotFound as e:
        raise MatrixError(400, Codes.UNKNOWN, f"before/after rule not found: {e}") from None
    return 200, {}


async def delete_rule(store: PushRuleStore, req: HttpRequest) -> tuple[int, Any]:
    """DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}"""
    kind, rule_id = path_of(req)
    if DEFAULT_KIND_OF.get(rule_id) == kind:
        raise invalid_param("Server-default rules cannot be deleted")
    if not await store.delete_rule(req.user_id, kind, rule_id):
        raise not_found("The push rule was not found.")
    return 200, {}


async def get_enabled(store: PushRuleStore, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled"""
    _, rule = await find(store, req)
    return 200, {"enabled": bool(rule["enabled"])}


async def put_enabled(store: PushRuleStore, req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled"""
    kind, rule_id = path_of(req)
    enabled = req.json().get("enabled")
    if not isinstance(enabled, bool):
        raise bad_json("'enabled' must be a boolean")
    if not await store.set_rule_attribute(req.user_id, kind, rule_id, enabled=enabled):
        raise not_found("The push rule was not found.")
    return 200, {}


async def get_actions(store: PushRuleStore, req: HttpRequest) -> tuple[int, Any]:
    """GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions"""
    _, rule = await find(store, req)
    return 200, {"actions": rule["actions"]}


async def put_actions(store: PushRuleStore, req: HttpRequest) -> tuple[int, Any]:
    """PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions"""
    kind, rule_id = path_of(req)
    body = req.json()
    if "actions" not in body:
        raise bad_json("Missing 'actions'")
    actions = check_actions(body["actions"])
    if not await store.set_rule_attribute(req.user_id, kind, rule_id, actions=actions):
        raise not_found("The push rule was not found.")
    return 200, {}


_BASE = f"{CLIENT_V3}/pushrules"
_RULE = f"{_BASE}/{{scope}}/{{kind}}/{{ruleId}}"
_SCOPE = f"{_BASE}/{{scope}}/"
_KIND = f"{_BASE}/{{scope}}/{{kind}}/"
ENDPOINTS = (
    Endpoint("GET", f"{_BASE}/", get_all),
    Endpoint("PUT", f"{_BASE}/", no_rule_id),
    Endpoint("DELETE", f"{_BASE}/", no_rule_id),
    Endpoint("GET", _SCOPE, get_scope),
    Endpoint("PUT", _SCOPE, no_rule_id),
    Endpoint("DELETE", _SCOPE, no_rule_id),
    Endpoint("GET", _KIND, get_kind),
    Endpoint("PUT", _KIND, no_rule_id),
    Endpoint("DELETE", _KIND, no_rule_id),
    Endpoint("GET", _RULE, get_rule),
    Endpoint("PUT", _RULE, put_rule),
    Endpoint("DELETE", _RULE, delete_rule),
    Endpoint("GET", f"{_RULE}/enabled", get_enabled),
    Endpoint("PUT", f"{_RULE}/enabled", put_enabled),
    Endpoint("GET", f"{_RULE}/actions", get_actions),
    Endpoint("PUT", f"{_RULE}/actions", put_actions),
    Endpoint("GET", f"{_RULE}/{{attr}}", get_other_attribute),
    Endpoint("PUT", f"{_RULE}/{{attr}}", put_other_attribute),
)


def register_routes(hs: "HomeServer", router: Router) -> None:
    # the push rule store is all these endpoints use
    router.add_endpoints(hs.stores.push_rules, ENDPOINTS)
