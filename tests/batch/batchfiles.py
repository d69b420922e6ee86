"""Shared by the batch tests: the feature names, lossless input files, python models."""

from __future__ import annotations

import json
from pathlib import Path

FEATURES = [f"f{i}" for i in range(6)]
N_ROWS = 300

# Python models are defined here by source, in a namespace of their own, so that cloudpickle
# stores them by value: worker processes and Spark executors cannot import a test module.
MODELS_SOURCE = """
import os
import time
import numpy as np
import modelpack

def affine(data):
    return data.to_numpy() @ np.arange(1.0, 7.0) + 1.0

def slow(data):
    time.sleep(0.2)
    return data.to_numpy().sum(axis=1)

def fails_on_big_values(data):
    x = data.to_numpy()
    if (x > 100).any():
        raise ValueError("value out of range")
    return x.sum(axis=1)

def row_sum(data):
    return data.to_numpy().sum(axis=1)

class FailsToLoad(modelpack.PythonModel):
    def load_context(self, context):
        if os.environ.get("BATCH_TEST_BREAK_LOAD"):
            raise RuntimeError("cannot open the lookup table")

    def predict(self, data, params=None):
        return data.to_numpy().sum(axis=1)
"""


def by_value(name: str):
    namespace = {"__name__": "modelpack_batch_test_models"}
    exec(MODELS_SOURCE, namespace)
    return namespace[name]


def write_input(frame, path: Path) -> Path:
    """Write ``frame`` losslessly as Parquet, CSV or JSON lines (by ``path``'s extension)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    if path.suffix == ".parquet":
        pq.write_table(table, path)
    elif path.suffix == ".csv":
        pacsv.write_csv(table, path)
    else:
        with open(path, "w") as f:
            for record in table.to_pylist():
                f.write(json.dumps(record) + "\n")
    return path
