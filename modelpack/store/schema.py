"""The store's tables (SQLAlchemy Core). Migrations in ``migrations/`` create and change them;
a test checks that the migrated database matches these definitions exactly."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

NAME = 256  # the longest name, key or alias
VALUE = 8000  # the longest param or tag value

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

experiments = Table(
    "experiments",
    metadata,
    Column("experiment_id", String(32), primary_key=True),
    Column("name", String(NAME), nullable=False, unique=True),
    Column("artifact_location", Text, nullable=False),
    Column("lifecycle_stage", String(16), nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_update_time", BigInteger, nullable=False),
)

experiment_tags = Table(
    "experiment_tags",
    metadata,
    Column(
        "experiment_id",
        String(32),
        ForeignKey("experiments.experiment_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("key", String(NAME), primary_key=True),
    Column("value", Text, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("experiment_id", String(32), ForeignKey("experiments.experiment_id"), nullable=False),
    Column("run_name", String(NAME), nullable=False),
    Column("user_id", String(NAME), nullable=False),
    Column("status", String(16), nullable=False),
    Column("start_time", BigInteger, nullable=False),
    Column("end_time", BigInteger, nullable=True),
    Column("lifecycle_stage", String(16), nullable=False),
    Column("artifact_uri", Text, nullable=False),
    Column("parent_run_id", String(32), nullable=True),
    Index("ix_runs_experiment_start", "experiment_id", "start_time"),
)

params = Table(
    "params",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(NAME), primary_key=True),
    Column("value", Text, nullable=False),
)

tags = Table(
    "tags",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(NAME), primary_key=True),
    Column("value", Text, nullable=False),
)

metrics = Table(
    "metrics",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(32), ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
    Column("key", String(NAME), nullable=False),
    Column("value", Float, nullable=True),  # NULL is NaN: SQLite stores NaN as NULL
    Column("timestamp", BigInteger, nullable=False),
    Column("step", BigInteger, nullable=False),
    Index("ix_metrics_run_key", "run_id", "key", "step"),
)

# The latest point of each metric (highest step, then timestamp), kept in the same transaction
# as the history, so that searching and ordering by metrics never scans the history.
latest_metrics = Table(
    "latest_metrics",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    Column("key", String(NAME), primary_key=True),
    Column("value", Float, nullable=True),  # NULL is NaN: SQLite stores NaN as NULL
    Column("timestamp", BigInteger, nullable=False),
    Column("step", BigInteger, nullable=False),
)

logged_models = Table(
    "logged_models",
    metadata,
    Column("run_id", String(32), ForeignKey("runs.run_id", ondelete="CASCADE"), primary_key=True),
    Column("artifact_path", String(1024), primary_key=True),
    Column("model_id", String(32), nullable=False),
    Column("manifest_sha256", String(64), nullable=False),
    Column("flavor", String(64), nullable=False),
    Column("creation_time", BigInteger, nullable=False),
)

registered_models = Table(
    "registered_models",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(NAME), nullable=False, unique=True),
    Column("description", Text, nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_updated_time", BigInteger, nullable=False),
)

registered_model_tags = Table(
    "registered_model_tags",
    metadata,
    Column(
        "model",
        String(32),
        ForeignKey("registered_models.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("key", String(NAME), primary_key=True),
    Column("value", Text, nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column(
        "model",
        String(32),
        ForeignKey("registered_models.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("stage", String(16), nullable=False),
    Column("source", Text, nullable=False),
    Column("run_id", String(32), nullable=True),
    Column("model_id", String(32), nullable=False),
    Column("manifest_sha256", String(64), nullable=False),
    Column("storage_location", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("user_id", String(NAME), nullable=False),
    Column("status", String(16), nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_updated_time", BigInteger, nullable=False),
)

model_version_tags = Table(
    "model_version_tags",
    metadata,
    Column("model", String(32), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("key", String(NAME), primary_key=True),
    Column("value", Text, nullable=False),
    ForeignKeyConstraint(
        ["model", "version"], ["model_versions.model", "model_versions.version"], ondelete="CASCADE"
    ),
)

aliases = Table(
    "aliases",
    metadata,
    Column(
        "model",
        String(32),
        ForeignKey("registered_models.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("alias", String(NAME), primary_key=True),
    Column("version", Integer, nullable=False),
)

# Append-only: rows are inserted, never updated or deleted (not even with their model).
model_history = Table(
    "model_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(32), nullable=False, index=True),
    Column("name", String(NAME), nullable=False),
    Column("version", Integer, nullable=True),
    Column("action", String(16), nullable=False),
    Column("from_value", String(NAME), nullable=True),
    Column("to_value", String(NAME), nullable=True),
    Column("user_id", String(NAME), nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("comment", Text, nullable=True),
)

# Datasets a run used (``log_input``), as MLflow keeps them: one row per experiment, name and
# digest, shared by the runs that logged the same data; ``inputs`` links a run to a dataset,
# ``input_tags`` holds that link's tags (``mlflow.data.context``: "training", "eval"...).
datasets = Table(
    "datasets",
    metadata,
    Column("dataset_id", String(32), primary_key=True),
    Column(
        "experiment_id",
        String(32),
        ForeignKey("experiments.experiment_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("name", String(NAME), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("source_type", String(64), nullable=False),
    Column("source", Text, nullable=False),
    Column("schema", Text, nullable=True),
    Column("profile", Text, nullable=True),
    UniqueConstraint("experiment_id", "name", "digest", name="uq_datasets_experiment_name_digest"),
)

inputs = Table(
    "inputs",
    metadata,
    Column("input_id", String(32), primary_key=True),
    Column("run_id", String(32), ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
    Column(
        "dataset_id",
        String(32),
        ForeignKey("datasets.dataset_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("position", Integer, nullable=False),  # the order the run logged its inputs in
    UniqueConstraint("run_id", "dataset_id", name="uq_inputs_run_dataset"),
)

input_tags = Table(
    "input_tags",
    metadata,
    Column(
        "input_id", String(32), ForeignKey("inputs.input_id", ondelete="CASCADE"), primary_key=True
    ),
    Column("key", String(NAME), primary_key=True),
    Column("value", Text, nullable=False),
)

# MLflow 3's LoggedModels (``/mlflow/logged-models``): what an MLflow 3 client creates before it
# uploads a model's files and registers it. Ids are MLflow's ("m-" + 32 hex characters).
mlflow_logged_models = Table(
    "mlflow_logged_models",
    metadata,
    Column("model_id", String(34), primary_key=True),
    Column(
        "experiment_id",
        String(32),
        ForeignKey("experiments.experiment_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("name", String(NAME), nullable=False),
    Column("artifact_location", Text, nullable=False),
    Column("status", String(32), nullable=False),
    Column("status_message", Text, nullable=True),
    Column("creator_id", String(NAME), nullable=True),
    Column("model_type", String(NAME), nullable=True),
    Column("source_run_id", String(32), nullable=True),
    Column("lifecycle_stage", String(16), nullable=False),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_update_time", BigInteger, nullable=False),
)

mlflow_logged_model_params = Table(
    "mlflow_logged_model_params",
    metadata,
    Column(
        "model_id",
        String(34),
        ForeignKey("mlflow_logged_models.model_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("key", String(NAME), primary_key=True),
    Column("value", Text, nullable=False),
)

mlflow_logged_model_tags = Table(
    "mlflow_logged_model_tags",
    metadata,
    Column(
        "model_id",
        String(34),
        ForeignKey("mlflow_logged_models.model_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("key", String(NAME), primary_key=True),
    Column("value", Text, nullable=False),
)

# The server's bearer tokens: only the sha256 of a token is kept; ``revoked_time`` set means the
# token no longer authenticates (the row stays, so ``token list`` shows who had access).
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("user_name", String(NAME), nullable=False, index=True),
    Column("role", String(16), nullable=False),  # reader | editor | admin
    Column("sha256", String(64), nullable=False, unique=True),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_used_time", BigInteger, nullable=True),
    Column("revoked_time", BigInteger, nullable=True),
)

# Grants: READ / EDIT / MANAGE / NO_PERMISSIONS of one user on one experiment (by id) or one
# registered model (by name). The user "*" holds the default for everyone without a grant.
permissions = Table(
    "permissions",
    metadata,
    Column("user_name", String(NAME), primary_key=True),
    Column("resource_type", String(32), primary_key=True),  # experiment | registered_model
    Column("resource_id", String(NAME), primary_key=True),
    Column("permission", String(16), nullable=False),
)

# Batches of logged points already stored, by the key their client gave them: a retried
# ``log-batch`` whose first attempt did land is acknowledged, not stored twice.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("run_id", String(32), ForeignKey("runs.run_id", ondelete="CASCADE"), nullable=False),
    Column("creation_time", BigInteger, nullable=False),
)
