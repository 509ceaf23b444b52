"""oidc_providers, cas_config, sso and jwt_config are checked at load: a
mistake stops the server with one line naming the key."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.config import ConfigError, build_config


def load(**extra: Any) -> Any:
    return build_config({"server_name": "example.org",
                         "database": {"name": "sqlite3", "args": {"database": "x.db"}},
                         **extra})


def provider(**extra: Any) -> dict[str, Any]:
    return {"idp_id": "kc", "issuer": "https://sso.example.org/realms/x",
            "client_id": "matrix", "client_secret": "s", **extra}


def test_a_provider_loads_with_synapses_defaults() -> None:
    sso = load(oidc_providers=[provider(user_mapping_provider={"config": {
        "localpart_template": "{{ user.preferred_username }}"}})]).sso_config
    p = sso.providers[0]
    assert p.idp_id == "oidc-kc"
    assert (p.scopes, p.client_auth_method, p.pkce_method, p.discover) == (
        ("openid",), "client_secret_basic", "auto", True)
    assert p.subject({"sub": "abc"}) == "abc"
    assert sso.sso_enabled and sso.jwt is None and sso.cas is None


@pytest.mark.parametrize("extra,message", [
    ({"client_secret": None}, "oidc_providers[0].client_secret: must be set"),
    ({"issuer": "http://sso.example.org"}, "oidc_providers[0].issuer: must be https"),
    ({"discover": False}, "oidc_providers[0].authorization_endpoint: must be set"),
    ({"user_mapping_provider": {"config": {"localpart_template": "{{ user.x "}}},
     "localpart_template: not a valid template"),
    ({"user_mapping_provider": {"module": "my.Mapper"}}, "custom mapping modules"),
    ({"idp_id": "has space"}, "oidc_providers[0].idp_id: must be"),
    ({"attribute_requirements": [{"attribute": "groups"}]}, "needs value or one_of"),
    ({"client_auth_method": "private_key_jwt"}, "client_auth_method: must be one of"),
])
def test_provider_mistakes_name_the_key(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load(oidc_providers=[provider(**extra)])


def test_two_providers_may_not_share_an_id() -> None:
    with pytest.raises(ConfigError, match="oidc-kc is used twice"):
        load(oidc_providers=[provider(), provider()])


def test_a_sandboxed_template_cannot_reach_the_server() -> None:
    p = load(oidc_providers=[provider(user_mapping_provider={"config": {
        "localpart_template": "{{ user.__class__.__mro__[1].__subclasses__() }}"}})]
    ).sso_config.providers[0]
    from homeserver.accounts.sso_config import render
    assert render(p.localpart_template, {"preferred_username": "x"}) == ""


@pytest.mark.parametrize("extra,message", [
    ({"jwt_config": {"enabled": True}}, "jwt_config.secret: must be set"),
    ({"jwt_config": {"enabled": True, "secret": "s", "algorithm": "none"}},
     "jwt_config.algorithm: must be one of"),
    ({"cas_config": {"enabled": True}}, "cas_config.server_url: must be set"),
    ({"sso": {"update_profile_information": True}}, "not supported"),
])
def test_jwt_cas_and_sso_mistakes(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(**extra)
