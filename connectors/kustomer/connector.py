"""The Kustomer connector: regions, OAuth endpoints, the operation -> role table, resource backends."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import httpx

from connectors.errors import ConfigurationError
from connectors.kustomer.client import KustomerClient, resolve_base_url
from connectors.kustomer.roles import KUSTOMER_OPERATIONS, OFFLINE_ACCESS
from connectors.runtime.auth import OAuthClientConfig
from connectors.runtime.connector import AuthType, Connector, FieldsBackend, Operation, ResourceBackend
from connectors.runtime.session import Identity, Session

if TYPE_CHECKING:
    from connectors.settings import Settings

__all__ = ["KustomerConnector"]

_KUSTOMER_SUFFIX = ".kustomerapp.com"


def _is_kustomer_host(base_url: str) -> bool:
    host = httpx.URL(base_url).host
    return host == "kustomerapp.com" or host.endswith(_KUSTOMER_SUFFIX)


class KustomerConnector(Connector):
    """Kustomer through unified models (API key or OAuth 2.0 with PKCE)."""

    id: ClassVar[str] = "kustomer"
    display_name: ClassVar[str] = "Kustomer"
    auth_types: ClassVar[frozenset[AuthType]] = frozenset({"api_key", "oauth2"})
    #: Kustomer's REST API lives under /v1 (and /v2 for a few endpoints); nothing else on the host is proxied.
    proxy_path_prefixes: ClassVar[tuple[str, ...]] = ("/v1/", "/v2/")

    @classmethod
    def operations(cls) -> Mapping[str, Operation]:
        """Every Kustomer operation and the roles it needs (see :mod:`connectors.kustomer.roles`)."""
        return KUSTOMER_OPERATIONS

    @classmethod
    def resolve_base_url(cls, *, region: str | None, org: str | None, base_url: str | None) -> str:
        """``base_url``, else ``https://<org>.api.kustomerapp.com``, else the region's host."""
        return resolve_base_url(region=region, org=org, base_url=base_url)

    @classmethod
    def oauth_client(
        cls,
        settings: Settings,
        *,
        region: str | None,
        org: str | None,
        base_url: str | None,
        override: Mapping[str, Any] | None = None,
    ) -> OAuthClientConfig:
        """The OAuth client: a per-tenant ``override`` or the deployment's ``KUSTOMER_CLIENT_ID``.

        Endpoints (kustomer-api.md §1.5): ``https://<org>.kustomerapp.com/oauth/authorize`` and
        ``https://<org>.api.kustomerapp.com/oauth/token``; a non-Kustomer ``base_url`` (the sandbox) serves
        both under itself. ``KUSTOMER_OAUTH_AUTHORIZE_URL`` / ``_TOKEN_URL`` override them (the hosts are
        UNCONFIRMED in Kustomer's docs).

        Raises:
            ConfigurationError: no client id, or no org to build the endpoints from.
        """
        ks = settings.kustomer
        if override:
            client_id = str(override.get("client_id") or override.get("clientId") or "")
            secret = override.get("client_secret") or override.get("clientSecret")
            client_secret = str(secret) if secret else None
        else:
            client_id = ks.client_id or ""
            client_secret = ks.client_secret.get_secret_value() if ks.client_secret else None
        if not client_id:
            raise ConfigurationError(
                "OAuth needs a Kustomer OAuth client: set KUSTOMER_CLIENT_ID (and KUSTOMER_CLIENT_SECRET) or pass "
                "oauth_client={'client_id': ..., 'client_secret': ...}"
            )
        base = resolve_base_url(region=region, org=org, base_url=base_url)
        authorize_url = ks.authorize_url
        token_url = ks.token_url
        if not (authorize_url and token_url):
            if not _is_kustomer_host(base):
                authorize_url = authorize_url or f"{base}/oauth/authorize"
                token_url = token_url or f"{base}/oauth/token"
            elif org:
                authorize_url = authorize_url or f"https://{org}.kustomerapp.com/oauth/authorize"
                token_url = token_url or f"https://{org}.api.kustomerapp.com/oauth/token"
            else:
                raise ConfigurationError(
                    "Kustomer's OAuth endpoints are per org: pass org='<your org subdomain>' "
                    "(or set KUSTOMER_OAUTH_AUTHORIZE_URL and KUSTOMER_OAUTH_TOKEN_URL)"
                )
        return OAuthClientConfig(
            client_id=client_id,
            client_secret=client_secret,
            authorize_url=authorize_url,
            token_url=token_url,
            auth_method="client_secret_post" if client_secret else "none",
        )

    @classmethod
    def oauth_scopes(cls, operations: Iterable[str], settings: Settings) -> tuple[str, ...]:
        """Role strings the operations need, plus ``offline_access`` when refresh tokens are wanted."""
        scopes = list(cls.roles_for(operations))
        if settings.kustomer.offline_access:
            scopes.append(OFFLINE_ACCESS)
        return tuple(scopes)

    @classmethod
    def granted_from_scopes(cls, scopes: Iterable[str]) -> tuple[str, ...]:
        """The roles in a token response's ``scope`` (``offline_access`` is not a role)."""
        return tuple(sorted(s for s in scopes if s != OFFLINE_ACCESS))

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        record = session.record
        settings = session.settings.kustomer
        budget = record.metadata.get("orgId") or record.org or None
        self.client = KustomerClient(
            auth=session.auth,
            region=record.region,
            org=record.org,
            base_url=record.base_url,
            transport=session.transport,
            limiter=session.limiter,
            budget_key=budget,
            rate_limit=settings.rate_limit,
            search_limit=settings.search_limit,
            rate_window=settings.rate_window,
        )
        self._backends: dict[str, ResourceBackend] = {}

    @property
    def http(self) -> httpx.AsyncClient:
        """The authenticated client (used by the proxy)."""
        return self.client.http

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.client.aclose()

    async def identify(self) -> Identity:
        """``GET /v1/auth/tokens/current`` (roles, org) and ``GET /v1/users/current`` (the user)."""
        token = await self.client.current_token()
        attrs = token.get("attributes") or {}
        rels = token.get("relationships") or {}
        org_id = ((rels.get("org") or {}).get("data") or {}).get("id")
        user_id = ((rels.get("user") or {}).get("data") or {}).get("id")
        roles = attrs.get("roles")
        user_name = user_email = None
        try:
            user = await self.client.current_user()
        except Exception:
            user = {}
        user_attrs = user.get("attributes") or {}
        user_id = user.get("id") or user_id
        user_name = user_attrs.get("displayName") or user_attrs.get("name")
        user_email = user_attrs.get("email")
        org_name = attrs.get("orgName") or self.session.record.org
        return Identity(
            org_id=str(org_id) if org_id else None,
            org_name=str(org_name) if org_name else None,
            user_id=str(user_id) if user_id else None,
            user_name=user_name,
            user_email=user_email,
            granted_roles=tuple(sorted(str(r) for r in roles)) if isinstance(roles, list) else None,
            credential_name=attrs.get("name"),
        )

    def resource_backend(self, model: str) -> ResourceBackend:
        """The backend of ``model`` (customers, companies, users, teams, conversations or KObjects)."""
        backend = self._backends.get(model)
        if backend is None:
            from connectors.kustomer.resources import backend_for

            backend = self._backends[model] = backend_for(self, model)
        return backend

    def bulk_backend(self, model: str) -> Any:
        """Bulk upserts through ``/v1/<collection>/bulk`` (see :mod:`connectors.kustomer.bulk`)."""
        from connectors.kustomer.bulk import bulk_backend_for

        return bulk_backend_for(self, model)

    def webhook_backend(self) -> Any:
        """Outbound webhooks, signature checks and event normalisation (see :mod:`connectors.kustomer.webhooks`)."""
        from connectors.kustomer.webhooks import KustomerWebhooks

        return KustomerWebhooks(self)

    def fields_backend(self, model: str) -> FieldsBackend:
        """Field definitions from ``/v1/metadata/{resource}``."""
        from connectors.kustomer.fields import KustomerFields

        return KustomerFields(self, model)
