"""The account stages of `homeserver import-synapse`: users and profiles,
devices, tokens, account data, registration tokens, push rules, pushers."""

from __future__ import annotations

import json

from homeserver.http.auth import hash_token
from homeserver.push.rules import DEFAULT_KIND_OF
from homeserver.storage import synapse_import as rows
from homeserver.storage.account_data import AccountDataStore
from homeserver.storage.database import Txn
from homeserver.storage.streams import current_stream_id_txn
from homeserver.storage.users import UserStore
from homeserver.synapse_import.common import StageContext, chunks, load_json, now_ms


def split_rule_id(full: str) -> tuple[str, str] | None:
    """Synapse's ``global/<kind>/<rule id>`` as (kind, rule id)."""
    parts = full.split("/", 2)
    if len(parts) != 3 or parts[0] != "global" or parts[1] not in _PUSH_KINDS:
        return None
    return parts[1], parts[2]


_PUSH_KINDS = ("override", "content", "room", "sender", "underride")



def users(ctx: StageContext, name: str) -> None:
    """Accounts, profiles and erasures. Synapse's account states this server
    does not have are made safe, never looser: a locked account, or one
    still waiting for an admin's approval, is imported deactivated (it could
    not log in on Synapse either); a shadow-banned one is imported as it is
    and named in the report, for the admin to decide."""
    src = ctx.src
    optional = [c if src.has_column("users", c) else "NULL"
                for c in ("locked", "approved", "shadow_banned")]
    users = src.rows("SELECT name, password_hash, creation_ts, admin, is_guest,"
                     " deactivated, user_type, " + ", ".join(optional) + " FROM users")
    full = "full_user_id" if src.has_column("profiles", "full_user_id") else None
    profiles = src.rows(f"SELECT user_id, {full or 'NULL'}, displayname, avatar_url"
                        " FROM profiles")
    erased = [str(r[0]) for r in src.rows("SELECT user_id FROM erased_users")] \
        if src.has_table("erased_users") else []
    advance = ctx.progress.stage(name, len(users) + len(profiles))

    def txn_fn(txn: Txn) -> int:
        for (user_id, pw, created, admin, guest, deactivated, user_type, locked, approved,
             shadow_banned) in users:
            # an unapproved account is shut only where Synapse asks for approval
            closed = bool(locked) or (ctx.syn_config.requires_approval
                                      and approved is not None and not approved)
            if closed and not deactivated:
                ctx.report.skipped.append(
                    f"{user_id}: " + ("locked" if locked else "not approved yet")
                    + " on Synapse, imported deactivated")
            if shadow_banned:
                ctx.report.skipped.append(f"{user_id}: shadow-banned on Synapse; this server"
                                          " has no shadow bans, imported as a normal user")
            # Synapse counts creation_ts in seconds
            rows.insert_user_txn(txn, str(user_id), pw or None, int(created or 0) * 1000,
                                 bool(admin), bool(guest), bool(deactivated) or closed,
                                 user_type)
        advance(len(users))
        for localpart, full_id, displayname, avatar_url in profiles:
            rows.upsert_profile_txn(txn, full_id or ctx.user_id(str(localpart)),
                                    displayname, avatar_url)
        for user_id in erased:
            UserStore.mark_erased_txn(txn, user_id)
        advance(len(profiles))
        return len(users)
    ctx.commit(name, txn_fn)


def threepids(ctx: StageContext, name: str) -> None:
    """Email addresses and phone numbers bound to accounts (login by email,
    password resets), and the identity servers they were published on."""
    src = ctx.src
    bound = src.rows("SELECT user_id, medium, address, validated_at, added_at"
                     " FROM user_threepids") if src.has_table("user_threepids") else []
    id_servers = src.rows("SELECT user_id, medium, address, id_server"
                          " FROM user_threepid_id_server") \
        if src.has_table("user_threepid_id_server") else []
    advance = ctx.progress.stage(name, len(bound) + len(id_servers))

    def txn_fn(txn: Txn) -> int:
        for user_id, medium, address, validated_at, added_at in bound:
            rows.insert_threepid_txn(txn, user_id, medium, address, int(validated_at or 0),
                                     int(added_at or 0))
        for row in id_servers:
            rows.insert_threepid_id_server_txn(txn, *row)
        advance(len(bound) + len(id_servers))
        return len(bound)
    ctx.commit(name, txn_fn)


