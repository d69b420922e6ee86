"""spark_udf in Spark local mode (local[2]), on every flavor; one SparkSession for them all."""

from __future__ import annotations

import numpy as np
import pytest
from batchfiles import FEATURES
from tolerances import FLOAT32, FLOAT64, tolerance

import modelpack

pytestmark = [
    # pyspark warns that it is not yet tested with pandas 3; the UDFs here use plain columns.
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
]


@pytest.fixture(scope="module")
def frame_df(spark, batch_frame):
    # Two partitions: each Python worker loads the package once and scores several batches.
    return spark.createDataFrame(batch_frame).repartition(2).cache()


def _native(flavor, pack, frame):
    x = frame[FEATURES]
    return pack.predict(x.to_numpy(np.float32) if flavor in ("torch", "onnx") else x)


def _collect(df, column):
    """``column`` of ``df`` in ``id`` order (collect, not toPandas: pyspark's Arrow path warns
    under pandas 3)."""
    rows = sorted(df.select("id", column).collect(), key=lambda r: r["id"])
    return [r[column] for r in rows]


@pytest.mark.parametrize("flavor", ["sklearn", "torch", "python"])
def test_udf_on_columns_by_position(flavor, spark, frame_df, packages, batch_frame):
    from modelpack.batch.spark import spark_udf

    udf = spark_udf(spark, str(packages[flavor]))
    got = _collect(frame_df.withColumn("prediction", udf(*FEATURES)), "prediction")
    expected = _native(flavor, modelpack.load(packages[flavor]), batch_frame)
    # torch: (n, 2) float32 logits -> array<float>; python one double, sklearn one long per row.
    np.testing.assert_allclose(np.asarray(got), expected, **tolerance(expected))


def test_udf_on_a_struct_by_name_with_several_outputs(spark, frame_df, packages, batch_frame):
    from pyspark.sql.functions import struct

    from modelpack.batch.spark import spark_udf

    udf = spark_udf(spark, packages["onnx"])
    assert udf.returnType.simpleString() == "struct<label:bigint,probabilities:array<float>>"
    rows = _collect(frame_df.select("id", udf(struct(*FEATURES)).alias("p")), "p")
    expected = _native("onnx", modelpack.load(packages["onnx"]), batch_frame)
    np.testing.assert_array_equal([r["label"] for r in rows], expected["label"])
    got = [r["probabilities"] for r in rows]
    np.testing.assert_allclose(got, expected["probabilities"], **FLOAT32)


def test_struct_columns_are_matched_by_name_and_cast(spark, packages, batch_frame):
    from pyspark.sql.functions import col, struct

    from modelpack.batch.spark import spark_udf

    # Reversed and as float: the signature puts them back in order and casts them to double.
    df = spark.createDataFrame(batch_frame[["id", *FEATURES[::-1]]])
    df = df.select("id", *[col(c).cast("float").alias(c) for c in FEATURES[::-1]])
    udf = spark_udf(spark, packages["sklearn_proba"], result_type="array<double>")
    got = _collect(df.select("id", udf(struct(*FEATURES[::-1])).alias("p")), "p")
    pack = modelpack.load(packages["sklearn_proba"])
    expected = pack.predict(batch_frame[FEATURES].astype(np.float32))
    np.testing.assert_allclose(np.asarray(got), expected, **FLOAT64)


def test_missing_column_fails_the_job_with_the_signature_message(spark, frame_df, packages):
    from modelpack.batch.spark import spark_udf

    udf = spark_udf(spark, packages["sklearn"])
    with pytest.raises(Exception, match=r"Missing required column 'f5'"):
        frame_df.withColumn("p", udf(*FEATURES[:5])).collect()


def test_driver_side_errors(spark, packages, tmp_path):
    from modelpack.batch.spark import spark_udf

    with pytest.raises(modelpack.NotFound, match=r"No model package at"):
        spark_udf(spark, tmp_path / "nope")
    with pytest.raises(modelpack.UnknownFlavor, match=r"does not store the 'onnx' flavor"):
        spark_udf(spark, packages["sklearn"], flavor="onnx")
