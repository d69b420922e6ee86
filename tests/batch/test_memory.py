"""Memory is bounded by the batch size, not the file: peak RSS of ``modelpack predict``."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from batchfiles import by_value

import modelpack

COLUMNS = 20
LIMIT_MIB = 350  # the 2M-row file alone is 305 MiB of doubles; the process takes ~220 MiB
FLAT_MIB = 60  # 2M rows may take at most this much more than 200k rows

# Runs the command in a child and prints the child's peak RSS in MiB (Linux: KiB units).
MEASURE = (
    "import resource, subprocess, sys\n"
    "proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "assert proc.returncode == 0, proc.stderr\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)\n"
)


def write_parquet(path, rows):
    """``rows`` x 20 doubles, written in 100k-row row groups (fast: one block, repeated)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    block = pa.table({f"f{i}": rng.standard_normal(100_000) for i in range(COLUMNS)})
    with pq.ParquetWriter(path, block.schema, compression="none") as writer:
        for _ in range(rows // 100_000):
            writer.write_table(block)


def peak_mib(package, src, out):
    command = [sys.executable, "-m", "modelpack.cli", "predict", str(package), "-i", str(src),
               "-o", str(out)]  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True,
                          text=True, check=True)  # fmt: skip
    return int(proc.stdout)


def test_peak_rss_is_flat_from_200k_to_2m_rows(tmp_path):
    import pandas as pd

    example = pd.DataFrame(np.zeros((3, COLUMNS)), columns=[f"f{i}" for i in range(COLUMNS)])
    modelpack.save(by_value("row_sum"), tmp_path / "m", input_example=example)
    write_parquet(tmp_path / "small.parquet", 200_000)
    write_parquet(tmp_path / "big.parquet", 2_000_000)
    small = peak_mib(tmp_path / "m", tmp_path / "small.parquet", tmp_path / "small-out.parquet")
    big = peak_mib(tmp_path / "m", tmp_path / "big.parquet", tmp_path / "big-out.parquet")
    assert big < LIMIT_MIB, f"peak RSS {big} MiB scoring 2M rows (limit {LIMIT_MIB} MiB)"
    assert big - small < FLAT_MIB, f"peak RSS {small} MiB at 200k rows, {big} MiB at 2M rows"
    import pyarrow.parquet as pq

    assert pq.ParquetFile(tmp_path / "big-out.parquet").metadata.num_rows == 2_000_000
