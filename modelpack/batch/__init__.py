"""Batch scoring: stream a Parquet, CSV or JSON-lines file through a package's ``predict``.

Memory is bounded by the batch size (and, for Parquet, the file's row-group size), not by the
file: batches are read, checked against the signature, scored and written one after another.
With ``workers=N`` the batches are scored in N processes that each load the package once, and
written in input order. The output appears only when it is complete.

The parts: ``_readers`` streams the input file, ``_features`` turns its columns into the model's
input as the signature says, ``_pool`` scores the batches in order (here, or in the worker
processes of ``_workers`` and ``_worker``), ``_scorer`` turns predictions into output columns,
``_writers`` writes the output atomically; ``_formats`` names the formats. ``spark`` scores
Spark DataFrames (``spark_udf``).

Example:
    >>> from modelpack.batch import predict_file
    >>> result = predict_file("models:/Churn/Production", "customers.parquet", "scores.parquet",
    ...                       keep_columns=["customer_id"])
    >>> result.rows, result.rows_per_second
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelpack.batch._features import Features
from modelpack.batch._formats import STDIO, guess_format, pyarrow
from modelpack.batch._pool import Pool
from modelpack.batch._readers import Reader, open_input
from modelpack.batch._writers import Sink, Target
from modelpack.batch.spark import spark_udf
from modelpack.errors import InvalidArgument
from modelpack.package import stored_flavor

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_LINE_BYTES",
    "BatchResult",
    "predict_file",
    "spark_udf",
]

DEFAULT_BATCH_SIZE = 50_000
# As much as the server takes in one request (max_body_bytes): a record longer than this is not
# one to expect on one line, and refusing it costs no more than this much memory.
DEFAULT_MAX_LINE_BYTES = 16 * 1024**2


@dataclass(frozen=True)
class BatchResult:
    """What a batch run did: ``rows`` scored in ``seconds``, written to ``output``."""

    rows: int
    seconds: float
    output: str

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")

    def summary(self) -> str:
        """One line for people: rows, seconds, rows/s and where the output went."""
        where = "stdout" if self.output == STDIO else self.output
        return (
            f"scored {self.rows:,} rows in {self.seconds:.2f} s "
            f"({self.rows_per_second:,.0f} rows/s) -> {where}"
        )


def predict_file(
    uri: str | os.PathLike[str],
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    input_format: str | None = None,
    output_format: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    workers: int = 1,
    keep_columns: Sequence[str] = (),
    prediction_column: str | None = None,
    flavor: str | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
) -> BatchResult:
    """Score every row of ``input`` with the package at ``uri``; write the predictions.

    Args:
        uri: any model URI ``modelpack.load`` accepts.
        input: a ``.parquet``, ``.csv`` or ``.jsonl`` file, or ``"-"`` for stdin (CSV or JSON
            lines, with ``input_format``).
        output: the file to write (its folder must exist), or ``"-"`` for stdout.
        input_format, output_format: ``"parquet"``, ``"csv"`` or ``"jsonl"``; by default taken
            from the extension (stdout defaults to the input's format).
        batch_size: rows per batch; memory grows with it, not with the file.
        max_line_bytes: the longest line of CSV or JSON lines read, not counting its newline
            (default 16 MiB); a longer one is a ``SchemaError`` that names it.
        workers: processes scoring batches in parallel, each loading the package once.
        keep_columns: input columns copied to the output, before the predictions.
        prediction_column: the name of a single output's column (default: the output's name in
            the signature, else ``"prediction"``). Outputs with several values per row get one
            column each, ``<name>_<class>`` for ``predict_proba`` or ``<name>_<i>``.
        flavor: run another representation stored in the package (e.g. ``"onnx"``).
        overwrite: replace an existing output file.
        progress: show a progress bar on stderr (default: when stderr is a terminal).

    Returns:
        The rows scored, the seconds it took and the output written.

    Raises:
        NotFound: the package, the input file or the output's folder does not exist.
        AlreadyExists: the output exists and ``overwrite`` is false.
        InvalidArgument: a format that cannot be guessed, or an argument that cannot work.
        SchemaError: the input does not match the signature, or cannot be parsed; the message
            names the file, the row (and line and byte for text) and the column.
        FlavorError: the model failed on a batch (the message names its rows).
    """
    from modelpack.manifest import read_manifest
    from modelpack.resolution import resolve

    input, output = os.fspath(input), os.fspath(output)
    keep = _check_options(batch_size, max_line_bytes, workers, keep_columns, prediction_column)
    in_fmt = guess_format(input, input_format, "input")
    fallback = in_fmt if output == STDIO and in_fmt != "parquet" else None
    out_fmt = guess_format(output, output_format, "output", fallback)
    pyarrow()
    target = Target(output, overwrite)
    root = resolve(uri)
    manifest = read_manifest(root)
    name = stored_flavor(manifest, flavor)
    start = time.perf_counter()
    with open_input(input, in_fmt, batch_size, max_line_bytes) as reader:
        features = Features(manifest.signature, reader.columns, keep, reader.name)
        scorer = Pool(root, name, prediction_column, workers)
        bar: _Progress | None = None
        rows = 0
        try:
            bar = _Progress(progress, reader)
            with target.open() as where:
                sink = Sink(where, out_fmt)
                try:
                    for batch in scorer.run(reader, features):
                        sink.write(batch)
                        rows += batch.num_rows
                        bar.update(batch.num_rows)
                finally:
                    sink.close()
        finally:
            if bar is not None:
                bar.close()
            scorer.close()
    return BatchResult(rows, time.perf_counter() - start, output)


def _check_options(
    batch_size: int,
    max_line_bytes: int,
    workers: int,
    keep_columns: Sequence[str],
    prediction_column: str | None,
) -> list[str]:
    for label, value in (
        ("batch_size", batch_size),
        ("max_line_bytes", max_line_bytes),
        ("workers", workers),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgument(f"{label} must be an integer >= 1, got {value!r}.")
    if isinstance(keep_columns, str) or not all(isinstance(c, str) and c for c in keep_columns):
        raise InvalidArgument(f"keep_columns must be a list of column names, got {keep_columns!r}.")
    if prediction_column is not None and (
        not isinstance(prediction_column, str) or not prediction_column
    ):
        raise InvalidArgument(
            f"prediction_column must be a non-empty string, got {prediction_column!r}."
        )
    return list(dict.fromkeys(keep_columns))


# ---------------------------------------------------------------------------- progress


class _Progress:
    """A tqdm bar on stderr (rows, rows/s, ETA) when asked for or on a terminal; else nothing."""

    def __init__(self, enabled: bool | None, reader: Reader) -> None:
        self.reader = reader
        self.bar: Any = None
        self.done = 0
        if enabled is None:
            enabled = sys.stderr.isatty()
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:  # the bar is a nicety; the summary line still comes
            return
        self.bar = tqdm(
            total=reader.total_rows,
            unit=" rows",
            unit_scale=True,
            file=sys.stderr,
            dynamic_ncols=True,
            mininterval=0.5,
            smoothing=0.1,
        )

    def update(self, rows: int) -> None:
        self.done += rows
        if self.bar is None:
            return
        reader = self.reader
        if reader.total_rows is None and reader.total_bytes and reader.bytes_read:
            # Text files: estimate the rows from the bytes read so far.
            estimate = int(self.done * reader.total_bytes / reader.bytes_read)
            self.bar.total = max(estimate, self.done)
        self.bar.update(rows)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
