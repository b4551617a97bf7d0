"""the status projection, its offsets and the outbox

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-28 17:19:16.415099
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from shared.db import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consumed_offset",
        sa.Column("topic", sa.String(), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("next_offset", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("topic", "partition"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("topic", sa.String(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.Column("headers", sa.String(), nullable=False),
        sa.Column("trace_context", sa.String(), nullable=False),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("published_at", UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "request_status",
        sa.Column("tracking_code", sa.String(length=15), nullable=False),
        sa.Column("national_id_digest", sa.String(length=64), nullable=False),
        sa.Column("service_id", sa.String(), nullable=False),
        sa.Column("catalog_version", sa.Integer(), nullable=False),
        sa.Column("agency", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("sla_breached", sa.Boolean(), nullable=False),
        sa.Column("complaint_open", sa.Boolean(), nullable=False),
        sa.Column("waiting_for_fa", sa.String(), nullable=True),
        sa.Column("waiting_for_en", sa.String(), nullable=True),
        sa.Column("waiting_since", UtcDateTime(timezone=True), nullable=True),
        sa.Column("pending_inquiries", sa.String(), nullable=False),
        sa.Column("duration_working_days", sa.Integer(), nullable=True),
        sa.Column("due_on", sa.Date(), nullable=True),
        sa.Column("paused_since", UtcDateTime(timezone=True), nullable=True),
        sa.Column("paused_working_days", sa.Integer(), nullable=False),
        sa.Column("documents", sa.String(), nullable=False),
        sa.Column("decision", sa.String(), nullable=True),
        sa.Column("decision_reason_fa", sa.String(), nullable=True),
        sa.Column("decision_reason_en", sa.String(), nullable=True),
        sa.Column("legal_basis", sa.String(), nullable=True),
        sa.Column("decided_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("result", sa.String(), nullable=True),
        sa.Column("delivered_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("open_complaint_id", sa.String(), nullable=True),
        sa.Column("complaint_filed_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("submitted_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tracking_code"),
    )
    with op.batch_alter_table("request_status", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_request_status_due_on"), ["due_on"], unique=False)
        batch_op.create_index(batch_op.f("ix_request_status_national_id_digest"), ["national_id_digest"], unique=False)

    op.create_table(
        "timeline_entry",
        sa.Column("tracking_code", sa.String(length=15), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("event_type", sa.String(), nullable=False),
        sa.Column("occurred_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("status_after", sa.String(), nullable=True),
        sa.Column("detail_fa", sa.String(), nullable=True),
        sa.Column("detail_en", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("tracking_code", "seq"),
        sa.UniqueConstraint("tracking_code", "event_id"),
    )


def downgrade() -> None:
    op.drop_table("timeline_entry")
    with op.batch_alter_table("request_status", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_request_status_national_id_digest"))
        batch_op.drop_index(batch_op.f("ix_request_status_due_on"))

    op.drop_table("request_status")
    op.drop_table("outbox")
    op.drop_table("consumed_offset")
