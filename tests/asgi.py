"""An httpx client of an app in this process: the API tests call the apps without a server."""

from __future__ import annotations

import httpx
from starlette.types import ASGIApp


def asgi_client(
    app: ASGIApp, base_url: str, *, client: tuple[str, int] = ("127.0.0.1", 123), raise_app_exceptions: bool = True
) -> httpx.AsyncClient:
    """A client calling `app` in memory, from the `client` address; the app's lifespan is not run."""
    transport = httpx.ASGITransport(app=app, client=client, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url=base_url)
