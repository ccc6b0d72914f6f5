"""The run store's tables as the code queries them: the newest shape of the schema.

Migrations (`migrations.py`) spell out each version's tables instead of using these, so that a
table changed here never changes history; a test checks that migrating gives exactly this schema.
"""

from __future__ import annotations

import sqlalchemy as sa

from adjudication.versions import schema_versions as _shared_versions

metadata = sa.MetaData()

#: Every component's schema versions, one table for the database (`adjudication.versions`).
schema_versions = _shared_versions.to_metadata(metadata)

constitutions = sa.Table(
    "constitutions",
    metadata,
    sa.Column("hash", sa.String(64), primary_key=True),
    sa.Column("constitution_id", sa.String(64), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("first_used", sa.String(32), nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("key", sa.String(64), nullable=False, unique=True),
    sa.Column("task", sa.String(32), nullable=False),
    sa.Column("constitution_hash", sa.String(64), sa.ForeignKey("constitutions.hash")),
    sa.Column("template_hash", sa.String(64), nullable=False),
    sa.Column("backend", sa.String(32), nullable=False),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("input", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
)

items = sa.Table(
    "items",
    metadata,
    sa.Column("run_id", sa.String(16), sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("item_id", sa.String(255), primary_key=True),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("row", sa.Text),
    sa.Column("status", sa.String(16), nullable=False),  # pending | drafted | failed
    sa.Column("reason", sa.String(32)),
    sa.Column("detail", sa.Text),
    sa.Column("updated_at", sa.String(32), nullable=False),
    # Who is drafting a pending item, and until when (seconds since the epoch, on the database's
    # clock); see `critic.leases`. Cleared when the outcome is recorded.
    sa.Column("lease_owner", sa.String(255)),
    sa.Column("lease_until", sa.Float),
    sa.Index("ix_items_status", "run_id", "status"),
    sa.Index("ix_items_seq", "run_id", "seq"),  # input order: export, claims, --limit
)

generations = sa.Table(
    "generations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(16), nullable=False),
    sa.Column("item_id", sa.String(255), nullable=False),
    sa.Column("stage", sa.String(32), nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("texts", sa.Text, nullable=False),
    sa.Column("finish_reasons", sa.Text, nullable=False),
    sa.Column("logprobs", sa.Text),
    sa.Column("prompt_tokens", sa.Integer, nullable=False),
    sa.Column("completion_tokens", sa.Integer, nullable=False),
    sa.Column("latency_s", sa.Float, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Index("ix_generations_item", "run_id", "item_id"),
)

drafts = sa.Table(
    "drafts",
    metadata,
    sa.Column("run_id", sa.String(16), primary_key=True),
    sa.Column("item_id", sa.String(255), primary_key=True),
    sa.Column("label", sa.Text),
    sa.Column("score", sa.Float),
    sa.Column("rationale", sa.Text),
    sa.Column("output", sa.Text, nullable=False),
    sa.Column("confidence", sa.Float),
    sa.Column("components", sa.Text),
    sa.Column("parse_attempts", sa.Integer, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
)


policies = sa.Table(
    "policies",
    metadata,
    sa.Column("hash", sa.String(64), primary_key=True),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
)

routes = sa.Table(
    "routes",
    metadata,
    sa.Column("run_id", sa.String(16), primary_key=True),
    sa.Column("item_id", sa.String(255), primary_key=True),
    sa.Column("policy_hash", sa.String(64), primary_key=True),
    sa.Column("decision", sa.String(16), nullable=False),  # accept | review
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("confidence", sa.Float),
    sa.Column("created_at", sa.String(32), nullable=False),
    # Routed with `--force`: the policy was not calibrated on this run (or was edited by hand).
    sa.Column("forced", sa.Boolean, nullable=False, server_default=sa.false()),
)