def devices(ctx: StageContext, name: str) -> None:
    src = ctx.src
    hidden = "hidden" if src.has_column("devices", "hidden") else "0"
    # hidden devices are Synapse's own records of cross-signing keys
    devices = src.rows("SELECT user_id, device_id, display_name, last_seen, ip,"
                       f" user_agent FROM devices WHERE {hidden} IS NULL OR NOT {hidden}")
    advance = ctx.progress.stage(name, len(devices))

    def txn_fn(txn: Txn) -> int:
        for part in chunks(devices, 500):
            for row in part:
                rows.insert_device_txn(txn, *row)
            advance(len(part))
        return len(devices)
    ctx.commit(name, txn_fn)


def access_tokens(ctx: StageContext, name: str) -> None:
    """Access and refresh tokens, stored as their hashes (Synapse keeps the
    tokens themselves): a client logged in to Synapse stays logged in."""
    src = ctx.src
    refresh = src.rows("SELECT id, user_id, device_id, token, next_token_id, expiry_ts,"
                       " ultimate_session_expiry_ts FROM refresh_tokens") \
        if src.has_table("refresh_tokens") else []
    puppets = "puppets_user_id" if src.has_column("access_tokens", "puppets_user_id") \
        else "NULL"
    used = "used" if src.has_column("access_tokens", "used") else "NULL"
    access = src.rows(f"SELECT user_id, device_id, token, valid_until_ms, {puppets},"
                      f" refresh_token_id, {used} FROM access_tokens")
    advance = ctx.progress.stage(name, len(access) + len(refresh))

    def txn_fn(txn: Txn) -> int:
        now = now_ms()
        ids: dict[int, int] = {}
        for rid, user_id, device_id, token, _next, expiry, ultimate in refresh:
            ids[int(rid)] = rows.insert_refresh_token_txn(
                txn, hash_token(token), user_id, device_id, expiry, ultimate, now)
        for rid, _u, _d, _t, next_id, _e, _x in refresh:
            if next_id is not None and int(next_id) in ids:
                rows.set_next_refresh_token_txn(txn, ids[int(rid)], ids[int(next_id)])
        advance(len(refresh))
        count = 0
        for user_id, device_id, token, valid_until, puppet, rid, was_used in access:
            if puppet:
                # an admin's token acting as another user: this server
                # has no such tokens; the admin logs in again
                ctx.report.skipped.append(f"puppet access token of {user_id}")
                continue
            rows.insert_access_token_txn(
                txn, hash_token(token), user_id, device_id, valid_until,
                ids.get(int(rid)) if rid is not None else None, bool(was_used), now)
            count += 1
        advance(len(access))
        return count
    ctx.commit(name, txn_fn)


def account_data(ctx: StageContext, name: str) -> None:
    src = ctx.src
    global_rows = src.rows("SELECT user_id, account_data_type, content FROM account_data")
    room_rows = src.rows("SELECT user_id, room_id, account_data_type, content"
                         " FROM room_account_data")
    advance = ctx.progress.stage(name, len(global_rows) + len(room_rows))

    def txn_fn(txn: Txn) -> int:
        for user_id, data_type, content in global_rows:
            AccountDataStore.put_account_data_txn(txn, user_id, "", data_type,
                                                  load_json(content))
        for user_id, room_id, data_type, content in room_rows:
            AccountDataStore.put_account_data_txn(txn, user_id, room_id, data_type,
                                                  load_json(content))
        advance(len(global_rows) + len(room_rows))
        return len(global_rows) + len(room_rows)
    ctx.commit(name, txn_fn)


