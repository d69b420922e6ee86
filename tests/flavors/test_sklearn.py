"""The sklearn flavor: serializations, predict methods, DataFrame/array fitting, pipelines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tolerances import FLOAT64

import modelpack
from modelpack.errors import InvalidArgument, SchemaError


def test_forest_fitted_on_frame_gets_a_frame(tmp_path, frame_forest, frame):
    modelpack.save(frame_forest, tmp_path / "p", input_example=frame.head(3))
    pack = modelpack.load(tmp_path / "p")
    assert pack.signature.inputs.kind == "columns"
    np.testing.assert_array_equal(pack.predict(frame), frame_forest.predict(frame))
    shuffled = frame[list(reversed(frame.columns))].assign(noise=1.0)
    np.testing.assert_array_equal(pack.predict(shuffled), frame_forest.predict(frame))


@pytest.mark.parametrize("method", ["predict_proba", "decision_function"])
def test_predict_methods(tmp_path, xy, method):
    from sklearn.linear_model import LogisticRegression

    X, y = xy
    model = LogisticRegression().fit(X, y)
    modelpack.save(model, tmp_path / "p", input_example=X[:4], predict_method=method)
    pack = modelpack.load(tmp_path / "p")
    assert pack.manifest.flavors["sklearn"]["predict_method"] == method
    np.testing.assert_allclose(pack.predict(X), getattr(model, method)(X), **FLOAT64)


def test_transform_on_a_pipeline_with_mixed_columns(tmp_path):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    df = pd.DataFrame(
        {
            "city": ["a", "b", "a", "c"] * 10,
            "age": np.arange(40) % 7,
            "income": np.linspace(0, 1, 40),
        }
    )
    y = np.arange(40) % 2
    pipe = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("cat", OneHotEncoder(), ["city"]),
                        ("num", StandardScaler(), ["age", "income"]),
                    ]
                ),
            ),
            ("clf", LogisticRegression()),
        ]
    ).fit(df, y)
    modelpack.save(pipe, tmp_path / "p", input_example=df.head(3))
    pack = modelpack.load(tmp_path / "p")
    assert [(c.name, c.type) for c in pack.signature.inputs.columns] == [
        ("city", "string"),
        ("age", "long"),
        ("income", "double"),
    ]
    np.testing.assert_array_equal(pack.predict(df.to_dict("records")), pipe.predict(df))
    with pytest.raises(SchemaError, match=r"Column 'city': expected string, got long"):
        pack.predict({"city": [1], "age": [1], "income": [0.5]})
    modelpack.save(pipe[0], tmp_path / "t", input_example=df.head(3), predict_method="transform")
    transformed = modelpack.load(tmp_path / "t").predict(df)
    np.testing.assert_allclose(transformed, pipe[0].transform(df), **FLOAT64)


def test_skops_serialization_is_pickle_free(tmp_path, forest, xy):
    modelpack.save(forest, tmp_path / "p", input_example=xy[0][:2], serialization="skops")
    pack = modelpack.load(tmp_path / "p")
    assert pack.manifest.flavors["sklearn"]["path"] == "model/model.skops"
    np.testing.assert_array_equal(pack.predict(xy[0]), forest.predict(xy[0]))


def test_bad_options(tmp_path, forest):
    with pytest.raises(
        InvalidArgument,
        match=r"Unknown serialization 'json'\. Choose one of: "
        r"cloudpickle, skops",
    ):
        modelpack.save(forest, tmp_path / "p", serialization="json")
    with pytest.raises(InvalidArgument, match=r"Unknown predict_method 'score'"):
        modelpack.save(forest, tmp_path / "p", predict_method="score")
    from sklearn.linear_model import LinearRegression

    with pytest.raises(InvalidArgument, match=r"LinearRegression has no predict_proba\(\) method"):
        modelpack.save(LinearRegression(), tmp_path / "p", predict_method="predict_proba")
    assert not (tmp_path / "p").exists()


def test_requirements_include_third_party_estimator_modules(tmp_path, forest):
    from modelpack.environment import infer_requirements, modules_of

    assert "sklearn" in modules_of(forest)
    reqs = infer_requirements(forest, ["numpy"])
    assert [r.split("==")[0] for r in reqs] == ["numpy", "scikit-learn"]


@pytest.mark.parametrize(
    ("serialization", "pinned", "absent"),
    [("skops", "skops", "cloudpickle"), ("cloudpickle", "cloudpickle", "skops")],
)
def test_requirements_pin_the_serializer_the_package_was_saved_with(
    tmp_path, forest, serialization, pinned, absent
):
    from importlib.metadata import version

    modelpack.save(forest, tmp_path / "p", serialization=serialization)
    reqs = (tmp_path / "p" / "requirements.txt").read_text().split()
    assert f"{pinned}=={version(pinned)}" in reqs
    assert not [r for r in reqs if r.startswith(f"{absent}==")]
    assert f"scikit-learn=={version('scikit-learn')}" in reqs
