"""`python -m services.identity`: run identity under uvicorn; `python -m services.identity new-key`: print a new
private signing key (a JWK) for an operator to add to the file IDENTITY_SIGNING_KEYS_FILE names."""

from __future__ import annotations

import argparse
import json
import sys

from shared.runner import run_service

from .adapters_keys import new_private_jwk
from .app import SERVICE_NAME, create_app
from .settings import IdentitySettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.identity")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser(
        "new-key",
        help="print a new Ed25519 private JWK (its kid is its thumbprint); add it to the keys file, publish it, "
        "then make it active with IDENTITY_ACTIVE_KID",
    )
    args = parser.parse_args(argv)
    if args.command == "new-key":
        # Private key material, on stdout for the operator's secret store only.
        print(json.dumps(new_private_jwk(), indent=2))
        return 0
    settings = IdentitySettings()
    run_service(
        SERVICE_NAME, lambda provider: create_app(settings, tracer_provider=provider), settings.host, settings.port
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
