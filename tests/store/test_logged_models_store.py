"""MLflow 3's LoggedModels in the SQL store (SQLite in tmp_path): create, finalize, tags,
params, soft delete, search with filters and pages, and the registrations that point at one."""

from __future__ import annotations

import re

import pytest

from modelpack.errors import InvalidArgument, NotFound
from modelpack.store import engines
from modelpack.store.sql import SqlStore


@pytest.fixture
def lm_store(tmp_path):
    url = f"sqlite:///{tmp_path}/db.sqlite"
    store = SqlStore.open(url, str(tmp_path / "artifacts"))
    yield store
    engines.dispose(url)


def test_create_and_get_a_logged_model(lm_store, tmp_path):
    experiment = lm_store.create_experiment("e")
    run = lm_store.create_run(experiment, run_name="r", user_id="alice")
    made = lm_store.create_mlflow_logged_model(
        experiment,
        "clf",
        model_type="Classifier",
        source_run_id=run.info.run_id,
        params={"alpha": 0.5},
        tags={"team": "fraud"},
        creator_id="alice",
    )
    assert re.fullmatch(r"m-[0-9a-f]{32}", made.model_id)
    assert made.status == "LOGGED_MODEL_PENDING"
    assert made.artifact_location == (
        f"{tmp_path}/artifacts/{experiment}/models/{made.model_id}/artifacts"
    )
    assert made.params == {"alpha": "0.5"} and made.tags == {"team": "fraud"}
    got = lm_store.get_mlflow_logged_model(made.model_id)
    assert got == made
    assert (got.name, got.model_type, got.source_run_id, got.creator_id) == (
        "clf",
        "Classifier",
        run.info.run_id,
        "alice",
    )


def test_a_name_defaults_to_the_id_and_a_missing_experiment_or_run_is_named(lm_store):
    experiment = lm_store.create_experiment("e")
    made = lm_store.create_mlflow_logged_model(experiment)
    assert made.name == made.model_id
    with pytest.raises(NotFound, match="No experiment with id 'nope'"):
        lm_store.create_mlflow_logged_model("nope", "x")
    with pytest.raises(NotFound, match=r"No run with id 'r0' \(source_run_id\)"):
        lm_store.create_mlflow_logged_model(experiment, "x", source_run_id="r0")


def test_finalize_tags_params_and_delete(lm_store):
    experiment = lm_store.create_experiment("e")
    model_id = lm_store.create_mlflow_logged_model(experiment, "m").model_id
    ready = lm_store.finalize_mlflow_logged_model(model_id, "LOGGED_MODEL_READY")
    assert ready.status == "LOGGED_MODEL_READY"
    with pytest.raises(InvalidArgument, match="finalize with LOGGED_MODEL_READY or"):
        lm_store.finalize_mlflow_logged_model(model_id, "DONE")
    lm_store.set_mlflow_logged_model_tags(model_id, {"a": "1", "b": "2"})
    lm_store.set_mlflow_logged_model_tags(model_id, {"a": "3"})
    lm_store.delete_mlflow_logged_model_tag(model_id, "b")
    with pytest.raises(NotFound, match="has no tag 'b'"):
        lm_store.delete_mlflow_logged_model_tag(model_id, "b")
    lm_store.log_mlflow_logged_model_params(model_id, {"lr": "0.1"})
    lm_store.log_mlflow_logged_model_params(model_id, {"lr": "0.1", "depth": 3})
    with pytest.raises(InvalidArgument, match="params cannot change"):
        lm_store.log_mlflow_logged_model_params(model_id, {"lr": "0.2"})
    got = lm_store.get_mlflow_logged_model(model_id)
    assert got.tags == {"a": "3"} and got.params == {"depth": "3", "lr": "0.1"}
    lm_store.delete_mlflow_logged_model(model_id)
    with pytest.raises(NotFound, match="it was deleted"):
        lm_store.get_mlflow_logged_model(model_id)
    assert lm_store.get_mlflow_logged_model(model_id, allow_deleted=True).lifecycle_stage == (
        "deleted"
    )


@pytest.mark.parametrize("bad", ["m-123", "../etc", "M-" + "a" * 32, "m-" + "g" * 32, 7])
def test_ids_are_checked_before_any_query(lm_store, bad):
    with pytest.raises(InvalidArgument, match="expected 'm-' followed by 32 lowercase hex"):
        lm_store.get_mlflow_logged_model(bad)


def test_search_filters_orders_and_pages(lm_store):
    one, two = lm_store.create_experiment("one"), lm_store.create_experiment("two")
    ids = []
    for i in range(5):
        made = lm_store.create_mlflow_logged_model(
            one, f"m{i}", tags={"parity": "even" if i % 2 == 0 else "odd"}, params={"i": i}
        )
        ids.append(made.model_id)
    lm_store.create_mlflow_logged_model(two, "other")
    lm_store.finalize_mlflow_logged_model(ids[3], "LOGGED_MODEL_READY")

    def names(**kwargs):
        return [m.name for m in lm_store.search_mlflow_logged_models([one], **kwargs)[0]]

    assert sorted(names()) == ["m0", "m1", "m2", "m3", "m4"]
    assert names(filter_string="tags.parity = 'odd'", order_by=[("name", True)]) == ["m1", "m3"]
    assert names(filter_string="status = 'LOGGED_MODEL_READY'") == ["m3"]
    assert names(filter_string="name = 'm0' OR params.i = '4'", order_by=[("name", False)]) == [
        "m4",
        "m0",
    ]
    first, token = lm_store.search_mlflow_logged_models(
        [one, two], max_results=4, order_by=[("name", True)]
    )
    rest, end = lm_store.search_mlflow_logged_models(
        [one, two], max_results=4, order_by=[("name", True)], page_token=token
    )
    assert [m.name for m in first + rest] == ["m0", "m1", "m2", "m3", "m4", "other"]
    assert end is None
    with pytest.raises(InvalidArgument, match="Cannot order logged models by 'metric'"):
        lm_store.search_mlflow_logged_models([one], order_by=[("metric", True)])
    lm_store.delete_mlflow_logged_model(ids[0])
    assert "m0" not in names()
