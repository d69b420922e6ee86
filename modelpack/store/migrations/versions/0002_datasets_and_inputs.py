"""datasets and inputs: what log_input records (MLflow's datasets, inputs and input tags)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 12:37:37.545733
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("dataset_id", sa.String(length=32), nullable=False),
        sa.Column("experiment_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("source_type", sa.String(length=64), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("schema", sa.Text(), nullable=True),
        sa.Column("profile", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiments.experiment_id"],
            name=op.f("fk_datasets_experiment_id_experiments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("dataset_id", name=op.f("pk_datasets")),
        sa.UniqueConstraint(
            "experiment_id", "name", "digest", name="uq_datasets_experiment_name_digest"
        ),
    )
    op.create_table(
        "inputs",
        sa.Column("input_id", sa.String(length=32), nullable=False),
        sa.Column("run_id", sa.String(length=32), nullable=False),
        sa.Column("dataset_id", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.dataset_id"],
            name=op.f("fk_inputs_dataset_id_datasets"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.run_id"], name=op.f("fk_inputs_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("input_id", name=op.f("pk_inputs")),
        sa.UniqueConstraint("run_id", "dataset_id", name="uq_inputs_run_dataset"),
    )
    op.create_table(
        "input_tags",
        sa.Column("input_id", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=256), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["input_id"],
            ["inputs.input_id"],
            name=op.f("fk_input_tags_input_id_inputs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("input_id", "key", name=op.f("pk_input_tags")),
    )


def downgrade() -> None:
    op.drop_table("input_tags")
    op.drop_table("inputs")
    op.drop_table("datasets")
