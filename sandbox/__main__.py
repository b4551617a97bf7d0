"""`python -m sandbox`: serve the simulated external world until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from sandbox.runner import SandboxEndpoints, serve_sandbox
from sandbox.settings import SandboxSettings


def _announce(endpoints: SandboxEndpoints) -> None:
    # One line on stderr that scripts can wait for; logging runs at WARNING and would hide it.
    print(
        f"sandbox ready: agencies={endpoints.agencies_url} sms={endpoints.sms_url} "
        f"smtp={endpoints.smtp_host}:{endpoints.smtp_port} smtp_http={endpoints.smtp_http_url}",
        file=sys.stderr,
        flush=True,
    )


async def _run(settings: SandboxSettings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve_sandbox(settings, stop=stop, on_ready=_announce)


def main() -> None:
    """Entry point of `python -m sandbox`."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_run(SandboxSettings()))


if __name__ == "__main__":
    main()
