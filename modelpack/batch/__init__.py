"""Batch scoring: stream a Parquet, CSV or JSON-lines file through a package's ``predict``.

Memory is bounded by the batch size (and, for Parquet, the file's row-group size), not by the
file: batches are read, checked against the signature, scored and written one after another.
With ``workers=N`` the batches are scored in N processes that each load the package once, and
written in input order. The output appears only when it is complete.

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
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelpack.batch import _readers as io
from modelpack.batch import _writers as sink_io
from modelpack.batch._features import Features
from modelpack.errors import (
    FlavorError,
    InvalidArgument,
    ModelpackError,
    SchemaError,
)
from modelpack.package import stored_flavor
from modelpack.signature import TensorSchema

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_MAX_LINE_BYTES", "BatchResult", "predict_file"]

DEFAULT_BATCH_SIZE = 50_000
# As much as the server takes in one request (max_body_bytes): a record longer than this is not
# one to expect on one line, and refusing it costs no more than this much memory.
DEFAULT_MAX_LINE_BYTES = 16 * 1024**2
_IN_FLIGHT_PER_WORKER = 2  # batches queued per worker: enough to keep it busy, and no more


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
        where = "stdout" if self.output == io.STDIO else self.output
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
    in_fmt = io.guess_format(input, input_format, "input")
    fallback = in_fmt if output == io.STDIO and in_fmt != "parquet" else None
    out_fmt = io.guess_format(output, output_format, "output", fallback)
    io.pyarrow()
    target = sink_io.Target(output, overwrite)
    root = resolve(uri)
    manifest = read_manifest(root)
    name = stored_flavor(manifest, flavor)
    start = time.perf_counter()
    with io.open_input(input, in_fmt, batch_size, max_line_bytes) as reader:
        features = Features(manifest.signature, reader.columns, keep, reader.name)
        scorer = _Pool(root, name, prediction_column, workers)
        bar: _Progress | None = None
        rows = 0
        try:
            bar = _Progress(progress, reader)
            with target.open() as where:
                sink = sink_io.Sink(where, out_fmt)
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


# ---------------------------------------------------------------------------- scoring


class _Scorer:
    """A loaded package, and how its output becomes named columns."""

    def __init__(self, pack: Any, prediction_column: str | None) -> None:
        self.pack = pack
        self.given = prediction_column
        outputs = pack.signature.outputs if pack.signature is not None else None
        named = (
            outputs.tensors[0].name
            if isinstance(outputs, TensorSchema) and outputs.single
            else None
        )
        self.base = prediction_column or named or "prediction"
        config = pack.manifest.flavors.get(pack.flavor, {})
        classes = getattr(pack.unwrap(), "classes_", None)
        self.classes = (
            [str(c) for c in classes]
            if config.get("predict_method") == "predict_proba" and classes is not None
            else None
        )

    def __call__(self, x: Any) -> list[tuple[str, np.ndarray]]:
        out = self.pack.predict(x)
        if isinstance(out, np.ndarray):
            return _split(self.base, out, self.classes)
        if isinstance(out, Mapping):
            parts = [(str(k), np.asarray(v)) for k, v in out.items()]
        else:  # a DataFrame
            parts = [(str(c), out[c].to_numpy()) for c in out.columns]
        if len(parts) == 1:
            return _split(self.given or parts[0][0], parts[0][1], self.classes)
        if self.given is not None:
            raise InvalidArgument(
                f"--prediction-column names a single output, but this model returns "
                f"{len(parts)} ({', '.join(n for n, _ in parts)}), each in a column of its "
                f"own name. Leave --prediction-column out."
            )
        return [col for name, arr in parts for col in _split(name, arr, None)]


def _split(base: str, arr: np.ndarray, classes: list[str] | None) -> list[tuple[str, np.ndarray]]:
    """One column for a value per row; ``base_<class>`` or ``base_<i>`` for several."""
    if arr.ndim <= 1:
        return [(base, arr.reshape(-1))]
    flat = arr.reshape(arr.shape[0], -1)
    if flat.shape[1] == 1:
        return [(base, flat[:, 0])]
    labels = classes if classes and len(classes) == flat.shape[1] else range(flat.shape[1])
    return [(f"{base}_{label}", flat[:, j]) for j, label in enumerate(labels)]


class _Pool:
    """Scores batches in this process (one worker) or in worker processes, in input order."""

    def __init__(self, root: Path, flavor: str, prediction_column: str | None, workers: int):
        self.workers: Any = None
        self.scorer: _Scorer | None = None
        self.failed = True
        if workers == 1:
            from modelpack.package import load

            self.scorer = _Scorer(load(root, flavor=flavor), prediction_column)
        else:
            from modelpack.batch._workers import Workers
            from modelpack.package import verify

            verify(root)  # a modified package fails here, once, rather than in every worker
            self.workers = Workers(root, flavor, prediction_column, workers)
        self.limit = _IN_FLIGHT_PER_WORKER * workers

    def run(self, reader: io.Reader, features: Features) -> Iterator[Any]:
        """Yield the output record batches, in input order."""
        chunks = reader.batches(features.read, features.types)
        if self.workers is None:
            for chunk in chunks:
                x = features.model_input(chunk)
                yield _output(chunk, features, self._local(x, chunk, reader.name), reader.name)
            self.failed = False
            return
        from modelpack.batch._workers import LoadFailed, WorkerDied

        pending: deque[tuple[Any, io.Chunk]] = deque()
        while True:
            item = next(chunks, None)
            if item is not None:
                pending.append((self.workers.submit(features.model_input(item)), item))
            while pending and (len(pending) >= self.limit or item is None):
                future, done = pending.popleft()
                try:
                    ok, value = future.result()
                except LoadFailed as exc:
                    raise _rebuild(exc.kind, exc.message, exc.ours) from None
                except WorkerDied as exc:
                    raise FlavorError(
                        f"{reader.name}: {_rows(done)}: a worker process died ({exc}); it may "
                        f"have run out of memory. Try a smaller --batch-size or fewer --workers."
                    ) from None
                if not ok:
                    raise _failure(reader.name, done, *value)
                yield _output(done, features, value, reader.name)
            if item is None:
                self.failed = False
                return

    def _local(self, x: Any, chunk: io.Chunk, name: str) -> list[tuple[str, np.ndarray]]:
        assert self.scorer is not None
        try:
            return self.scorer(x)
        except InvalidArgument:
            raise
        except ModelpackError as exc:
            raise _failure(name, chunk, type(exc).__name__, str(exc), True) from exc
        except Exception as exc:  # noqa: BLE001 - the model's own error, told with its rows
            raise _failure(name, chunk, type(exc).__name__, str(exc), False) from exc

    def close(self) -> None:
        if self.workers is not None:
            self.workers.close(kill=self.failed)


def _rows(chunk: io.Chunk) -> str:
    n = chunk.table.num_rows
    return f"rows {chunk.start}-{chunk.start + n - 1}" if n else f"row {chunk.start}"


def _failure(name: str, chunk: io.Chunk, kind: str, message: str, ours: bool) -> Exception:
    """The error for a batch that failed in ``predict`` (possibly in another process)."""
    from modelpack import errors

    if ours:
        if kind == "InvalidArgument":
            return InvalidArgument(message)
        cls = getattr(errors, kind, None)
        if cls is SchemaError:
            return SchemaError(f"{name}: {_rows(chunk)}: {message}")
        return FlavorError(f"{name}: {_rows(chunk)}: {message}")
    return FlavorError(f"{name}: {_rows(chunk)}: the model raised {kind}: {message}")


def _rebuild(kind: str, message: str, ours: bool) -> Exception:
    """The error a worker got loading the package, as this process would have raised it."""
    from modelpack import errors

    cls = getattr(errors, kind, None) if ours else None
    if isinstance(cls, type) and issubclass(cls, ModelpackError):
        try:
            return cls(message)
        except TypeError:  # an error with more required fields than its message
            pass
    return FlavorError(
        f"Loading the package in a worker process failed: {kind}: {message}"
        if not ours
        else message
    )


def _output(
    chunk: io.Chunk, features: Features, preds: list[tuple[str, np.ndarray]], name: str
) -> Any:
    import pyarrow as pa

    n = chunk.table.num_rows
    keep = features.keep
    names = keep + [p for p, _ in preds]
    clash = sorted(c for c, count in Counter(names).items() if count > 1)
    if clash:
        raise InvalidArgument(
            f"The output would have two columns named {clash[0]!r} (a kept column and a "
            f"prediction). Rename the prediction with --prediction-column, or keep fewer columns."
        )
    for pred_name, arr in preds:
        if len(arr) != n:
            raise FlavorError(
                f"{name}: {_rows(chunk)}: the model returned {len(arr)} values for column "
                f"{pred_name!r}, for {n} rows."
            )
    arrays = [chunk.table.column(c).combine_chunks() for c in keep]
    arrays += [pa.array(arr) for _, arr in preds]
    return pa.RecordBatch.from_arrays(arrays, names=names)


# ---------------------------------------------------------------------------- progress


class _Progress:
    """A tqdm bar on stderr (rows, rows/s, ETA) when asked for or on a terminal; else nothing."""

    def __init__(self, enabled: bool | None, reader: io.Reader) -> None:
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
