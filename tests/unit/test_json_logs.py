"""The JSON log lines every process writes (services and the rebuild command alike)."""

from __future__ import annotations

import json
import logging

from shared.telemetry import JsonLogFormatter


def _line(message: str, **extra: object) -> dict[str, object]:
    record = logging.LogRecord("services.tracking.rebuild", logging.INFO, __file__, 1, message, None, None)
    for name, value in extra.items():
        setattr(record, name, value)
    entry: dict[str, object] = json.loads(JsonLogFormatter("tracking-rebuild").format(record))
    return entry


def test_structured_fields_become_keys_of_the_line() -> None:
    entry = _line("rebuild progress", fields={"folded": 20_000, "offsets": {"0": 3_301}})
    assert entry["message"] == "rebuild progress"
    assert entry["service"] == "tracking-rebuild"
    assert entry["folded"] == 20_000
    assert entry["offsets"] == {"0": 3_301}


def test_fields_never_overwrite_the_lines_own_keys() -> None:
    entry = _line("rebuild progress", fields={"level": "NONE", "message": "forged"})
    assert entry["level"] == "INFO"
    assert entry["message"] == "rebuild progress"


def test_a_national_id_in_a_message_is_masked() -> None:
    assert "0012345679" not in json.dumps(_line("applicant 0012345679 looked up"))
