"""The team setup: a SQL store with an S3 artifact root (moto's server, real boto3 over HTTP)."""

from __future__ import annotations

import boto3
import numpy as np
import pytest

import modelpack


@pytest.fixture
def s3_client(monkeypatch, store_url, s3_bucket, tmp_path):
    endpoint, bucket = s3_bucket
    monkeypatch.setenv("MODELPACK_S3_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("MODELPACK_CACHE_DIR", str(tmp_path / "cache"))
    return modelpack.Client(store_url, artifact_root=f"s3://{bucket}/team"), endpoint, bucket


@pytest.fixture
def saved_package(tmp_path, forest, xy):
    """The path of a package saved in this test's tmp_path."""
    path = tmp_path / "pkg"
    modelpack.save(forest, path, input_example=xy[0][:2])
    return str(path)


def _keys(endpoint, bucket):
    s3 = boto3.client("s3", endpoint_url=endpoint)
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_log_register_and_resolve_through_s3(s3_client, forest, xy, tmp_path):
    client, endpoint, bucket = s3_client
    run = client.create_run(client.create_experiment("e"))
    info = client.log_model(run.info.run_id, forest, "model", input_example=xy[0][:2],
                            registered_model_name="Churn")  # fmt: skip
    keys = _keys(endpoint, bucket)
    assert any(k.endswith("/artifacts/model/modelpack.yaml") for k in keys)
    assert any(k.startswith("team/registry/") and k.endswith("modelpack.yaml") for k in keys)
    assert info.registered_model_version.storage_location.startswith(
        f"s3://{bucket}/team/registry/"
    )

    client.transition_model_version_stage("Churn", 1, "Production")
    first = client.resolve("models:/Churn/Production")
    assert first.parent == tmp_path / "cache" / "packages"
    assert first.name.startswith(info.model_id)
    np.testing.assert_array_equal(modelpack.load(first).predict(xy[0]), forest.predict(xy[0]))

    # A warm resolution downloads nothing: it still works with the bucket emptied.
    s3 = boto3.client("s3", endpoint_url=endpoint)
    for key in _keys(endpoint, bucket):
        s3.delete_object(Bucket=bucket, Key=key)
    assert client.resolve("models:/Churn/Production") == first
    assert client.resolve(info.model_uri) == first  # same package, same cache entry


def test_tampered_object_in_s3_is_caught_on_download(s3_client, saved_package):
    client, endpoint, bucket = s3_client
    mv = client.register_model(saved_package, "Churn")
    key = mv.storage_location.split(f"s3://{bucket}/", 1)[1] + "/model/model.pkl"
    boto3.client("s3", endpoint_url=endpoint).put_object(Bucket=bucket, Key=key, Body=b"evil")
    with pytest.raises(
        modelpack.IntegrityError,
        match=r"model/model.pkl: size differs: 4 bytes, the manifest says \d+",
    ):
        client.resolve("models:/Churn/1")


def test_unreachable_s3_names_the_endpoint(store_url, monkeypatch, saved_package):
    monkeypatch.setenv("MODELPACK_S3_ENDPOINT_URL", "http://user:hunter2@127.0.0.1:1")
    client = modelpack.Client(store_url, artifact_root="s3://bucket/x")
    with pytest.raises(modelpack.ModelpackError, match=r"Cannot reach S3 endpoint "
                       r"http://user:\*\*\*@127\.0\.0\.1:1") as e:  # fmt: skip
        client.register_model(saved_package, "Churn")
    assert "hunter2" not in str(e.value)
    assert client.search_model_versions("name = 'Churn'") == []
