"""`python -m services.tracking`: run tracking under uvicorn; `python -m services.tracking rebuild`: rebuild.

The rebuild runs beside the live service (same settings, same database): it folds the topic from offset 0 into
staging tables and swaps them in once it has caught up with the live projection (services/tracking/service_rebuild.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

from shared.catalog import load_catalog
from shared.db import make_engine, make_sessionmaker
from shared.domain.working_days import load_calendar
from shared.redis_client import make_redis
from shared.runner import run_service
from shared.telemetry import configure_logging
from shared.topics import Topic

from .adapters_cache import StatusCache
from .app import SERVICE_NAME, create_app
from .domain_terms import catalog_terms
from .service import Projector
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.tracking")
    commands = parser.add_subparsers(dest="command")
    rebuild_parser = commands.add_parser("rebuild", help="rebuild the projection from offset 0 and swap it in")
    rebuild_parser.add_argument("--topic", default=Topic.REQUESTS.value)
    rebuild_parser.add_argument("--batch", type=int, default=10_000)
    rebuild_parser.add_argument("--no-swap", action="store_true", help="fold into staging tables only")
    args = parser.parse_args(argv)
    settings = TrackingSettings()
    if args.command == "rebuild":
        configure_logging(f"{SERVICE_NAME}-rebuild")
        return asyncio.run(run_rebuild(settings, topic=args.topic, batch=args.batch, swap=not args.no_swap))
    run_service(
        SERVICE_NAME, lambda provider: create_app(settings, tracer_provider=provider), settings.host, settings.port
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
