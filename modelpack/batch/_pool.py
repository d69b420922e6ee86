"""Scoring the batches of a file in input order: in this process, or in worker processes.

A batch that fails is told as an error that names its rows, as the model raised it, wherever it
ran; a worker that dies or cannot load the package is told the same way.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from modelpack.batch._features import Features
from modelpack.batch._readers import Chunk, Reader
from modelpack.batch._scorer import Scorer
from modelpack.batch._workers import LoadFailed, WorkerDied, Workers
from modelpack.errors import FlavorError, InvalidArgument, ModelpackError, SchemaError
from modelpack.package import load, verify

_IN_FLIGHT_PER_WORKER = 2  # batches queued per worker: enough to keep it busy, and no more


class Pool:
    """Scores batches in this process (one worker) or in worker processes, in input order."""

    def __init__(self, root: Path, flavor: str, prediction_column: str | None, workers: int):
        self.workers: Any = None
        self.scorer: Scorer | None = None
        self.failed = True
        if workers == 1:
            self.scorer = Scorer(load(root, flavor=flavor), prediction_column)
        else:
            verify(root)  # a modified package fails here, once, rather than in every worker
            self.workers = Workers(root, flavor, prediction_column, workers)
        self.limit = _IN_FLIGHT_PER_WORKER * workers

    def run(self, reader: Reader, features: Features) -> Iterator[Any]:
        """Yield the output record batches, in input order."""
        chunks = reader.batches(features.read, features.types)
        if self.workers is None:
            for chunk in chunks:
                x = features.model_input(chunk)
                yield _output(chunk, features, self._local(x, chunk, reader.name), reader.name)
            self.failed = False
            return
        pending: deque[tuple[Any, Chunk]] = deque()
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

    def _local(self, x: Any, chunk: Chunk, name: str) -> list[tuple[str, np.ndarray]]:
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


def _rows(chunk: Chunk) -> str:
    n = chunk.table.num_rows
    return f"rows {chunk.start}-{chunk.start + n - 1}" if n else f"row {chunk.start}"


def _failure(name: str, chunk: Chunk, kind: str, message: str, ours: bool) -> Exception:
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
    chunk: Chunk, features: Features, preds: list[tuple[str, np.ndarray]], name: str
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
