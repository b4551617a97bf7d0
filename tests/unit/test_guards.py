"""The pure parts of intake's guards: fingerprints, key validation, retry-after, national ID digests, settings."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from redis.asyncio.retry import Retry

from services.intake.adapters_guards import (
    IdempotencyStore,
    InvalidIdempotencyKey,
    RateLimits,
    canonical_json,
    fingerprint,
    national_id_digest,
    validate_idempotency_key,
)
from services.intake.settings import DEV_RATE_LIMIT_KEY, IntakeSettings
from shared.rate_limits import parse_limits, retry_after_s
from shared.redis_client import REDIS_CONNECT_TIMEOUT_S, REDIS_SOCKET_TIMEOUT_S, make_redis
from shared.settings import DeploymentSettings

BODY = {
    "service_id": "birth-certificate-duplicate",
    "applicant": {"national_id": "0012345679", "mobile": "09121234567", "birth_date": "1951-03-20"},
    "fields": {"reason": "lost"},
}


def test_fingerprint_ignores_key_order_and_whitespace() -> None:
    reordered = {
        "fields": {"reason": "lost"},
        "applicant": {"birth_date": "1951-03-20", "mobile": "09121234567", "national_id": "0012345679"},
        "service_id": "birth-certificate-duplicate",
    }
    spaced = b"""{ "applicant" : {"national_id": "0012345679",  "mobile": "09121234567",
                  "birth_date": "1951-03-20"},
                  "fields": {"reason": "lost"}, "service_id": "birth-certificate-duplicate" }"""
    assert fingerprint(BODY) == fingerprint(reordered) == fingerprint(spaced)


def test_fingerprint_is_the_sha256_of_the_canonical_json() -> None:
    canonical = canonical_json({"b": 1, "a": ["x", "ی"]})
    assert canonical == '{"a":["x","ی"],"b":1}'.encode()
    assert fingerprint({"b": 1, "a": ["x", "ی"]}) == hashlib.sha256(canonical).hexdigest()


@pytest.mark.parametrize(
    "other",
    [
        {**BODY, "fields": {"reason": "stolen"}},
        {**BODY, "applicant": {**BODY["applicant"], "national_id": "0012345687"}},  # type: ignore[dict-item]
        {**BODY, "documents": {}},
        {k: v for k, v in BODY.items() if k != "fields"},
    ],
)
def test_different_bodies_have_different_fingerprints(other: dict[str, object]) -> None:
    assert fingerprint(other) != fingerprint(BODY)


def test_a_body_that_is_not_json_is_refused() -> None:
    with pytest.raises(ValueError):
        fingerprint(b"not json")


@pytest.mark.parametrize("key", ["a", "8e03978e-40d5-43e8-bc93-6894a57f9324", "x" * 128, "with space", "~!@#$%^&*()"])
def test_printable_ascii_keys_up_to_128_characters_are_accepted(key: str) -> None:
    assert validate_idempotency_key(key) == key
    assert IdempotencyStore.redis_key(key) == f"khedmat:idem:{key}"


@pytest.mark.parametrize("key", ["", "x" * 129, "tab\there", "new\nline", "nul\x00", "کلید", "caf\u00e9", "\x7f"])
def test_other_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidIdempotencyKey):
        validate_idempotency_key(key)


@pytest.mark.parametrize(
    ("reset_at", "now", "expected"),
    [(100.0, 40.0, 60), (100.0, 99.2, 1), (100.0, 98.5, 2), (100.0, 100.0, 1), (100.0, 130.0, 1), (100.0, 99.0, 1)],
)
def test_retry_after_rounds_up_and_is_at_least_one_second(reset_at: float, now: float, expected: int) -> None:
    assert retry_after_s(reset_at, now) == expected


def test_the_national_id_digest_is_keyed_and_hides_the_id() -> None:
    digest = national_id_digest("0012345679", b"k1")
    assert "0012345679" not in digest
    assert len(digest) == 64
    assert digest != national_id_digest("0012345679", b"k2")
    assert digest != national_id_digest("0012345687", b"k1")


def test_the_national_id_digest_is_the_same_for_every_way_of_typing_it() -> None:
    digest = national_id_digest("0012345679", b"k")
    assert national_id_digest("۰۰۱۲۳۴۵۶۷۹", b"k") == digest
    assert national_id_digest("001-234567-9", b"k") == digest
    # An invalid ID is still counted, with its digits normalised.
    assert national_id_digest("۱۲۳", b"k") == national_id_digest("123", b"k")


def test_limit_strings_parse_one_or_several() -> None:
    assert [str(item) for item in parse_limits("30/minute")] == ["30 per 1 minute"]
    assert len(parse_limits("30/minute;500/day")) == 2
    with pytest.raises(ValueError):
        parse_limits("many per while")


def test_the_redis_client_gives_up_after_half_a_second_without_retries() -> None:
    client = make_redis("redis://127.0.0.1:6380/0")
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_connect_timeout"] == REDIS_CONNECT_TIMEOUT_S == 0.5
    assert kwargs["socket_timeout"] == REDIS_SOCKET_TIMEOUT_S == 0.5
    retry = kwargs["retry"]
    assert isinstance(retry, Retry)
    assert retry.get_retries() == 0


def test_rate_limits_share_the_clients_connection_pool() -> None:
    client = make_redis("redis://127.0.0.1:6380/0")
    limits = RateLimits(client, per_client="3/minute", per_national_id="1/hour", national_id_key=b"k")
    assert limits._limiter.storage.bridge.storage.connection_pool is client.connection_pool  # type: ignore[attr-defined]


def test_rate_limits_refuse_an_empty_key_and_bad_limits() -> None:
    client = make_redis("redis://127.0.0.1:6380/0")
    with pytest.raises(ValueError):
        RateLimits(client, per_client="3/minute", per_national_id="1/hour", national_id_key=b"")
    with pytest.raises(ValueError):
        RateLimits(client, per_client="often", per_national_id="1/hour", national_id_key=b"k")


def test_the_idempotency_ttls_must_make_sense() -> None:
    client = make_redis("redis://127.0.0.1:6380/0")
    with pytest.raises(ValueError):
        IdempotencyStore(client, ttl_s=10, pending_ttl_s=60)
    with pytest.raises(ValueError):
        IdempotencyStore(client, pending_ttl_s=0)


def test_guard_settings_have_defaults_and_refuse_bad_limit_strings() -> None:
    settings = IntakeSettings()
    assert settings.idempotency_ttl_s == 86400
    assert settings.rate_limit_per_client == "60/minute"
    assert settings.rate_limit_per_national_id == "10/hour"
    with pytest.raises(ValidationError):
        IntakeSettings(rate_limit_per_client="lots")


def test_the_dev_rate_limit_key_is_refused_outside_local_and_test(tmp_path: Path) -> None:
    # Every other secret is set to a real value, so only the rate limit key can be the one refused.
    others: dict[str, Any] = {
        "deployment": DeploymentSettings(deployment_environment="production"),
        "tracking_code_key": SecretStr("a-real-secret"),
        "tracking_key": SecretStr("a-real-internal-key"),
        "agency_keys_file": tmp_path / "agency-keys.yaml",
    }
    with pytest.raises(ValidationError, match="INTAKE_RATE_LIMIT_KEY"):
        IntakeSettings(**others)
    assert IntakeSettings(**others, rate_limit_key=SecretStr("another-real-secret"))
    assert IntakeSettings(rate_limit_key=SecretStr(DEV_RATE_LIMIT_KEY))  # local
