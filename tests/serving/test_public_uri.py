"""/health and /version say what is served without telling clients the server's file system:
a models:/ or runs:/ URI as given, a path (or file:// or s3:// location) by its last part."""

from __future__ import annotations

import pytest

import modelpack


def _uris(c) -> tuple[str, str, str]:
    health, version = c.get("/health"), c.get("/version")
    assert health.status_code == 200 and version.status_code == 200
    return health.json()["uri"], version.json()["uri"], health.text + version.text


def test_a_path_is_shown_by_its_last_component(serve, column_package):
    for uri in (str(column_package), column_package.as_uri(), f"{column_package}/"):
        shown_health, shown_version, text = _uris(serve(uri))
        assert shown_health == shown_version == "churn"
        assert str(column_package.parent) not in text


def test_registry_and_run_uris_are_shown_as_given(
    serve, tmp_path, monkeypatch, frame_forest, frame
):
    monkeypatch.setenv("MODELPACK_CACHE_DIR", str(tmp_path / "cache"))
    store = f"sqlite:///{tmp_path / 'store' / 'modelpack.db'}"
    artifacts = str(tmp_path / "artifacts")
    client = modelpack.Client(store, artifact_root=artifacts)
    run = client.create_run(client.create_experiment("e"))
    info = client.log_model(
        run.info.run_id,
        frame_forest,
        "model",
        input_example=frame.head(2),
        registered_model_name="Churn",
    )
    for uri in (info.model_uri, "models:/Churn/1", "models:/Churn/latest"):
        c = serve(uri, tracking_uri=store, artifact_root=artifacts)
        assert _uris(c)[:2] == (uri, uri)
        assert str(tmp_path) not in _uris(c)[2]


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("/srv/models/churn", "churn"),
        ("/srv/models/churn/", "churn"),
        ("relative/dir/churn", "churn"),
        ("churn", "churn"),
        ("file:///srv/models/churn", "churn"),
        ("s3://bucket/team/models/churn", "churn"),
        ("models:/Churn/Production", "models:/Churn/Production"),
        ("models:/Churn@champion", "models:/Churn@champion"),
        (
            "runs:/0123456789abcdef0123456789abcdef/model",
            "runs:/0123456789abcdef0123456789abcdef/model",
        ),
    ],
)
def test_public_uri(uri, shown):
    from modelpack.serving.app import public_uri

    assert public_uri(uri) == shown
