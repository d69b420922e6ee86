"""log_input and modelpack.data: datasets recorded on runs as MLflow records them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import modelpack
from modelpack.errors import InvalidArgument


@pytest.fixture
def df():
    return pd.DataFrame({"x": [1.0, 2.0, 3.0], "n": [1, 2, 3], "label": [0, 1, 0]})


def test_from_pandas_describes_the_frame(df):
    ds = modelpack.data.from_pandas(df, source="data/train.csv", targets="label", name="train")
    assert ds.name == "train"
    assert ds.targets == "label"
    assert ds.profile == {"num_rows": 3, "num_elements": 9}
    assert [c.name for c in ds.schema.columns] == ["x", "n", "label"]
    assert [c.type for c in ds.schema.columns] == ["double", "long", "long"]
    assert ds.source.source_type == "local"
    record = ds.to_dict()
    assert json.loads(record["source"]) == {"uri": "data/train.csv"}
    assert json.loads(record["schema"])["kind"] == "columns"
    assert json.loads(record["profile"]) == {"num_rows": 3, "num_elements": 9}
    assert len(ds.digest) == 8 and int(ds.digest, 16) >= 0
    # The digest is of the data: equal data, equal digest; other data, another.
    assert modelpack.data.from_pandas(df.copy()).digest == ds.digest
    assert modelpack.data.from_pandas(df.assign(x=[1.0, 2.0, 4.0])).digest != ds.digest
    assert modelpack.data.from_pandas(df, name="d").name == "d"
    assert modelpack.data.from_pandas(df).name == "dataset"
    assert modelpack.data.from_pandas(df, digest="abc").digest == "abc"


def test_sources_by_kind(df):
    kinds = {
        "https://example.com/d.csv": ("http", {"url": "https://example.com/d.csv"}),
        "s3://bucket/d.parquet": ("s3", {"uri": "s3://bucket/d.parquet"}),
        "/data/d.csv": ("local", {"uri": "/data/d.csv"}),
    }
    for raw, (kind, spec) in kinds.items():
        source = modelpack.data.from_pandas(df, source=raw).source
        assert (source.source_type, source.to_dict()) == (kind, spec)
    code = modelpack.data.from_pandas(df).source
    assert code.source_type == "code"
    assert code.to_dict()["tags"]["modelpack.source.name"].endswith("test_datasets.py")


def test_from_numpy_profile_schema_and_digest():
    X = np.arange(12, dtype="float32").reshape(4, 3)
    y = np.array([0, 1, 0, 1])
    ds = modelpack.data.from_numpy(X, targets=y, source="x.npy")
    assert ds.profile == {
        "features_shape": [4, 3],
        "features_size": 12,
        "features_nbytes": 48,
        "targets_shape": [4],
        "targets_size": 4,
        "targets_nbytes": 32,
    }
    schema = json.loads(ds.to_dict()["schema"])
    assert schema["features"]["dtype"] == "float32"
    assert schema["features"]["shape"] == [-1, 3]
    assert schema["targets"]["dtype"] == "int64"
    assert modelpack.data.from_numpy(X.copy(), targets=y).digest == ds.digest
    assert modelpack.data.from_numpy(X).digest != ds.digest
    named = modelpack.data.from_numpy({"a": X, "b": X[:, 0]})
    assert named.profile["features_shape"] == {"a": [4, 3], "b": [4]}


def test_bad_datasets_are_refused_with_the_fix(df):
    with pytest.raises(InvalidArgument, match="has no targets column 'y'. Columns: x, n, label"):
        modelpack.data.from_pandas(df, targets="y")
    with pytest.raises(InvalidArgument, match="from_pandas needs a pandas DataFrame, got list"):
        modelpack.data.from_pandas([1, 2])
    with pytest.raises(InvalidArgument, match="Use from_pandas for a DataFrame"):
        modelpack.data.from_numpy(df)
    with pytest.raises(InvalidArgument, match="A dataset source is a path or URI"):
        modelpack.data.from_pandas(df, source=3)


def test_log_input_shows_on_the_run(tracking_env, df):
    train = modelpack.data.from_pandas(df, source="train.csv", name="train", targets="label")
    test = modelpack.data.from_numpy(np.ones((2, 2)), name="test")
    with modelpack.start_run() as run:
        modelpack.log_input(train, context="training", tags={"split": "a"})
        modelpack.log_input(test, context="eval")
        modelpack.log_input(train, context="again")  # the same data: logged once, as MLflow
    inputs = modelpack.get_run(run.info.run_id).inputs.dataset_inputs
    assert [i.dataset.name for i in inputs] == ["train", "test"]
    first = inputs[0]
    assert first.dataset.digest == train.digest
    assert first.dataset.source_type == "local"
    assert json.loads(first.dataset.source) == {"uri": "train.csv"}
    assert json.loads(first.dataset.profile) == {"num_rows": 3, "num_elements": 9}
    assert json.loads(first.dataset.schema) == train.schema.to_dict()
    assert {t.key: t.value for t in first.tags} == {"mlflow.data.context": "training", "split": "a"}
    assert {t.key: t.value for t in inputs[1].tags} == {"mlflow.data.context": "eval"}
    # Searches carry the inputs too, and a second run shares the recorded dataset.
    with modelpack.start_run() as other:
        modelpack.log_input(train)
    found = {r.info.run_id: r for r in modelpack.search_runs(output_format="list")}
    assert [i.dataset.name for i in found[run.info.run_id].inputs.dataset_inputs] == [
        "train",
        "test",
    ]
    assert found[other.info.run_id].inputs.dataset_inputs[0].tags == ()


def test_log_input_refuses_what_is_not_a_dataset_and_ended_runs(tracking_env, df):
    with modelpack.start_run():
        with pytest.raises(InvalidArgument, match="log_input needs a dataset from modelpack.data"):
            modelpack.log_input(df)
        with pytest.raises(InvalidArgument, match="context is a non-empty string"):
            modelpack.log_input(modelpack.data.from_pandas(df), context=3)
        run_id = modelpack.active_run().info.run_id
    client = modelpack.Client()
    from modelpack.tracking import input_of

    with pytest.raises(InvalidArgument, match="has ended"):
        client.log_inputs(run_id, [input_of(modelpack.data.from_pandas(df), "x", None)])
