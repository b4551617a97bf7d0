"""`python -m tools.apidocs`: write the published API documents (AsyncAPI for the bus, OpenAPI per HTTP API).

Agencies read these, not our source; tests/contract checks that the committed copies match the code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from faststream.specification import AsyncAPI

from shared.subscriptions import asyncapi_document

DOCS_DIR = Path(__file__).resolve().parent.parent / "docs" / "api"


def build_documents() -> dict[str, dict[str, Any]]:
    """Every published document, by file name, generated from the running code's definitions."""
    from services.identity.app import create_app as create_identity
    from services.inquiry.app import create_app as create_inquiry
    from services.intake.app import create_app as create_intake
    from services.notify.app import create_app as create_notify
    from services.tracking.app import create_app as create_tracking

    apps = {
        "intake": create_intake(),
        "inquiry": create_inquiry(),
        "tracking": create_tracking(),
        "notify": create_notify(),
        "identity": create_identity(),
    }
    documents: dict[str, dict[str, Any]] = {}
    for name, app in apps.items():
        # identity has no bus: nothing to say in AsyncAPI.
        if hasattr(app.state, "bus"):
            documents[f"asyncapi-{name}.json"] = asyncapi_of(name, app)
        if name in {"intake", "tracking", "identity"}:
            documents[f"openapi-{name}.json"] = app.openapi()
    return documents


def asyncapi_of(name: str, app: FastAPI) -> dict[str, Any]:
    """A service's AsyncAPI document, from the subscriptions and publications it declares (shared.subscriptions).

    intake consumes nothing: its publishers are declared on its own broker, which documents them.
    """
    if not hasattr(app.state, "subscriptions"):
        spec = AsyncAPI(
            app.state.bus.broker,
            title=f"Khedmat {name} events",
            version=app.version,
            description=f"What {name} consumes from and publishes to Kafka (CloudEvents 1.0, binary mode).",
        )
        document: dict[str, Any] = json.loads(spec.to_specification().to_json())
        return document
    return asyncapi_document(
        service=name,
        version=app.version,
        bootstrap_servers=app.state.bus.kafka.bootstrap_servers,
        subscriptions=app.state.subscriptions,
        publications=app.state.publications,
    )


def render(document: dict[str, Any]) -> str:
    """A document as stable, reviewable JSON text."""
    return json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def main() -> int:
    DOCS_DIR.mkdir(parents=True, exist_ok=True)
    for file_name, document in build_documents().items():
        (DOCS_DIR / file_name).write_text(render(document), encoding="utf-8")
        print(f"wrote docs/api/{file_name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
