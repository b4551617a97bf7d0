"""the notifications' outcomes from desk.notifications, one row per status change and channel

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.db import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "request_notification",
        sa.Column("status_event_id", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("tracking_code", sa.String(length=15), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("occurred_at", UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("status_event_id", "channel"),
    )
    with op.batch_alter_table("request_notification", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_request_notification_tracking_code"), ["tracking_code"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("request_notification", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_request_notification_tracking_code"))

    op.drop_table("request_notification")
