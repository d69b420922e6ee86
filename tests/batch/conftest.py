"""Fixtures for batch scoring and Spark: one small package per flavor, input files, a Spark
session (one per test session, local[2])."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from batchfiles import FEATURES, N_ROWS, by_value, write_input


@pytest.fixture(scope="session")
def batch_frame():
    """300 rows: six float features, an integer id and a text column."""
    import pandas as pd
    from sklearn.datasets import make_classification

    X, _ = make_classification(n_samples=N_ROWS, n_features=6, random_state=1)
    frame = pd.DataFrame(X, columns=FEATURES)
    frame.insert(0, "id", np.arange(1000, 1000 + N_ROWS, dtype=np.int64))
    frame["name"] = [f"row-{i}" for i in range(N_ROWS)]
    return frame


@pytest.fixture(scope="session")
def inputs(tmp_path_factory, batch_frame):
    folder = tmp_path_factory.mktemp("inputs")
    return {
        fmt: write_input(batch_frame, folder / f"data.{fmt}") for fmt in ("parquet", "csv", "jsonl")
    }


@pytest.fixture(scope="session")
def packages(tmp_path_factory, batch_frame):
    """flavor -> package path. sklearn and python take named columns; torch and onnx a tensor."""
    import onnxruntime  # noqa: F401 - imported once here rather than inside a timed test
    import torch
    from skl2onnx import to_onnx
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    import modelpack

    folder = tmp_path_factory.mktemp("packages")
    frame = batch_frame[FEATURES]
    y = (frame["f0"] + frame["f1"] > 0).to_numpy().astype(int)
    X32 = frame.to_numpy(np.float32).copy()  # writable: torch warns on read-only arrays
    forest = RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(frame, y)
    modelpack.save(forest, folder / "sklearn", input_example=frame.head(5))
    proba = {"input_example": frame.head(5), "predict_method": "predict_proba"}
    modelpack.save(forest, folder / "sklearn_proba", **proba)
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    modelpack.save(mlp, folder / "torch", input_example=X32[:5])
    proto = to_onnx(
        LogisticRegression().fit(X32, y),
        X32[:1],
        options={"zipmap": False},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    modelpack.save(proto, folder / "onnx", input_example=X32[:5])
    for name in ("affine", "slow", "fails_on_big_values", "row_sum"):
        modelpack.save(by_value(name), folder / name, input_example=frame.head(5))
    modelpack.save(by_value("FailsToLoad")(), folder / "fails_to_load", input_example=frame.head(5))
    paths = {
        name: folder / name
        for name in ("sklearn", "sklearn_proba", "torch", "onnx", "affine", "slow",
                     "fails_on_big_values", "row_sum", "fails_to_load")
    }  # fmt: skip
    paths["python"] = paths["affine"]
    return paths


# ---------------------------------------------------------------------------- Spark


def _spark_problem() -> str | None:
    """None if a local Spark can start here, else why not."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed (pip install 'modelpack[spark]')"
    java_home = os.environ.get("JAVA_HOME")
    if not (java_home and Path(java_home, "bin", "java").exists()) and not shutil.which("java"):
        return "no Java found (set JAVA_HOME or put java on PATH; Spark needs Java 17+)"
    return None


@pytest.fixture(scope="session")
def spark():
    """One local[2] SparkSession for the whole test session; skipped (a failure when CI=true)
    where pyspark or Java is missing."""
    problem = _spark_problem()
    if problem:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"The Spark tests must run in CI: {problem}")
        pytest.skip(problem)
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("modelpack-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.pyspark.python", sys.executable)
        .config("spark.pyspark.driver.python", sys.executable)
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
