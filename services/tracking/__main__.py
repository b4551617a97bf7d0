"""`python -m services.tracking`: run tracking under uvicorn."""

from shared.runner import run_service

from .app import SERVICE_NAME, create_app
from .settings import TrackingSettings

if __name__ == "__main__":
    settings = TrackingSettings()
    run_service(
        SERVICE_NAME, lambda provider: create_app(settings, tracer_provider=provider), settings.host, settings.port
    )
