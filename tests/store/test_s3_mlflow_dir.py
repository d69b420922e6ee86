"""An MLflow model directory in S3 loads by its s3:// URI: downloaded, converted into the
private cache, and predicting what MLflow predicts."""

from __future__ import annotations

import boto3
import numpy as np
from mlflow_model_dirs import mlflow_models_built  # noqa: F401 - a fixture

import modelpack


def test_an_mlflow_model_in_s3_loads_by_its_uri(
    s3_bucket,
    mlflow_models_built,  # noqa: F811 - the fixture imported above
    tmp_path,
    monkeypatch,
):
    endpoint, bucket = s3_bucket
    monkeypatch.setenv("MODELPACK_S3_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("MODELPACK_CACHE_DIR", str(tmp_path / "cache"))
    built = mlflow_models_built
    src = built.dir("torch_pt2")
    s3 = boto3.client("s3", endpoint_url=endpoint)
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        s3.upload_file(str(path), bucket, f"models/pt2/{path.relative_to(src).as_posix()}")

    first = modelpack.load(f"s3://{bucket}/models/pt2")
    assert first.flavor == "torch"
    assert first.path.parent == tmp_path / "cache" / "packages"
    np.testing.assert_allclose(
        first.predict(built.input("torch_pt2")),
        built.expected("torch_pt2"),
        rtol=1e-5,
        atol=1e-6,
    )
    # Downloaded again (an MLflow folder has no manifest to name a cache entry by), but the
    # same files find the same conversion: nothing is converted twice.
    second = modelpack.load(f"s3://{bucket}/models/pt2")
    assert (second.path, second.model_id) == (first.path, first.model_id)
    assert not [p for p in (tmp_path / "cache" / "packages").iterdir() if p.name.startswith(".")]
