"""Background tasks a component starts itself and must stop before it closes what the task uses."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` (None: never started) and wait until it has ended, so nothing it holds is used after."""
    if task is None:
        return
    task.cancel()
    # Its CancelledError is the end asked for; any other failure of the task is still raised.
    with contextlib.suppress(asyncio.CancelledError):
        await task