def registration_tokens(ctx: StageContext, name: str) -> None:
    tokens = ctx.src.rows("SELECT token, uses_allowed, pending, completed, expiry_time"
                           " FROM registration_tokens") \
        if ctx.src.has_table("registration_tokens") else []
    advance = ctx.progress.stage(name, len(tokens))

    def txn_fn(txn: Txn) -> int:
        for row in tokens:
            rows.insert_registration_token_txn(txn, *row)
        advance(len(tokens))
        return len(tokens)
    ctx.commit(name, txn_fn)


def push_rules(ctx: StageContext, name: str) -> None:
    """Synapse's rules (``push_rules``: rule IDs ``global/<kind>/<id>``,
    a priority class per kind, class -1 for changed actions of a
    server-default rule) and their switches (``push_rules_enable``)."""
    src = ctx.src
    rules = src.rows("SELECT user_name, rule_id, priority_class, priority, conditions,"
                     " actions FROM push_rules ORDER BY user_name, priority_class,"
                     " priority")
    enables = src.rows("SELECT user_name, rule_id, enabled FROM push_rules_enable")
    advance = ctx.progress.stage(name, len(rules) + len(enables))
    push_rules = ctx.stores.push_rules

    def txn_fn(txn: Txn) -> int:
        users: set[str] = set()
        count = 0
        for user, full_id, pclass, priority, conditions, actions in rules:
            parsed = split_rule_id(str(full_id))
            if parsed is None:
                continue
            kind, rule_id = parsed
            user_id = ctx.user_id(str(user))
            users.add(user_id)
            if int(pclass) == -1 or DEFAULT_KIND_OF.get(rule_id) == kind:
                rows.set_default_rule_txn(txn, user_id, kind, rule_id, None,
                                          load_json(actions))
            else:
                conds = load_json(conditions) or []
                pattern = None
                if kind == "content":
                    pattern = next((c.get("pattern") for c in conds
                                    if isinstance(c, dict) and "pattern" in c), "")
                rows.insert_push_rule_txn(txn, user_id, kind, rule_id, int(priority),
                                          conds, pattern, load_json(actions))
            count += 1
        for user, full_id, enabled in enables:
            parsed = split_rule_id(str(full_id))
            if parsed is None or enabled is None:
                continue
            kind, rule_id = parsed
            user_id = ctx.user_id(str(user))
            users.add(user_id)
            if DEFAULT_KIND_OF.get(rule_id) == kind:
                rows.set_default_rule_txn(txn, user_id, kind, rule_id, bool(enabled), None)
            else:
                rows.enable_push_rule_txn(txn, user_id, kind, rule_id, bool(enabled))
        for user_id in sorted(users):
            # a version token and the m.push_rules account data, as any change
            push_rules._changed_txn(txn, user_id)
        advance(len(rules) + len(enables))
        return count
    ctx.commit(name, txn_fn)


def pushers(ctx: StageContext, name: str) -> None:
    """Pushers, starting from now: nothing imported is pushed again."""
    src = ctx.src
    device = "p.device_id" if src.has_column("pushers", "device_id") else "NULL"
    enabled = "p.enabled" if src.has_column("pushers", "enabled") else "NULL"
    pushers = src.rows(
        "SELECT p.user_name, COALESCE(" + device + ", t.device_id), p.kind, p.app_id,"
        " p.pushkey, p.app_display_name, p.device_display_name, p.profile_tag, p.lang,"
        " p.data, p.ts, " + enabled + " FROM pushers p"
        " LEFT JOIN access_tokens t ON t.id = p.access_token")
    advance = ctx.progress.stage(name, len(pushers))

    def txn_fn(txn: Txn) -> int:
        position = current_stream_id_txn(txn)
        count = 0
        for (user, device_id, kind, app_id, pushkey, app_name, device_name, tag, lang,
             data, ts, on) in pushers:
            if on is not None and not on:
                continue
            rows.insert_pusher_txn(txn, (
                ctx.user_id(str(user)), device_id, kind, app_id, pushkey, app_name,
                device_name, tag or None, lang or "en", json.dumps(load_json(data) or {}),
                int(ts or 0), position))
            count += 1
        advance(len(pushers))
        return count
    ctx.commit(name, txn_fn)
