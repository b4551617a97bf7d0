"""`python -m services.tracking`: run tracking under uvicorn; `python -m services.tracking rebuild`: rebuild;
`python -m services.tracking audit-verify [NATIONAL_ID]`: check one citizen's chain of access records.

The rebuild runs beside the live service (same settings, same database): it folds the topic from offset 0 into
staging tables and swaps them in once it has caught up with the live projection (services/tracking/service_rebuild.py).
audit-verify prints "chain intact: N records" (exit 0) or where and how the chain breaks (exit 1); the national ID
is read from stdin when it is not given (so it stays out of the process list and shell history) and never printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

from sqlalchemy.exc import DBAPIError

from shared.access_audit import subject_digest
from shared.catalog import load_catalog
from shared.db import make_engine, make_sessionmaker
from shared.domain.identity import InvalidNationalId
from shared.domain.working_days import load_calendar
from shared.redis_client import make_redis
from shared.runner import run_service
from shared.telemetry import configure_logging
from shared.topics import Topic

from .adapters_cache import StatusCache
from .app import SERVICE_NAME, create_app
from .domain_terms import catalog_terms
from .service import Projector
from .service_audit import verify_chain
from .service_rebuild import rebuild
from .settings import TrackingSettings
from .store_migrations import migrate

log = logging.getLogger("services.tracking.rebuild")


async def run_rebuild(settings: TrackingSettings, *, topic: str, batch: int, swap: bool) -> int:
    engine = make_engine(settings.database_url)
    try:
        await migrate(engine)
        projector = Projector(
            make_sessionmaker(engine),
            settings.lookup_key.get_secret_value().encode(),
            catalog_terms(load_catalog(settings.catalog_dir)),
            load_calendar(),
        )

        def progress(events: int, offsets: dict[int, int]) -> None:
            if events % (20 * batch) < batch:
                log.info("rebuild progress", extra={"fields": {"folded": events, "offsets": offsets}})

        report = await rebuild(
            engine=engine,
            projector=projector,
            kafka=settings.kafka,
            topic=topic,
            batch=batch,
            swap=swap,
            on_progress=progress,
        )
        if report.swapped:
            # The rebuilt rows equal the live ones, but cached answers of the old tables are not worth the doubt.
            redis = make_redis(settings.redis.url)
            try:
                cleared = await StatusCache(redis, key=settings.lookup_key.get_secret_value().encode()).clear()
                log.info("cached lookups cleared", extra={"fields": {"cache_entries_cleared": cleared}})
            except Exception as error:  # entries expire on their own within TRACKING_LOOKUP_CACHE_TTL_S
                log.warning("cached lookups not cleared", extra={"fields": {"error": type(error).__name__}})
            finally:
                await redis.aclose()
    finally:
        await engine.dispose()
    # The command's result, on stdout for scripts (one JSON line); everything else is logged on stderr.
    print(
        json.dumps(
            {
                "events": report.events,
                "seconds": round(report.seconds, 3),
                "events_per_second": round(report.events_per_second, 1),
                "swapped": report.swapped,
                "offsets": report.offsets,
            }
        ),
        flush=True,
    )
    return 0


async def run_audit_verify(settings: TrackingSettings, national_id: str) -> int:
    """Check the citizen's chain as stored; one line on stdout, exit 0 intact, 1 broken, 2 not a national ID."""
    try:
        subject = subject_digest(national_id, settings.audit.subject_key.get_secret_value().encode())
    except InvalidNationalId:
        print("not a valid national ID", flush=True)
        return 2
    engine = make_engine(settings.database_url)
    try:
        verdict = await verify_chain(sessions=make_sessionmaker(engine), subject=subject)
    except DBAPIError as error:
        # One line, not a traceback: the statement's parameters would name the citizen's subject digest.
        print(f"cannot read the access records ({type(error.orig).__name__}): is TRACKING_DATABASE_URL right?")
        return 2
    finally:
        await engine.dispose()
    print(verdict.describe(), flush=True)
    return 0 if verdict.intact else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.tracking")
    commands = parser.add_subparsers(dest="command")
    rebuild_parser = commands.add_parser("rebuild", help="rebuild the projection from offset 0 and swap it in")
    rebuild_parser.add_argument("--topic", default=Topic.REQUESTS.value)
    rebuild_parser.add_argument("--batch", type=int, default=10_000)
    rebuild_parser.add_argument("--no-swap", action="store_true", help="fold into staging tables only")
    verify_parser = commands.add_parser("audit-verify", help="check one citizen's chain of access records")
    verify_parser.add_argument("national_id", nargs="?", default="-", help="the national ID; '-' or none: stdin")
    args = parser.parse_args(argv)
    settings = TrackingSettings()
    if args.command == "audit-verify":
        configure_logging(f"{SERVICE_NAME}-audit-verify")
        national_id = sys.stdin.readline().strip() if args.national_id == "-" else args.national_id
        return asyncio.run(run_audit_verify(settings, national_id))
    if args.command == "rebuild":
        configure_logging(f"{SERVICE_NAME}-rebuild")
        return asyncio.run(run_rebuild(settings, topic=args.topic, batch=args.batch, swap=not args.no_swap))
    run_service(
        SERVICE_NAME, lambda provider: create_app(settings, tracer_provider=provider), settings.host, settings.port
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
