"""The datasets runs used (``log_input``), kept as MLflow keeps them.

A dataset is one row per experiment, name and digest, shared by every run of the experiment
that logged the same data; an input links a run to a dataset once, with the tags the first
``log_input`` gave it (MLflow ignores the tags of a repeated log of the same dataset too).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

import sqlalchemy as sa

from modelpack.entities import Dataset, DatasetInput, InputTag
from modelpack.errors import InvalidArgument
from modelpack.store import schema as t
from modelpack.store import validation

__all__ = ["check_inputs", "read_inputs", "write_inputs"]

MAX_DIGEST = 64
MAX_SOURCE_TYPE = 64


def check_inputs(dataset_inputs: Iterable[DatasetInput]) -> list[DatasetInput]:
    """The inputs, validated, the first of each (name, digest) kept (as MLflow does)."""
    seen: dict[tuple[str, str], DatasetInput] = {}
    for item in dataset_inputs:
        if not isinstance(item, DatasetInput):
            raise InvalidArgument(
                f"Expected a DatasetInput, got {type(item).__name__}. Log a dataset with "
                f"modelpack.log_input(modelpack.data.from_pandas(df), context='training')."
            )
        ds = item.dataset
        validation.name(ds.name, "Dataset name")
        for value, what, limit in (
            (ds.digest, "Dataset digest", MAX_DIGEST),
            (ds.source_type, "Dataset source type", MAX_SOURCE_TYPE),
        ):
            validation.name(value, what)
            if len(value) > limit:
                raise InvalidArgument(
                    f"{what} is {len(value)} characters long; the limit is {limit}."
                )
        if not isinstance(ds.source, str):
            raise InvalidArgument(f"Dataset source must be a JSON string, got {ds.source!r}.")
        for tag in item.tags:
            validation.name(tag.key, "Input tag key")
            validation.text(tag.value, f"Input tag {tag.key!r}")
        seen.setdefault((ds.name, ds.digest), item)
    return list(seen.values())


def _insert_ignoring_duplicates(conn: sa.Connection, table: sa.Table, values: dict) -> None:
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    conn.execute(dialect.insert(table).values(**values).on_conflict_do_nothing())


def write_inputs(
    conn: sa.Connection, experiment_id: str, run_id: str, dataset_inputs: Sequence[DatasetInput]
) -> None:
    """Record ``dataset_inputs`` (checked by ``check_inputs``) for the run, in ``conn``'s
    transaction; a dataset another run logged already is reused, concurrent logs included."""
    position = conn.execute(
        sa.select(sa.func.coalesce(sa.func.max(t.inputs.c.position), -1)).where(
            t.inputs.c.run_id == run_id
        )
    ).scalar_one()
    for item in dataset_inputs:
        ds = item.dataset
        _insert_ignoring_duplicates(
            conn,
            t.datasets,
            {
                "dataset_id": uuid.uuid4().hex,
                "experiment_id": experiment_id,
                "name": ds.name,
                "digest": ds.digest,
                "source_type": ds.source_type,
                "source": ds.source,
                "schema": ds.schema,
                "profile": ds.profile,
            },
        )
        dataset_id = conn.execute(
            sa.select(t.datasets.c.dataset_id).where(
                t.datasets.c.experiment_id == experiment_id,
                t.datasets.c.name == ds.name,
                t.datasets.c.digest == ds.digest,
            )
        ).scalar_one()
        linked = conn.execute(
            sa.select(t.inputs.c.input_id).where(
                t.inputs.c.run_id == run_id, t.inputs.c.dataset_id == dataset_id
            )
        ).first()
        if linked is not None:
            continue
        position += 1
        input_id = uuid.uuid4().hex
        conn.execute(
            t.inputs.insert().values(
                input_id=input_id, run_id=run_id, dataset_id=dataset_id, position=position
            )
        )
        tags = {tag.key: tag.value for tag in item.tags}
        if tags:
            conn.execute(
                t.input_tags.insert(),
                [{"input_id": input_id, "key": k, "value": v} for k, v in tags.items()],
            )


def read_inputs(conn: sa.Connection, run_ids: Sequence[str]) -> dict[str, list[DatasetInput]]:
    """Each run's dataset inputs, in the order they were logged."""
    if not run_ids:
        return {}
    d, i = t.datasets, t.inputs
    rows = conn.execute(
        sa.select(i.c.run_id, i.c.input_id, d)
        .join(d, d.c.dataset_id == i.c.dataset_id)
        .where(i.c.run_id.in_(list(run_ids)))
        .order_by(i.c.run_id, i.c.position)
    ).all()
    tags: dict[str, list[InputTag]] = {}
    if rows:
        tag_rows = conn.execute(
            sa.select(t.input_tags).where(t.input_tags.c.input_id.in_([r.input_id for r in rows]))
        ).all()
        for row in sorted(tag_rows, key=lambda r: r.key):
            tags.setdefault(row.input_id, []).append(InputTag(row.key, row.value))
    out: dict[str, list[DatasetInput]] = {}
    for r in rows:
        dataset = Dataset(r.name, r.digest, r.source_type, r.source, r.schema, r.profile)
        out.setdefault(r.run_id, []).append(DatasetInput(dataset, tuple(tags.get(r.input_id, ()))))
    return out
