"""Deterministic rules behind the sandbox's answers, checked without any I/O."""

from __future__ import annotations

import hashlib
from datetime import date, timedelta

import pytest

from sandbox.agencies import (
    complete_national_id,
    is_valid_national_id,
    national_id_check_digit,
    person_name,
    registered_birth_date,
    tax_clearance,
)
from sandbox.faults import FaultConfig, FaultOutcome, FaultRegistry
from sandbox.settings import SandboxSettings

NATIONAL_ID = "0012345679"


def test_registered_birth_date_is_derived_from_sha256_of_the_id() -> None:
    h = int(hashlib.sha256(NATIONAL_ID.encode()).hexdigest(), 16)

    assert registered_birth_date(NATIONAL_ID) == date(1950, 1, 1) + timedelta(days=h % 20000)


def test_person_name_is_persian_and_stable() -> None:
    first_name, last_name = person_name(NATIONAL_ID)

    assert person_name(NATIONAL_ID) == (first_name, last_name)
    assert all("\u0600" <= ch <= "\u06ff" or ch == " " for ch in first_name + last_name)


def test_national_id_check_digit_follows_the_official_rule() -> None:
    assert national_id_check_digit("001234567") == 9
    assert complete_national_id("001234567") == NATIONAL_ID
    assert national_id_check_digit("111111111") == 1
    assert not is_valid_national_id("1111111111")


def test_registry_helpers_refuse_invalid_national_ids() -> None:
    with pytest.raises(ValueError):
        registered_birth_date("0012345678")
    with pytest.raises(ValueError):
        tax_clearance("1234")


def test_registry_decides_faults_in_precedence_order() -> None:
    registry = FaultRegistry()
    registry.set("tax", FaultConfig(down=True, drop_rate=1.0, error_rate=1.0))
    assert registry.decide("tax").outcome is FaultOutcome.DOWN
    registry.set("tax", FaultConfig(drop_rate=1.0, error_rate=1.0, timeout_rate=1.0))
    assert registry.decide("tax").outcome is FaultOutcome.DROP
    registry.set("tax", FaultConfig(error_rate=1.0, timeout_rate=1.0, latency_ms=250))
    assert registry.decide("tax").outcome is FaultOutcome.ERROR
    assert registry.decide("tax").latency_s == 0.25


def test_settings_read_sandbox_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_HOST", "0.0.0.0")
    monkeypatch.setenv("SANDBOX_AGENCIES_PORT", "18090")
    monkeypatch.setenv("SANDBOX_SMS_API_KEYS", "one, two")
    monkeypatch.setenv("SANDBOX_SMS_RECEIPT_URL", "")

    settings = SandboxSettings()

    assert (settings.host, settings.agencies_port, settings.sms_port) == ("0.0.0.0", 18090, 8091)
    assert (settings.smtp_port, settings.smtp_http_port) == (2525, 8092)
    assert settings.sms_api_keys == frozenset({"one", "two"})
    assert settings.sms_receipt_url is None
