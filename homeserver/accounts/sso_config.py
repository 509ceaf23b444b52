"""The identity providers and JWT login, read from the configuration.

``config.py`` declares the keys (Synapse's names: ``oidc_providers``,
``jwt_config``, ``sso``); this turns them into typed values at load time, so
a bad template, a duplicate ``idp_id`` or a provider with no way to reach its
endpoints stops the server with one line naming the key, before anyone tries
to sign in.

Templates (``localpart_template``, ``display_name_template``,
``email_template``, ``subject_template``) are Jinja2, as on Synapse, compiled
in Jinja's sandbox: an operator's template sees the provider's claims as
``user`` and nothing of the server.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from typing import Any

# idp_id: Synapse's grammar (it is a URL path segment)
_IDP_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_~")


def _error(message: str) -> Exception:
    from homeserver.config import ConfigError
    return ConfigError(message)


@cache
def _templates() -> Any:
    # Jinja2 loads only when a provider has a template (most servers have none)
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(autoescape=False)


def _template(source: str | None, path: str) -> Any:
    if source is None:
        return None
    from jinja2 import TemplateSyntaxError

    try:
        return _templates().from_string(source)
    except TemplateSyntaxError as e:
        raise _error(f"{path}: not a valid template: {e.message}") from None


def render(template: Any, claims: dict[str, Any]) -> str:
    """A template applied to the provider's claims ("" when it names a claim
    the provider did not send, or fails)."""
    try:
        return str(template.render(user=claims)).strip()
    except Exception:  # a template error is the template's, not the server's
        return ""


@dataclass(frozen=True)
class AttributeRequirement:
    attribute: str
    # the claim must be one of these (or, for a list claim, contain one)
    values: tuple[str, ...]

    def satisfied_by(self, claims: dict[str, Any]) -> bool:
        value = claims.get(self.attribute)
        if isinstance(value, list):
            return any(isinstance(v, str) and v in self.values for v in value)
        return isinstance(value, str) and value in self.values


@dataclass(frozen=True)
class OidcProvider:
    """One entry of ``oidc_providers``."""

    idp_id: str
    idp_name: str
    idp_icon: str | None
    idp_brand: str | None
    issuer: str
    discover: bool
    client_id: str
    client_secret: str | None
    client_auth_method: str
    pkce_method: str
    scopes: tuple[str, ...]
    authorization_endpoint: str | None
    token_endpoint: str | None
    userinfo_endpoint: str | None
    jwks_uri: str | None
    skip_verification: bool
    user_profile_method: str
    allow_existing_users: bool
    enable_registration: bool
    id_token_algorithms: tuple[str, ...]
    additional_authorization_parameters: dict[str, str]
    subject_claim: str
    subject_template: Any
    picture_claim: str
    localpart_template: Any
    display_name_template: Any
    email_template: Any
    confirm_localpart: bool
    attribute_requirements: tuple[AttributeRequirement, ...]
    backchannel_logout_enabled: bool = False
    # log out the session's devices whoever the token's sub is
    backchannel_logout_ignore_sub: bool = False

    @property
    def uses_openid(self) -> bool:
        """An OpenID Connect sign-in (an ID token) rather than plain OAuth 2.0."""
        return "openid" in self.scopes

    def subject(self, claims: dict[str, Any]) -> str | None:
        if self.subject_template is not None:
            return render(self.subject_template, claims) or None
        value = claims.get(self.subject_claim)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return str(value) or None
        return None

    def to_client(self) -> dict[str, str]:
        """The provider as ``GET /login`` lists it in ``identity_providers``."""
        body = {"id": self.idp_id, "name": self.idp_name}
        if self.idp_icon is not None:
            body["icon"] = self.idp_icon
        if self.idp_brand is not None:
            body["brand"] = self.idp_brand
        return body


@dataclass(frozen=True)
class JwtLogin:
    """``jwt_config``, when enabled."""

    secret: str
    algorithm: str
    subject_claim: str
    display_name_claim: str | None
    issuer: str | None
    audiences: tuple[str, ...]


CAS_IDP_ID = "cas"


@dataclass(frozen=True)
class CasProvider:
    """``cas_config``, when enabled (its idp_id is "cas", as on Synapse)."""

    server_url: str
    idp_name: str
    idp_icon: str | None
    idp_brand: str | None
    displayname_attribute: str | None
    # attribute -> required value (None: the attribute must only be present)
    required_attributes: dict[str, str | None]
    protocol_version: int | None
    enable_registration: bool
    idp_id: str = CAS_IDP_ID

    def to_client(self) -> dict[str, str]:
        body = {"id": self.idp_id, "name": self.idp_name}
        if self.idp_icon is not None:
            body["icon"] = self.idp_icon
        if self.idp_brand is not None:
            body["brand"] = self.idp_brand
        return body


@dataclass(frozen=True)
class SsoConfig:
    providers: tuple[OidcProvider, ...]
    client_whitelist: tuple[str, ...]
    jwt: JwtLogin | None
    cas: CasProvider | None = None

    @property
    def sso_enabled(self) -> bool:
        return bool(self.providers) or self.cas is not None

    @property
    def identity_providers(self) -> tuple[OidcProvider | CasProvider, ...]:
        """Every provider, as ``GET /login`` lists them (CAS first, as Synapse)."""
        return ((self.cas,) if self.cas is not None else ()) + self.providers

    def provider(self, idp_id: str) -> OidcProvider | None:
        for p in self.providers:
            if p.idp_id == idp_id:
                return p
        return None

    def provider_name(self, idp_id: str) -> str:
        for p in self.identity_providers:
            if p.idp_id == idp_id:
                return p.idp_name
        return idp_id


def _provider(raw: dict[str, Any], path: str, config_dir: str) -> OidcProvider:
    idp_id = raw["idp_id"]
    if not (1 <= len(idp_id) <= 250 and set(idp_id) <= _IDP_ID_CHARS):
        raise _error(f"{path}.idp_id: must be 1 to 250 of the characters A-Z a-z 0-9 . - _ ~")
    # as Synapse: "oidc-" + idp_id, except the default "oidc", so that the
    # user_external_ids rows of a migrated Synapse still match
    if idp_id != "oidc":
        idp_id = "oidc-" + idp_id
    secret = raw["client_secret"]
    if secret is None and raw["client_secret_path"] is not None:
        try:
            with open(os.path.join(config_dir, raw["client_secret_path"]),
                      encoding="utf-8") as f:
                secret = f.read().strip()
        except OSError as e:
            raise _error(f"{path}.client_secret_path: cannot read: {e.strerror}") from None
    method = raw["client_auth_method"]
    if method != "none" and not secret:
        raise _error(f"{path}.client_secret: must be set for client_auth_method {method}")
    if not raw["discover"]:
        needed = ["authorization_endpoint", "token_endpoint"]
        if "openid" in raw["scopes"]:
            needed.append("jwks_uri")
        else:
            needed.append("userinfo_endpoint")
        for name in needed:
            if not raw[name]:
                raise _error(f"{path}.{name}: must be set when discover is false")
    for name in ("issuer", "authorization_endpoint", "token_endpoint", "userinfo_endpoint",
                 "jwks_uri"):
        url = raw[name]
        if url and not raw["skip_verification"] and not url.startswith("https://"):
            raise _error(f"{path}.{name}: must be https (skip_verification allows http, "
                         "for testing)")
    module = (raw["user_mapping_provider"] or {}).get("module")
    if module not in (None, "synapse.handlers.oidc.JinjaOidcMappingProvider"):
        raise _error(f"{path}.user_mapping_provider.module: custom mapping modules are not "
                     "supported; use the templates of user_mapping_provider.config")
    mapping = (raw["user_mapping_provider"] or {}).get("config") or {}
    where = f"{path}.user_mapping_provider.config"
    requirements = []
    for i, req in enumerate(raw["attribute_requirements"]):
        values = tuple(req["one_of"] or ()) + ((req["value"],) if req["value"] is not None
                                               else ())
        if not values:
            raise _error(f"{path}.attribute_requirements[{i}]: needs value or one_of")
        requirements.append(AttributeRequirement(req["attribute"], values))
    extra = raw["additional_authorization_parameters"] or {}
    for k, v in extra.items():
        if not isinstance(v, str):
            raise _error(f"{path}.additional_authorization_parameters.{k}: must be a string")
    return OidcProvider(
        idp_id=idp_id,
        idp_name=raw["idp_name"] or "OIDC",
        idp_icon=raw["idp_icon"],
        idp_brand=raw["idp_brand"],
        issuer=raw["issuer"],
        discover=raw["discover"],
        client_id=raw["client_id"],
        client_secret=secret,
        client_auth_method=method,
        pkce_method=raw["pkce_method"],
        scopes=tuple(raw["scopes"]),
        authorization_endpoint=raw["authorization_endpoint"],
        token_endpoint=raw["token_endpoint"],
        userinfo_endpoint=raw["userinfo_endpoint"],
        jwks_uri=raw["jwks_uri"],
        skip_verification=raw["skip_verification"],
        user_profile_method=raw["user_profile_method"],
        allow_existing_users=raw["allow_existing_users"],
        enable_registration=raw["enable_registration"],
        id_token_algorithms=tuple(raw["id_token_signing_alg_values_supported"] or ("RS256",)),
        additional_authorization_parameters=dict(extra),
        subject_claim=mapping.get("subject_claim") or "sub",
        subject_template=_template(mapping.get("subject_template"),
                                   f"{where}.subject_template"),
        picture_claim=mapping.get("picture_claim") or "picture",
        localpart_template=_template(mapping.get("localpart_template"),
                                     f"{where}.localpart_template"),
        display_name_template=_template(mapping.get("display_name_template"),
                                        f"{where}.display_name_template"),
        email_template=_template(mapping.get("email_template"), f"{where}.email_template"),
        confirm_localpart=bool(mapping.get("confirm_localpart")),
        attribute_requirements=tuple(requirements),
        backchannel_logout_enabled=raw["backchannel_logout_enabled"],
        backchannel_logout_ignore_sub=raw["backchannel_logout_ignore_sub"],
    )


_HMAC = ("HS256", "HS384", "HS512")
_PUBLIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
           "EdDSA")


def _jwt(raw: dict[str, Any]) -> JwtLogin | None:
    if not raw["enabled"]:
        return None
    if not raw["secret"]:
        raise _error("jwt_config.secret: must be set when jwt_config is enabled")
    algorithm = raw["algorithm"]
    if algorithm not in _HMAC + _PUBLIC:
        raise _error(f"jwt_config.algorithm: must be one of {', '.join(_HMAC + _PUBLIC)}")
    return JwtLogin(raw["secret"], algorithm, raw["subject_claim"], raw["display_name_claim"],
                    raw["issuer"], tuple(raw["audiences"] or ()))


def _cas(raw: dict[str, Any]) -> CasProvider | None:
    if not raw["enabled"]:
        return None
    if not raw["server_url"]:
        raise _error("cas_config.server_url: must be set when cas_config is enabled")
    required: dict[str, str | None] = {}
    for name, value in (raw["required_attributes"] or {}).items():
        if value is not None and not isinstance(value, str):
            raise _error(f"cas_config.required_attributes.{name}: must be a string or null")
        required[str(name)] = value
    return CasProvider(raw["server_url"].rstrip("/"), raw["idp_name"] or "CAS",
                       raw["idp_icon"], raw["idp_brand"], raw["displayname_attribute"],
                       required, raw["protocol_version"], raw["enable_registration"])


def load_sso_config(raw: dict[str, Any], config_dir: str = ".") -> SsoConfig:
    """The checked ``oidc_providers``, ``sso`` and ``jwt_config``; ConfigError
    naming the key otherwise."""
    providers = []
    seen: set[str] = set()
    for i, p in enumerate(raw["oidc_providers"]):
        provider = _provider(p, f"oidc_providers[{i}]", config_dir)
        if provider.idp_id in seen:
            raise _error(f"oidc_providers[{i}].idp_id: {provider.idp_id} is used twice")
        seen.add(provider.idp_id)
        providers.append(provider)
    if raw["sso"]["update_profile_information"]:
        raise _error("sso.update_profile_information: not supported by this server")
    # (OIDC ids are "oidc" or "oidc-...": never CAS's "cas")
    cas = _cas(raw["cas_config"])
    return SsoConfig(tuple(providers), tuple(raw["sso"]["client_whitelist"]),
                     _jwt(raw["jwt_config"]), cas)
