"""Prometheus metrics, in a registry of the app's own (two apps in one process never mix).

Per-request numbers are kept as plain counters on the event loop (no locks: one thread
writes them) and turned into Prometheus families only when /metrics is scraped.

Under ``modelpack serve --workers N`` every worker also keeps its numbers in memory-mapped
files of its own, in a directory that the parent process made for this server (the design of
prometheus_client's multiprocess mode; see ``_File`` for why not its files). Updating them is a
store into shared memory, no system call. A scrape, whichever worker answers it, reads every
worker's files:

- counters and histograms are summed over every worker the server has had, so a worker that
  died still counts what it served;
- gauges come from live workers only. The queue depth is summed: the requests waiting in the
  whole server, the same series as with one worker. Load time and model info are given per
  worker, with a ``pid`` label: each worker loads its own copy, and after a registry move they
  may serve different versions for a while. A dead worker's gauge files are deleted, as
  ``prometheus_client.multiprocess.mark_process_dead`` does. Another worker's queue depth is
  at most ``_PUBLISH_S`` old.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import mmap
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from prometheus_client import CollectorRegistry, Counter, Gauge, Info
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_SLOTS = 512  # a worker file's first size, in numbers; it doubles when full
_PUBLISH_S = 1.0  # how often a worker refreshes its queue depth for the others' scrapes

_QUEUE_DEPTH = ("modelpack_queue_depth", "Requests waiting for the model")
_LOAD_SECONDS = (
    "modelpack_model_load_seconds",
    "Seconds the serving model took to load and smoke-test",
)
_MODEL = ("modelpack_model", "The model being served")
_RELOAD_FAILURES = (
    "modelpack_model_reload_failures",
    "New versions that failed to load or predict",
)


class _File:
    """Numbers that other processes read: doubles in a memory-mapped ``<stem>.values``, one
    slot per key, and the keys, as JSON lines in slot order, in ``<stem>.keys``.

    Setting a slot is one store into memory; only a key's first use writes to the file.
    prometheus_client's own files cost more on the hot path: an ``MmapedDict`` write is ~0.3 us
    and a request makes three, and its multiprocess values (a lock per update) are chosen for
    every metric of the process by ``PROMETHEUS_MULTIPROC_DIR``, read when it is imported.
    """

    def __init__(self, stem: Path, fd: int, keys: TextIO, mapped: mmap.mmap) -> None:
        self.stem = stem
        self._fd = fd
        self._keys = keys
        self._map = mapped
        self.values = memoryview(mapped).cast("d")
        self._slots: dict[tuple[Any, ...], int] = {}

    @classmethod
    def create(cls, stem: Path) -> _File:
        fd = os.open(f"{stem}.values", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        os.ftruncate(fd, _SLOTS * 8)
        # The keys come second: a reader that finds them finds the values.
        keys = open(f"{stem}.keys", "x", encoding="utf-8")  # closed by close()
        return cls(stem, fd, keys, mmap.mmap(fd, _SLOTS * 8))

    def slot(self, key: tuple[Any, ...]) -> int:
        slot = self._slots.get(key)
        if slot is None:
            slot = len(self._slots)
            if slot == len(self.values):
                size = 2 * len(self.values) * 8
                os.ftruncate(self._fd, size)
                self.values.release()
                self._map.close()
                self._map = mmap.mmap(self._fd, size)
                self.values = memoryview(self._map).cast("d")
            self._keys.write(json.dumps(key) + "\n")
            self._keys.flush()
            self._slots[key] = slot
        return slot

    def set(self, key: tuple[Any, ...], value: float) -> None:
        slot = self.slot(key)
        self.values[slot] = value

    def close(self, *, remove: bool = False) -> None:
        self.values.release()
        self._map.close()
        os.close(self._fd)
        self._keys.close()
        if remove:
            _remove(Path(f"{self.stem}.keys"))


def _remove(keys: Path) -> None:
    keys.unlink(missing_ok=True)
    keys.with_suffix(".values").unlink(missing_ok=True)


def _read(keys: Path) -> list[tuple[str, float]]:
    """``(key line, value)`` for each slot of the file whose keys are at ``keys``."""
    try:
        # The last piece is "" or a key being written, whose value is not set yet.
        lines = keys.read_text(encoding="utf-8").split("\n")[:-1]
        values = memoryview(keys.with_suffix(".values").read_bytes()).cast("d")
    except FileNotFoundError:  # a gauge file whose worker stopped meanwhile
        return []
    return list(zip(lines, values, strict=False))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or its number is another user's now
        return False
    return True


class _Requests:
    """Request counts and latency histograms by route, collected at scrape time."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, int], float] = {}
        self.latency: dict[str, list[float]] = {}  # route -> bucket counts + [sum]
        self._file: _File | None = None
        self._slots: dict[tuple[str, int], tuple[int, list[int]]] = {}

    def observe(self, route: str, status: int, seconds: float) -> None:
        key = (route, status)
        count = self.counts[key] = self.counts.get(key, 0) + 1
        hist = self.latency.get(route)
        if hist is None:
            hist = self.latency[route] = [0.0] * (len(_LATENCY) + 2)
        bucket = bisect.bisect_left(_LATENCY, seconds)
        hist[bucket] += 1
        hist[-1] += seconds
        if self._file is not None:
            count_slot, hist_slots = self._slots.get(key) or self._allocate(self._file, key)
            values = self._file.values
            values[count_slot] = count
            values[hist_slots[bucket]] = hist[bucket]
            values[hist_slots[-1]] = hist[-1]

    def _allocate(self, file: _File, key: tuple[str, int]) -> tuple[int, list[int]]:
        route, status = key
        count_slot = file.slot(("requests", route, status))
        hist_slots = [file.slot(("latency", route, i)) for i in range(len(_LATENCY) + 2)]
        self._slots[key] = count_slot, hist_slots
        return count_slot, hist_slots

    def attach(self, file: _File | None) -> None:
        """Keep the numbers in ``file`` too from now on (and what was counted before)."""
        self._file, self._slots = file, {}
        if file is None:
            return
        for key, count in self.counts.items():
            count_slot, hist_slots = self._allocate(file, key)
            file.values[count_slot] = count
            for slot, value in zip(hist_slots, self.latency[key[0]], strict=True):
                file.values[slot] = value

    def add(self, key: list[Any], value: float) -> None:
        """One number from a worker's file, summed into these."""
        if key[0] == "requests":
            route_status = (key[1], key[2])
            self.counts[route_status] = self.counts.get(route_status, 0) + value
        else:
            hist = self.latency.setdefault(key[1], [0.0] * (len(_LATENCY) + 2))
            hist[key[2]] += value

    def collect(self) -> Iterator[Any]:
        requests = CounterMetricFamily(
            "modelpack_requests", "Requests by route and status", labels=["route", "status"]
        )
        errors = CounterMetricFamily(
            "modelpack_request_errors", "Responses with status >= 400", labels=["route", "status"]
        )
        for (route, status), count in sorted(self.counts.items()):
            requests.add_metric([route, str(status)], count)
            if status >= 400:
                errors.add_metric([route, str(status)], count)
        latency = HistogramMetricFamily(
            "modelpack_request_seconds", "Request latency", labels=["route"]
        )
        for route, hist in sorted(self.latency.items()):
            cumulative, buckets = 0.0, []
            for bound, count in zip([*map(str, _LATENCY), "+Inf"], hist[:-1], strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            latency.add_metric([route], buckets, hist[-1])
        yield from (requests, errors, latency)


class _Batches:
    """Rows per model call, as a histogram collected at scrape time."""

    def __init__(self) -> None:
        self.counts: list[float] = [0] * (len(_BATCH) + 2)  # + [rows]
        self._file: _File | None = None
        self._slots: list[int] = []

    def observe(self, rows: int) -> None:
        bucket = bisect.bisect_left(_BATCH, rows)
        self.counts[bucket] += 1
        self.counts[-1] += rows
        if self._file is not None:
            values = self._file.values
            values[self._slots[bucket]] = self.counts[bucket]
            values[self._slots[-1]] = self.counts[-1]

    def attach(self, file: _File | None) -> None:
        self._file = file
        if file is not None:
            self._slots = [file.slot(("batches", i)) for i in range(len(self.counts))]
            for slot, value in zip(self._slots, self.counts, strict=True):
                file.values[slot] = value

    def add(self, key: list[Any], value: float) -> None:
        self.counts[key[1]] += value

    def collect(self) -> Iterator[Any]:
        family = HistogramMetricFamily("modelpack_batch_rows", "Rows per model call")
        cumulative: float = 0
        buckets = []
        for bound, count in zip(
            [*(str(float(b)) for b in _BATCH), "+Inf"], self.counts[:-1], strict=True
        ):
            cumulative += count
            buckets.append((bound, cumulative))
        family.add_metric([], buckets, self.counts[-1])
        yield family


class _ReloadFailures:
    """The counter that the deployment increments, kept in the worker's file when it has one."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.total = 0
        self._counter = Counter(*_RELOAD_FAILURES, registry=registry)
        self._file: _File | None = None

    def inc(self) -> None:
        self._counter.inc()
        self.total += 1
        if self._file is not None:
            self._file.set(("reload_failures",), self.total)

    def attach(self, file: _File | None) -> None:
        self._file = file
        if file is not None:
            file.set(("reload_failures",), self.total)


class _Workers:
    """The families of a scrape, from the files of every worker in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._keys: dict[str, list[Any]] = {}

    def _read(self, keys: Path) -> Iterator[tuple[list[Any], float]]:
        for line, value in _read(keys):
            key = self._keys.get(line)
            if key is None:
                key = self._keys[line] = json.loads(line)
            yield key, value

    def collect(self) -> Iterator[Any]:
        requests, batches, failures = _Requests(), _Batches(), 0.0
        for keys in self.directory.glob("counters_*.keys"):
            for key, value in self._read(keys):
                if key[0] == "batches":
                    batches.add(key, value)
                elif key[0] == "reload_failures":
                    failures += value
                else:
                    requests.add(key, value)
        waiting = 0.0
        load = GaugeMetricFamily(*_LOAD_SECONDS, labels=["pid"])
        model = InfoMetricFamily(*_MODEL, labels=["pid"])
        for keys in sorted(self.directory.glob("gauges_*.keys")):
            pid = keys.name.split("_")[1]
            if not _alive(int(pid)):
                _remove(keys)
                continue
            for key, value in self._read(keys):
                if key[0] == "queue_depth":
                    waiting += value
                elif key[0] == "load_seconds":
                    load.add_metric([pid], value)
                elif value:  # ["model", name, version, model_id]: 1, or 0 once swapped out
                    _, name, version, model_id = key
                    info = {"name": name, "version": version, "model_id": model_id}
                    model.add_metric([pid], info)
        yield from requests.collect()
        yield from batches.collect()
        yield GaugeMetricFamily(*_QUEUE_DEPTH, value=waiting)
        yield from (load, model, CounterMetricFamily(*_RELOAD_FAILURES, value=failures))


class Metrics:
    """The app's metrics. Given the server's metrics ``directory`` (a worker of several), a
    scrape reports every worker's numbers, from the files that each keeps there while its
    ``shared()`` runs."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._requests = _Requests()
        r.register(self._requests)  # type: ignore[arg-type]
        self._batches = _Batches()
        r.register(self._batches)  # type: ignore[arg-type]
        self.queue_depth = Gauge(*_QUEUE_DEPTH, registry=r)
        self.load_seconds = Gauge(*_LOAD_SECONDS, registry=r)
        self.model = Info(*_MODEL, registry=r)
        self.reload_failures = _ReloadFailures(r)
        self._directory = Path(directory) if directory is not None else None
        self._workers = _Workers(self._directory) if self._directory is not None else None
        self._gauges: _File | None = None  # this worker's, while shared() runs
        self._loaded: tuple[tuple[str, str, str], float] | None = None

    def loaded(self, name: str, version: str, model_id: str, seconds: float) -> None:
        self.model.info({"name": name, "version": version, "model_id": model_id})
        self.load_seconds.set(seconds)
        before, self._loaded = self._loaded, ((name, version, model_id), seconds)
        if self._gauges is not None:
            if before is not None and before[0] != self._loaded[0]:
                self._gauges.set(("model", *before[0]), 0)
            self._publish_model(self._gauges)

    def _publish_model(self, gauges: _File) -> None:
        if self._loaded is not None:
            model, seconds = self._loaded
            gauges.set(("model", *model), 1)
            gauges.set(("load_seconds",), seconds)

    def observe(self, route: str, status: int, seconds: float) -> None:
        self._requests.observe(route, status, seconds)

    def batch(self, rows: int) -> None:
        """One model call of ``rows`` rows."""
        self._batches.observe(rows)

    @contextlib.asynccontextmanager
    async def shared(self, queue_depth: Callable[[], int]) -> AsyncIterator[None]:
        """For the app's lifespan: with a directory, keep this worker's numbers in files of its
        own there, and its queue depth fresh; without one, nothing."""
        if self._directory is None:
            yield
            return
        pid, tag = os.getpid(), secrets.token_hex(4)
        for stale in self._directory.glob(f"gauges_{pid}_*.keys"):
            _remove(stale)  # a dead process's, whose pid this process has been given
        counters = _File.create(self._directory / f"counters_{pid}_{tag}")
        gauges = _File.create(self._directory / f"gauges_{pid}_{tag}")
        for part in (self._requests, self._batches, self.reload_failures):
            part.attach(counters)
        self._publish_model(gauges)
        self._gauges = gauges

        async def publish() -> None:
            while True:
                gauges.set(("queue_depth",), queue_depth())
                await asyncio.sleep(_PUBLISH_S)

        task = asyncio.get_running_loop().create_task(publish())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._gauges = None
            for part in (self._requests, self._batches, self.reload_failures):
                part.attach(None)
            counters.close()
            gauges.close(remove=True)  # a stopped worker's gauges go; its counters still count

    def render(self, queue_depth: int) -> bytes:
        if self._gauges is not None and self._workers is not None:
            self._gauges.set(("queue_depth",), queue_depth)
            return generate_latest(self._workers)
        self.queue_depth.set(queue_depth)
        return generate_latest(self.registry)
