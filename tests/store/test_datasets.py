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


# ---------------------------------------------------------------------------- the real MLflow

_MLFLOW_SCRIPT = r"""
import json, sys, warnings
warnings.filterwarnings("ignore")
import numpy as np, pandas as pd, mlflow
mlflow.set_tracking_uri(f"sqlite:///{sys.argv[1]}/mlflow.db")
df = pd.DataFrame({"x": [1.0, 2.0, 3.0], "n": [1, 2, 3], "label": [0, 1, 0], "s": list("abc")})
X = np.arange(12, dtype="float32").reshape(4, 3)
y = np.array([0, 1, 0, 1])
ds = mlflow.data.from_pandas(df, source="data/train.csv", targets="label", name="train")
nd = mlflow.data.from_numpy(X, targets=y, source="x.npy")
out = {
    "pandas": {
        "digest": ds.digest,
        "profile": ds.profile,
        "source": json.loads(ds.source.to_json()),
        "source_type": ds.source._get_source_type(),
    },
    "numpy": {"digest": nd.digest, "profile": json.loads(json.dumps(nd.profile))},
}
mlflow.set_experiment("shape")
with mlflow.start_run() as run:
    mlflow.log_param("depth", 3)
    mlflow.log_metric("acc", 0.5)
    mlflow.set_tag("team", "risk")
    mlflow.log_input(ds, context="training")
    mlflow.log_table({"x": [1, 2], "y": ["a", "b"]}, artifact_file="t.json")
    mlflow.log_table({"x": [3], "y": ["c"]}, artifact_file="t.json")
    mlflow.log_dict({"a": 1, "b": [1, 2]}, "c.yaml")
with mlflow.start_run():
    mlflow.log_metric("acc", 0.9)
frame = mlflow.search_runs()
out["columns"] = [c for c in frame.columns if not c.startswith("tags.mlflow")]
kept = out["columns"][:6] + ["metrics.acc", "params.depth", "tags.team"]
out["dtypes"] = {c: str(frame[c].dtype) for c in kept}
got = mlflow.get_run(run.info.run_id).inputs.dataset_inputs[0]
out["input_tags"] = {t.key: t.value for t in got.tags}
out["input_profile"] = json.loads(got.dataset.profile)
def fetch(path):
    return mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path=path, dst_path=sys.argv[1] + "/dl"
    )
out["table"] = json.load(open(fetch("t.json")))
out["yaml"] = open(fetch("c.yaml")).read()
print(json.dumps(out))
"""

_FRAME = pd.DataFrame(
    {"x": [1.0, 2.0, 3.0], "n": [1, 2, 3], "label": [0, 1, 0], "s": ["a", "b", "c"]}
)


@pytest.fixture(scope="module")
def mlflow_side(mlflow_env, tmp_path_factory):
    """What the real MLflow 3.17.2 makes of the same data and logging calls (one script)."""
    tmp = tmp_path_factory.mktemp("mlflow-side")
    return mlflow_env.json(_MLFLOW_SCRIPT, str(tmp), cwd=tmp)


def test_datasets_digest_profile_and_source_as_mlflow(mlflow_side):
    ds = modelpack.data.from_pandas(_FRAME, source="data/train.csv", targets="label", name="train")
    X = np.arange(12, dtype="float32").reshape(4, 3)
    nd = modelpack.data.from_numpy(X, targets=np.array([0, 1, 0, 1]), source="x.npy")
    assert ds.digest == mlflow_side["pandas"]["digest"]
    assert ds.profile == mlflow_side["pandas"]["profile"]
    assert ds.source.to_dict() == mlflow_side["pandas"]["source"]
    assert ds.source.source_type == mlflow_side["pandas"]["source_type"]
    assert nd.digest == mlflow_side["numpy"]["digest"]
    assert nd.profile == mlflow_side["numpy"]["profile"]


def test_logged_content_has_mlflows_shapes(tracking_env, mlflow_side, tmp_path):
    ds = modelpack.data.from_pandas(_FRAME, source="data/train.csv", targets="label", name="train")
    modelpack.set_experiment("shape")
    with modelpack.start_run() as run:
        modelpack.log_param("depth", 3)
        modelpack.log_metric("acc", 0.5)
        modelpack.set_tag("team", "risk")
        modelpack.log_input(ds, context="training")
        modelpack.log_table({"x": [1, 2], "y": ["a", "b"]}, artifact_file="t.json")
        modelpack.log_table({"x": [3], "y": ["c"]}, artifact_file="t.json")
        modelpack.log_dict({"a": 1, "b": [1, 2]}, "c.yaml")
    with modelpack.start_run():
        modelpack.log_metric("acc", 0.9)
    frame = modelpack.search_runs()
    ours = [c for c in frame.columns if not c.startswith("tags.modelpack")]
    # The same columns in the same order, plus run_name and user_id after the attributes.
    assert [c for c in ours if c not in ("run_name", "user_id")] == mlflow_side["columns"]
    assert {c: str(frame[c].dtype) for c in mlflow_side["dtypes"]} == mlflow_side["dtypes"]
    got = modelpack.get_run(run.info.run_id).inputs.dataset_inputs[0]
    assert {t.key: t.value for t in got.tags} == mlflow_side["input_tags"]
    assert json.loads(got.dataset.profile) == mlflow_side["input_profile"]
    client = modelpack.Client()
    table = client.download_artifacts(run.info.run_id, "t.json", tmp_path / "dl")
    assert json.loads(table.read_text()) == mlflow_side["table"]
    text = client.download_artifacts(run.info.run_id, "c.yaml", tmp_path / "dl").read_text()
    assert text == mlflow_side["yaml"]
