"""Adaptive batching: concurrent requests merged into one model call, and split back.

One loop per loaded model takes requests from a bounded queue. It runs a request at once when
nobody else is on the way; when other requests are arriving it waits up to ``max_delay`` for
them, up to ``max_batch_size`` rows. While the model runs, new requests queue up, so under load
batches grow by themselves. A full queue refuses at once (503) instead of growing memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelpack.enforcement import Columns
from modelpack.errors import SchemaError
from modelpack.serving.errors import HTTPError, ModelFailed

log = logging.getLogger("modelpack.serving")
# A model call shorter than this runs on the event loop: the thread hop would cost more.
INLINE_SECONDS = 0.0005


@dataclass
class Item:
    data: Any
    rows: int
    params: Mapping[str, Any]
    future: asyncio.Future[Any]
    solo: bool = False
    key: Any = field(default=None)


def _mergeable(data: Any) -> bool:
    if isinstance(data, np.ndarray | Columns):
        return True
    return isinstance(data, dict) and all(isinstance(v, np.ndarray) for v in data.values())


def merge(parts: list[Any]) -> Any:
    """Concatenate checked inputs of one signature along their rows."""
    first = parts[0]
    if isinstance(first, np.ndarray):
        return np.concatenate(parts)
    if isinstance(first, Columns):
        return Columns(
            {k: np.concatenate([p[k] for p in parts]) for k in first}, sum(p.n_rows for p in parts)
        )
    return {k: np.concatenate([p[k] for p in parts]) for k in first}


def split(output: Any, sizes: list[int]) -> list[Any] | None:
    """Cut a merged prediction back into one piece per request (None if it has no row axis)."""
    total = sum(sizes)
    bounds = np.cumsum([0, *sizes])
    if isinstance(output, np.ndarray):
        if output.ndim == 0 or output.shape[0] != total:
            return None
        return [output[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    if isinstance(output, dict):
        values = {k: np.asarray(v) for k, v in output.items()}
        if any(v.ndim == 0 or v.shape[0] != total for v in values.values()):
            return None
        return [
            {k: v[a:b] for k, v in values.items()}
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]
    if hasattr(output, "iloc") and len(output) == total:
        return [output.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return None


class Batcher:
    """Queues checked requests for one model and runs them, merged, on ``executor``."""

    def __init__(
        self,
        run: Callable[[Any, Mapping[str, Any]], Any],
        *,
        max_batch_size: int,
        max_delay_s: float,
        max_queue: int,
        executor: Executor,
        arriving: Callable[[], int],
        on_batch: Callable[[int], None],
    ) -> None:
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=max_queue)
        self._executor = executor
        self._arriving = arriving
        self._on_batch = on_batch
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        self._call_seconds: float | None = None  # moving average of one model call

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    @property
    def depth(self) -> int:
        return self.queue.qsize()

    async def submit(self, data: Any, rows: int, params: Mapping[str, Any]) -> Any:
        """The prediction for this request's rows (raises what its model call raised)."""
        avg = self._call_seconds
        if avg is not None and avg < INLINE_SECONDS and not self._busy and self.queue.empty():
            # A fast model with nothing queued: answering now costs less than a queue round
            # trip, and nobody can be waiting behind this request.
            self._on_batch(rows)
            try:
                return self._timed(data, params)
            except Exception as exc:  # noqa: BLE001 - the same answer a batch failure gives
                raise _failure(exc) from None
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        solo = (
            self.max_batch_size == 1
            or rows < 0
            or rows > self.max_batch_size
            or not _mergeable(data)
        )
        key = tuple(sorted((k, repr(v)) for k, v in params.items())) if params else None
        try:
            self.queue.put_nowait(Item(data, rows, params, future, solo, key))
        except asyncio.QueueFull:
            raise HTTPError(
                503,
                f"The server is at capacity ({self.queue.maxsize} requests "
                f"queued); retry with backoff.",
            ) from None
        return await future

    async def drain(self) -> None:
        """Wait until every queued request has been answered, then stop the loop."""
        while self.queue.qsize() or self._busy:
            await asyncio.sleep(0.005)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        carry: Item | None = None
        while True:
            item = carry if carry is not None else await self.queue.get()
            carry = None
            if item.future.done():  # the client timed out or went away
                continue
            batch, rows = [item], item.rows
            self._busy = True
            deadline: float | None = None
            while not item.solo and rows < self.max_batch_size:
                try:
                    nxt = self.queue.get_nowait()
                except asyncio.QueueEmpty:
                    if self._arriving() <= 0:
                        break  # nobody else is on the way: do not make this request wait
                    if deadline is None:
                        deadline = loop.time() + self.max_delay_s
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        nxt = await asyncio.wait_for(self.queue.get(), remaining)
                    except TimeoutError:
                        break
                if nxt.future.done():
                    continue
                if nxt.solo or nxt.key != item.key or rows + nxt.rows > self.max_batch_size:
                    carry = nxt
                    break
                batch.append(nxt)
                rows += nxt.rows
            try:
                await self._execute(batch, rows)
            finally:
                self._busy = False

    def _timed(self, data: Any, params: Mapping[str, Any]) -> Any:
        started = time.perf_counter()
        try:
            return self._run(data, params)
        finally:
            took = time.perf_counter() - started
            avg = self._call_seconds
            self._call_seconds = took if avg is None else 0.8 * avg + 0.2 * took

    async def _call(self, data: Any, params: Mapping[str, Any]) -> Any:
        """Run the model: inline when its calls take less than a thread hop costs the event
        loop (an ONNX forest: ~0.1 ms), else on the model's thread (an sklearn forest)."""
        avg = self._call_seconds
        if avg is not None and avg < INLINE_SECONDS:
            return self._timed(data, params)
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._timed, data, params
        )

    async def _execute(self, batch: list[Item], rows: int) -> None:
        self._on_batch(rows)
        if len(batch) == 1:
            item = batch[0]
            try:
                result = await self._call(item.data, item.params)
            except Exception as exc:  # noqa: BLE001 - reported to the one client
                _fail(item, exc)
            else:
                if not item.future.done():
                    item.future.set_result(result)
            return
        try:
            merged = merge([i.data for i in batch])
            output = await self._call(merged, batch[0].params)
            pieces = split(output, [i.rows for i in batch])
        except Exception:  # noqa: BLE001 - retried one by one so only the culprit fails
            pieces = None
        if pieces is None:
            for item in batch:
                await self._execute([item], item.rows)
            return
        for item, piece in zip(batch, pieces, strict=True):
            if not item.future.done():
                item.future.set_result(piece)


def _failure(exc: Exception) -> Exception:
    """What the client is told when the model raised ``exc`` (the details go to the log)."""
    if isinstance(exc, HTTPError | SchemaError):
        # A flavor that finds a value the model cannot take (sklearn: NaN, inf, beyond
        # float32) says so, naming the column: the client's fault, not the model's.
        return exc
    # One line per failure; the traceback (the model's own code, mostly) at --log-level debug.
    reason = str(exc).strip().splitlines()
    log.error(
        "The model failed to predict: %s%s", type(exc).__name__, f": {reason[0]}" if reason else ""
    )
    log.debug("The model's traceback:", exc_info=exc)
    return ModelFailed(
        f"The model failed to predict ({type(exc).__name__}); the server log has the details."
    )


def _fail(item: Item, exc: Exception) -> None:
    if not item.future.done():
        item.future.set_exception(_failure(exc))
