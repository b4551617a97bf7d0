"""identity's composition root: settings, telemetry, Redis, the registry and notify clients, keys, routes."""

from __future__ import annotations

import redis.asyncio as aioredis
from fastapi import FastAPI
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider

from shared.redis_client import make_redis
from shared.service_kit import build_service_app, closing
from shared.sessions import SESSION_VERIFIER_STATE, SessionVerifier, StaticKeys
from shared.telemetry import make_tracer_provider

from .adapters import MobileRegistryClient, NotifyCodeTexter
from .adapters_codes import SignInCodes
from .adapters_keys import SigningKeys
from .adapters_sessions import SessionStore
from .adapters_throttle import Throttle
from .domain import CodePolicy
from .problems_api import PROBLEMS
from .service import Budgets, Identity
from .sessions_api import keys_router
from .sessions_api import router as sessions_router
from .settings import IdentitySettings
from .signin_api import router as signin_router

SERVICE_NAME = "identity"


def signing_keys(settings: IdentitySettings) -> SigningKeys:
    """The keys of the file, or (local and test runs only; the settings refuse it elsewhere) a key made now."""
    if settings.signing_keys_file is None:
        return SigningKeys.ephemeral()
    return SigningKeys.from_file(settings.signing_keys_file, settings.active_kid)


def create_app(settings: IdentitySettings | None = None, *, tracer_provider: TracerProvider | None = None) -> FastAPI:
    """Build identity: no bus and no database; Redis holds codes, sessions and the revocation marks."""
    settings = settings or IdentitySettings()
    provider = tracer_provider or make_tracer_provider(SERVICE_NAME, deployment=settings.deployment)
    redis = make_redis(settings.redis.url)
    keys = signing_keys(settings)
    registry = MobileRegistryClient(
        settings.registry_url, timeout_s=settings.registry_timeout_s, attempts=settings.registry_attempts
    )
    texter = NotifyCodeTexter(
        settings.notify_url, internal_key=settings.notify_key.get_secret_value(), timeout_s=settings.notify_timeout_s
    )
    for client in (registry.http, texter.http):
        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider)
    # identity checks its own tokens (sign-out) with the keys it holds, not over HTTP.
    verifier = SessionVerifier(StaticKeys(keys.public_key_set()), redis, leeway_s=settings.sessions.leeway_s)
    return build_service_app(
        service=SERVICE_NAME,
        title="Khedmat identity",
        description="Sign-in by the mobile registered under your national ID, and sessions you can end (ورود).",
        version=settings.deployment.service_version,
        http=settings.http,
        tracer_provider=provider,
        routers=[signin_router, sessions_router, keys_router],
        parts=[
            closing("redis", redis.aclose),
            closing("registry client", registry.aclose),
            closing("notify client", texter.aclose),
        ],
        redis=redis,
        failures=PROBLEMS,
        state={
            "identity": _identity(settings, redis=redis, keys=keys, registry=registry, texter=texter),
            "signing_keys": keys,
            SESSION_VERIFIER_STATE: verifier,
        },
    )


def _identity(
    settings: IdentitySettings,
    *,
    redis: aioredis.Redis,
    keys: SigningKeys,
    registry: MobileRegistryClient,
    texter: NotifyCodeTexter,
) -> Identity:
    """The use cases' dependencies."""
    hash_key = settings.hash_key.get_secret_value().encode()
    policy = CodePolicy(
        ttl_s=settings.code_ttl_s, resend_after_s=settings.code_resend_after_s, max_tries=settings.code_max_tries
    )
    return Identity(
        registry=registry,
        texter=texter,
        codes=SignInCodes(redis, key=hash_key, policy=policy),
        # A revoked session's mark outlives its last access token, leeway included.
        sessions=SessionStore(redis, revoked_ttl_s=settings.access_token_ttl_s + settings.sessions.leeway_s + 60),
        keys=keys,
        throttle=Throttle(redis),
        budgets=Budgets(
            sign_in_per_client=Throttle.budget("sign-in-client", settings.sign_in_limit_per_client),
            sign_in_per_citizen=Throttle.budget("sign-in-citizen", settings.sign_in_limit_per_national_id),
            verify_per_client=Throttle.budget("verify-client", settings.verify_limit_per_client),
        ),
        hash_key=hash_key,
        access_token_ttl_s=settings.access_token_ttl_s,
        session_lifetime_s=settings.session_lifetime_s,
    )
