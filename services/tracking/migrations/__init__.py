"""tracking's schema migrations (Alembic), applied at start by `services.tracking.store_migrations.migrate`."""
