"""`python -m services.intake`: run intake under uvicorn."""

from shared.runner import run_service

from .app import SERVICE_NAME, create_app
from .settings import IntakeSettings

if __name__ == "__main__":
    settings = IntakeSettings()
    run_service(
        SERVICE_NAME, lambda provider: create_app(settings, tracer_provider=provider), settings.host, settings.port
    )
