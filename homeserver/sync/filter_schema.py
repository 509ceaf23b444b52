"""The JSON schema of a sync filter, from the spec's definitions.

Written from ``definitions/sync_filter.yaml``, ``event_filter.yaml`` and
``room_event_filter.yaml``. Unknown keys are allowed everywhere, as Synapse
allows them, so clients can send fields from newer spec versions and MSCs.
Where the spec's prose says more than its schema, the schema here says it
too: ``limit`` is an integer (a JSON ``10.0`` is refused, so whoever reads a
stored filter can trust it) and not negative: the spec's prose asks for more
than 0, but a timeline limit of 0 ("state only, no timeline") is what clients
send and Synapse accepts, so 0 is kept, and room and user ID lists hold
valid IDs, not just strings with the right sigil.

Type patterns (``types`` / ``not_types``) are capped: at most
``MAX_TYPE_PATTERN_LENGTH`` characters (an event type is at most 255 bytes,
so a longer pattern could match only through its ``*``s) and at most
``MAX_TYPE_PATTERN_STARS`` ``*``. The matcher is safe without the caps
(``homeserver/glob.py``); they keep a filter from being a way to make every
event cost a few thousand steps per pattern.
"""

from __future__ import annotations

import functools
from typing import Any

from homeserver.accounts.identifiers import is_valid_room_id, is_valid_user_id
from homeserver.errors import bad_json
from homeserver.glob import glob_problem

MAX_TYPE_PATTERN_LENGTH = 255
MAX_TYPE_PATTERN_STARS = 20

_STRINGS = {"type": "array", "items": {"type": "string"}}
_TYPE_PATTERNS = {"type": "array", "items": {"type": "string", "format": "type_pattern"}}
_USER_IDS = {"type": "array", "items": {"type": "string", "format": "matrix_user_id"}}
_ROOM_IDS = {"type": "array", "items": {"type": "string", "format": "matrix_room_id"}}

_EVENT_FILTER_PROPERTIES: dict[str, Any] = {
    "limit": {"type": "integer", "minimum": 0},
    "senders": _USER_IDS,
    "not_senders": _USER_IDS,
    "types": _TYPE_PATTERNS,
    "not_types": _TYPE_PATTERNS,
}

FILTER_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "definitions": {
        "event_filter": {
            "type": "object",
            "properties": _EVENT_FILTER_PROPERTIES,
        },
        "room_event_filter": {
            "type": "object",
            "properties": {
                **_EVENT_FILTER_PROPERTIES,
                "rooms": _ROOM_IDS,
                "not_rooms": _ROOM_IDS,
                "contains_url": {"type": "boolean"},
                "lazy_load_members": {"type": "boolean"},
                "include_redundant_members": {"type": "boolean"},
                "unread_thread_notifications": {"type": "boolean"},
            },
        },
        "room_filter": {
            "type": "object",
            "properties": {
                "rooms": _ROOM_IDS,
                "not_rooms": _ROOM_IDS,
                "include_leave": {"type": "boolean"},
                "ephemeral": {"$ref": "#/definitions/room_event_filter"},
                "state": {"$ref": "#/definitions/room_event_filter"},
                "timeline": {"$ref": "#/definitions/room_event_filter"},
                "account_data": {"$ref": "#/definitions/room_event_filter"},
            },
        },
    },
    "properties": {
        "event_fields": _STRINGS,
        "event_format": {"type": "string", "enum": ["client", "federation"]},
        "presence": {"$ref": "#/definitions/event_filter"},
        "account_data": {"$ref": "#/definitions/event_filter"},
        "room": {"$ref": "#/definitions/room_filter"},
    },
}

_FORMAT_NAMES = {"matrix_user_id": "a valid user ID", "matrix_room_id": "a valid room ID"}


def _type_pattern_problem(value: str) -> str | None:
    return glob_problem(value, max_length=MAX_TYPE_PATTERN_LENGTH,
                        max_stars=MAX_TYPE_PATTERN_STARS)


@functools.cache
def _validator() -> Any:
    """The filter validator, built at its first use: jsonschema (and what it
    pulls in) costs a few MiB of memory a server that never sees a new filter
    need not carry."""
    from jsonschema import Draft7Validator, FormatChecker, validators

    checker = FormatChecker(formats=())
    checker.checks("matrix_user_id")(lambda v: not isinstance(v, str) or is_valid_user_id(v))
    checker.checks("matrix_room_id")(lambda v: not isinstance(v, str) or is_valid_room_id(v))
    checker.checks("type_pattern")(
        lambda v: not isinstance(v, str) or _type_pattern_problem(v) is None)
    # JSON numbers like 10.0 are integers to draft 7; not to us.
    validator = validators.extend(
        Draft7Validator,
        type_checker=Draft7Validator.TYPE_CHECKER.redefine(
            "integer", lambda _checker, v: isinstance(v, int) and not isinstance(v, bool)),
    )
    return validator(FILTER_SCHEMA, format_checker=checker)


def _where(error: Any) -> str:
    where = ""
    for part in error.absolute_path:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    return where or "filter"


def _describe(error: Any) -> str:
    if error.validator == "format" and error.validator_value == "type_pattern":
        # the pattern itself may be long: name its start, not all of it
        shown = error.instance if len(error.instance) <= 40 else error.instance[:40] + "..."
        return f"{_where(error)}: type pattern {shown!r} {_type_pattern_problem(error.instance)}"
    if error.validator == "format":
        expected = _FORMAT_NAMES[str(error.validator_value)]
        return f"{_where(error)}: {error.instance!r} is not {expected}"
    return f"{_where(error)}: {error.message}"


def filter_problem(filter_json: Any) -> str | None:
    """What is wrong with a filter, naming where; None when it is valid."""
    from jsonschema.exceptions import best_match

    error = best_match(_validator().iter_errors(filter_json))
    return None if error is None else _describe(error)


def check_filter(filter_json: Any) -> None:
    """Raise 400 M_BAD_JSON, naming the problem, unless ``filter_json`` is a valid filter."""
    problem = filter_problem(filter_json)
    if problem is not None:
        raise bad_json(f"Invalid filter: {problem}")
