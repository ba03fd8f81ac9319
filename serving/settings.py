"""Settings of the GraphQL API, read from ``EVENTRAY_*`` environment variables.

Kept beside the platform's :class:`~eventray.platform.settings.Settings` (addresses, log,
write path) because only the serving layer reads them. ``EVENTRAY_PROFILE=production`` turns
the development conveniences off and refuses a configuration that would re-enable them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from eventray.platform.errors import ConfigurationError

DEV_JWT_SECRET = "eventray-dev-secret-do-not-use-in-production"


class ServingSettings(BaseSettings):
    """Configuration of the GraphQL ingress (auth, limits, CORS, Serve options).

    Every field can be set with ``EVENTRAY_<FIELD>``; list fields take JSON
    (``EVENTRAY_CORS_ORIGINS='["https://app.example"]'``).
    """

    model_config = SettingsConfigDict(env_prefix="EVENTRAY_", extra="ignore", frozen=True)

    profile: Literal["dev", "production"] = "dev"

    # --- authentication ---
    allow_anonymous: bool | None = Field(
        default=None,
        description="let requests without a token read (never write); default: on in dev, off in production",
    )
    jwt_secret: str | None = Field(default=None, description="HS256 secret; dev default when unset in dev")
    jwt_public_key_file: Path | None = Field(default=None, description="PEM public key for RS256")
    jwks_file: Path | None = Field(default=None, description="JWKS JSON file with RS256 keys (by kid)")
    jwks_url: str | None = Field(default=None, description="an OAuth2 authorization server's JWKS endpoint; "
                                 "keys are fetched, cached and refreshed when a token names an unknown kid")
    jwks_cache_s: float = Field(default=300.0, gt=0, description="how long fetched JWKS keys are used before a refetch")
    jwks_refresh_min_s: float = Field(default=30.0, ge=0, description="at least this long between two refetches "
                                      "an unknown kid triggers")
    jwks_timeout_s: float = Field(default=5.0, gt=0)
    jwks_ca_file: Path | None = Field(
        default=None, description="PEM CA bundle the JWKS endpoint's certificate is checked against; unset means "
        "the system's trust store (an authorization server with a public certificate)")
    jwt_audience: str = "eventray"
    jwt_issuer: str | None = None
    jwt_leeway_s: int = Field(default=5, ge=0, le=300, description="clock skew allowed on exp/nbf/iat, seconds")
    jwt_scope_roles: dict[str, str] = Field(
        default={"eventray:admin": "admin", "eventray:teller": "teller", "eventray:customer": "customer"},
        description="OAuth2 scopes (the token's `scope` or `scp`) and the role each grants, for tokens without "
        "a `role` claim; the strongest granted role wins")

    # --- abuse limits ---
    rate_limit_per_s: float = Field(default=500.0, description="token-bucket refill per subject")
    rate_limit_burst: int = Field(default=1000, description="token-bucket size per subject")
    max_query_depth: int = 10
    max_query_cost: int = 5000
    max_page_size: int = 100
    max_batch_commands: int = 1000
    max_aliases: int = Field(default=30, ge=0, description="aliased fields per operation")
    max_operations: int = Field(default=5, ge=1, description="operations per GraphQL document")
    max_variables: int = Field(default=50, ge=0, description="variables per operation and per request")
    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024, description="request body limit; larger gets 413")
    request_timeout_s: float = Field(default=30.0, gt=0, description="time limit of one GraphQL request")
    max_subscriptions_per_subject: int = Field(default=16, ge=1, description="live subscriptions per caller "
                                               "and replica")
    operation_rate_limits: dict[str, float] = Field(
        default={"submitCommands": 20.0},
        description="per-subject requests per second of single root fields, beside the per-subject limit "
        "(burst: two seconds' worth)")

    # --- schema exposure ---
    introspection: bool | None = Field(default=None, description="schema introspection (and GraphiQL); "
                                       "default: on in dev, off in production, where on is refused")
    graphql_suggestions: bool | None = Field(default=None, description='"Did you mean ...?" in validation '
                                             "errors; default: on in dev, off in production")
    persisted_queries_file: Path | None = Field(
        default=None, description="a JSON object of sha256 hex -> query text: the persisted queries known in "
        "advance (automatic persisted queries add to them unless persisted_queries_only)")
    persisted_queries_only: bool | None = Field(
        default=None, description="accept only queries from persisted_queries_file, by hash; default: on in "
        "production when that file is set")

    # --- HTTP ---
    cors_origins: tuple[str, ...] = ("http://localhost:8000", "http://127.0.0.1:8000")
    gzip_min_size: int = 1024
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    https: bool = Field(
        default=False, description="serve the ingress over HTTPS only: Serve's proxy on http_port and the "
        "replicas' direct-ingress ports (which take Serve's HTTP options). Off in dev; production requires it")
    https_cert_file: Path | None = Field(
        default=None, description="the ingress's PEM certificate chain; unset: the dev CA's `ingress` leaf in "
        "the stack's tls_dir (`eventray dev certs`), issued when missing")
    https_key_file: Path | None = Field(default=None, description="the key of https_cert_file (PEM)")
    http_redirect_port: int | None = Field(
        default=None, ge=1, le=65535, description="with https: a plain-HTTP port that redirects GET and HEAD "
        "to the HTTPS ingress (308) and refuses everything else (403); unset: no plain-HTTP port at all")

    # --- Ray Serve ---
    app_name: str = Field(default="eventray", description="the Serve application; an app other than the "
                          "bundled bank gets its App name unless this is set")
    route_prefix: str = Field(default="/", description="where it answers; an app other than the bundled bank "
                              "gets /<App name> unless this is set")
    replicas: int = 1
    max_ongoing_requests: int = 1024
    read_pool_max: int = 8
    # autoscaling of the GraphQL deployment: on in production, fixed `replicas` in dev;
    # production defaults explained in eventray.serving.autoscaling
    graphql_autoscaling: bool | None = Field(default=None, description="default: on in production")
    graphql_min_replicas: int = Field(default=2, ge=0)
    graphql_max_replicas: int = Field(default=16, ge=1)
    graphql_target_ongoing_requests: float = Field(default=64.0, gt=0)
    graphql_upscale_delay_s: float = Field(default=30.0, ge=0)
    graphql_downscale_delay_s: float = Field(default=600.0, ge=0)
    graphql_metrics_interval_s: float = Field(default=10.0, gt=0)
    graphql_look_back_period_s: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _check_profile(self) -> ServingSettings:
        if self.http_redirect_port is not None:
            if not self.https:
                raise ConfigurationError(
                    "EVENTRAY_HTTP_REDIRECT_PORT redirects to HTTPS: set EVENTRAY_HTTPS=true too, or unset it")
            if self.http_redirect_port == self.http_port:
                raise ConfigurationError(
                    f"EVENTRAY_HTTP_REDIRECT_PORT={self.http_redirect_port} is the ingress's own port "
                    "(EVENTRAY_HTTP_PORT): give the redirect another one")
        if self.profile == "production":
            if self.allow_anonymous:
                raise ConfigurationError(
                    "EVENTRAY_ALLOW_ANONYMOUS=true is refused with EVENTRAY_PROFILE=production; unset it")
            if self.jwt_secret is not None:
                raise ConfigurationError(
                    "HS256 (EVENTRAY_JWT_SECRET) is refused with EVENTRAY_PROFILE=production; unset it and give "
                    "RS256 keys: EVENTRAY_JWKS_URL (an OAuth2 server), EVENTRAY_JWKS_FILE or "
                    "EVENTRAY_JWT_PUBLIC_KEY_FILE")
            if self.jwt_public_key_file is None and self.jwks_file is None and self.jwks_url is None:
                raise ConfigurationError(
                    "production needs RS256 keys: set EVENTRAY_JWKS_URL (an OAuth2 server), EVENTRAY_JWKS_FILE "
                    "or EVENTRAY_JWT_PUBLIC_KEY_FILE")
            if self.introspection:
                raise ConfigurationError(
                    "EVENTRAY_INTROSPECTION=true is refused with EVENTRAY_PROFILE=production; unset it")
            if self.jwks_url is not None and not self.jwks_url.startswith("https://"):
                raise ConfigurationError(
                    f"EVENTRAY_JWKS_URL={self.jwks_url!r} is not https; production fetches keys over TLS only")
        if self.jwks_ca_file is not None and not self.jwks_ca_file.is_file():
            raise ConfigurationError(
                f"EVENTRAY_JWKS_CA_FILE={self.jwks_ca_file} is not a readable file: give the PEM CA bundle that "
                "signed the JWKS endpoint's certificate, or unset it to use the system's trust store")
        if self.persisted_queries_only and self.persisted_queries_file is None:
            raise ConfigurationError(
                "EVENTRAY_PERSISTED_QUERIES_ONLY=true needs EVENTRAY_PERSISTED_QUERIES_FILE (sha256 -> query)")
        for role in self.jwt_scope_roles.values():
            if role not in ("admin", "teller", "customer"):
                raise ConfigurationError(
                    f"EVENTRAY_JWT_SCOPE_ROLES maps a scope to {role!r}; roles are admin, teller and customer")
        return self

    @property
    def introspection_on(self) -> bool:
        """Whether introspection (and the GraphiQL explorer) is served."""
        return self.introspection if self.introspection is not None else self.profile == "dev"

    @property
    def suggestions_on(self) -> bool:
        """Whether validation errors suggest field names."""
        if self.profile == "production":
            return False
        return self.graphql_suggestions if self.graphql_suggestions is not None else True

    @property
    def only_persisted_queries(self) -> bool:
        """Whether queries are accepted only by the hash of a known persisted query."""
        if self.persisted_queries_only is not None:
            return self.persisted_queries_only
        return self.profile == "production" and self.persisted_queries_file is not None

    @property
    def query_limits(self) -> Any:
        """The :class:`~eventray.serving.api.limits.QueryLimitSettings` of these settings."""
        from eventray.serving.api.limits import QueryLimitSettings

        return QueryLimitSettings(
            max_depth=self.max_query_depth, max_cost=self.max_query_cost, default_first=self.max_page_size,
            max_aliases=self.max_aliases, max_operations=self.max_operations, max_variables=self.max_variables)

    @property
    def autoscaling(self) -> dict[str, Any] | None:
        """Serve's autoscaling_config of the GraphQL deployment, or None for fixed replicas."""
        on = self.graphql_autoscaling if self.graphql_autoscaling is not None else self.profile == "production"
        if not on:
            return None
        from eventray.serving.autoscaling import autoscaling_config

        return autoscaling_config(
            prefix="EVENTRAY_GRAPHQL", min_replicas=self.graphql_min_replicas,
            max_replicas=self.graphql_max_replicas, target_ongoing_requests=self.graphql_target_ongoing_requests,
            upscale_delay_s=self.graphql_upscale_delay_s, downscale_delay_s=self.graphql_downscale_delay_s,
            metrics_interval_s=self.graphql_metrics_interval_s, look_back_period_s=self.graphql_look_back_period_s,
            strict=self.profile == "production")

    @property
    def anonymous_allowed(self) -> bool:
        """Whether requests without a token get read access (off in production)."""
        if self.allow_anonymous is None:
            return self.profile == "dev"
        return self.allow_anonymous and self.profile == "dev"

    @property
    def hs256_secret(self) -> str | None:
        """The HS256 secret (the dev default when unset); ``None`` in production: HS256 refused."""
        if self.profile == "production":
            return None
        return self.jwt_secret or DEV_JWT_SECRET

    def check_transport(self, settings: Any) -> None:
        """Refuse, in production, platform settings (``eventray.platform.settings.Settings``) whose
        Kafka or PostgreSQL traffic would be plaintext, and a plain-HTTP ingress; a
        :class:`ConfigurationError` names the setting."""
        if self.profile != "production":
            return
        if not settings.tls:
            raise ConfigurationError(
                "EVENTRAY_PROFILE=production refuses plaintext Kafka and PostgreSQL: set EVENTRAY_TLS=true with "
                "EVENTRAY_TLS_CA_FILE, EVENTRAY_TLS_CERT_FILE and EVENTRAY_TLS_KEY_FILE")
        from urllib.parse import parse_qs, urlsplit

        url = settings.database_url or ""
        modes = parse_qs(urlsplit(url).query).get("sslmode", []) if "://" in url else []
        mode = modes[0] if modes else None
        if mode is not None and mode != "verify-full":
            raise ConfigurationError(
                f"EVENTRAY_DATABASE_URL sets sslmode={mode}; production needs verify-full (remove sslmode from "
                "the URL: EVENTRAY_TLS adds it)")
        if not self.https:
            raise ConfigurationError(
                "EVENTRAY_PROFILE=production refuses a plain-HTTP ingress: set EVENTRAY_HTTPS=true with "
                "EVENTRAY_HTTPS_CERT_FILE and EVENTRAY_HTTPS_KEY_FILE")

    @property
    def hsts(self) -> bool:
        """Whether answers carry HSTS: in production only (a browser would remember it for localhost)."""
        return self.profile == "production"

    @property
    def base_url(self) -> str:
        """Where the app answers through Serve's proxy (https when ``https``), without a trailing slash."""
        scheme = "https" if self.https else "http"
        return f"{scheme}://{self.http_host}:{self.http_port}{self.route_prefix.rstrip('/')}"

    def ingress_tls(self, settings: Any) -> tuple[Path, Path] | None:
        """``(certificate, key)`` the ingress serves HTTPS with, or None when ``https`` is off.

        Without ``https_cert_file``/``https_key_file`` the dev CA of ``settings`` (the platform
        settings) issues the ``ingress`` leaf when it is missing or expiring.

        Raises:
            ConfigurationError: one of the two files is set without the other, or is missing.
        """
        if not self.https:
            return None
        if (self.https_cert_file is None) != (self.https_key_file is None):
            raise ConfigurationError("set both EVENTRAY_HTTPS_CERT_FILE and EVENTRAY_HTTPS_KEY_FILE, or neither "
                                     "(the dev CA then issues the ingress certificate)")
        if self.https_cert_file is None or self.https_key_file is None:
            from eventray.platform.devstack import certs

            certs.ensure_for(settings)
            return settings.tls_dir / "ingress.crt", settings.tls_dir / "ingress.key"
        for name, path in (("EVENTRAY_HTTPS_CERT_FILE", self.https_cert_file),
                           ("EVENTRAY_HTTPS_KEY_FILE", self.https_key_file)):
            if not path.is_file():
                raise ConfigurationError(f"{name}={path}: no such file")
        return self.https_cert_file, self.https_key_file

    def for_app(self, rt: Any) -> ServingSettings:
        """These settings for the app of ``rt``: an app other than the bundled bank gets a Serve
        application and a route of its own (``<name>``, ``/<name>``) unless they were set, so several
        apps share one Ray cluster without replacing each other."""
        from eventray.platform.settings import DEFAULT_APP

        if rt.settings.app == DEFAULT_APP:
            return self
        update = {k: v for k, v in (("app_name", rt.app.name), ("route_prefix", f"/{rt.app.name}"))
                  if k not in self.model_fields_set}
        return self.model_copy(update=update) if update else self
