"""modelpack.pyfunc.spark_udf, as MLflow code calls it: ``spark_udf(spark, model_uri,
result_type=...)`` on a registered model."""

from __future__ import annotations

import numpy as np
import pytest
from batchfiles import FEATURES

import modelpack

pytestmark = [
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]


@pytest.fixture
def sqlite_store(monkeypatch, tmp_path):
    """One store is enough here (the store contract runs elsewhere on SQLite and PostgreSQL)."""
    monkeypatch.setenv("MODELPACK_TRACKING_URI", f"sqlite:///{tmp_path / 'modelpack.db'}")
    monkeypatch.setenv("MODELPACK_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("MODELPACK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MODELPACK_EXPERIMENT_NAME", raising=False)


def test_pyfunc_spark_udf_scores_a_registered_model(spark, packages, batch_frame, sqlite_store):
    pack = modelpack.pyfunc.load_model(packages["sklearn"])
    with modelpack.start_run():
        modelpack.sklearn.log_model(pack.unwrap(), name="forest", registered_model_name="Forest",
                                    input_example=batch_frame[FEATURES].head(3))  # fmt: skip
    udf = modelpack.pyfunc.spark_udf(spark, "models:/Forest/1", result_type="double",
                                     env_manager="local")  # fmt: skip
    df = spark.createDataFrame(batch_frame.head(40))
    rows = sorted(df.withColumn("p", udf(*FEATURES)).select("id", "p").collect())
    expected = pack.predict(batch_frame[FEATURES].head(40)).astype(float)
    np.testing.assert_array_equal([r["p"] for r in rows], expected)


def test_pyfunc_spark_udf_refuses_what_it_cannot_honour(spark, packages):
    with pytest.raises(modelpack.InvalidArgument, match=r"params= is not supported: declare "
                       r"defaults in the signature's params"):  # fmt: skip
        modelpack.pyfunc.spark_udf(spark, packages["sklearn"], params={"a": 1})
