"""spark_udf on an MLflow model directory: resolved (converted once) on the driver, scored in
the workers, equal to what MLflow predicts."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow_model_dirs import mlflow_models_built  # noqa: F401 - a fixture

pytestmark = [
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]


def test_spark_udf_scores_an_mlflow_directory(
    spark,
    mlflow_models_built,  # noqa: F811 - the fixture imported above
    tmp_path,
    monkeypatch,
):
    from modelpack.batch.spark import spark_udf

    monkeypatch.setenv("MODELPACK_CACHE_DIR", str(tmp_path / "cache"))
    built = mlflow_models_built
    frame = built.frame().reset_index(names="id")
    df = spark.createDataFrame(frame).repartition(2)
    udf = spark_udf(spark, str(built.dir("sk_pickle")))
    rows = df.withColumn("prediction", udf("a", "b", "c", "d")).select("id", "prediction")
    got = [r["prediction"] for r in sorted(rows.collect(), key=lambda r: r["id"])]
    np.testing.assert_array_equal(np.asarray(got), built.expected("sk_pickle"))
