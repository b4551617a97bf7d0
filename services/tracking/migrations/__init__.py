"""tracking's schema migrations (Alembic), applied at start by `services.tracking.schema.migrate`."""
