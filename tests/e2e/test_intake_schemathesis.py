"""schemathesis against intake's own OpenAPI document, with intake running on real Kafka and Redis.

Property-based requests (valid and invalid) must never get a 5xx, and every answer must match the document:
declared status codes, content types, headers and response schemas. Bounded in examples and time. The CLI is
used because schemathesis's lazy pytest fixture loader does not run under pytest 9.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from testkit.harness import Stack

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


def test_intake_answers_every_generated_request_without_5xx_and_as_documented(stack: Stack) -> None:
    schemathesis = Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [
            str(schemathesis),
            "run",
            stack.url("intake") + "/openapi.json",
            "--checks",
            CHECKS,
            "--max-examples",
            "25",
            "--max-time",
            "120",
            "--request-timeout",
            "15",
            "--seed",
            "20261128",
            "--continue-on-failure",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    print(result.stdout[-6000:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
