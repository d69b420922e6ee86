"""Prometheus metrics, in a registry of the app's own (two apps in one process never mix).

Per-request numbers are kept as plain counters on the event loop (no locks: one thread
writes them) and turned into Prometheus families only when /metrics is scraped.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Info
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class _Requests:
    """Request counts and latency histograms by route, collected at scrape time."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, int], int] = {}
        self.latency: dict[str, list[float]] = {}  # route -> bucket counts + [sum]

    def observe(self, route: str, status: int, seconds: float) -> None:
        key = (route, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        hist = self.latency.get(route)
        if hist is None:
            hist = self.latency[route] = [0.0] * (len(_LATENCY) + 2)
        hist[bisect.bisect_left(_LATENCY, seconds)] += 1
        hist[-1] += seconds

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
        self.counts = [0] * (len(_BATCH) + 1)
        self.total = 0

    def observe(self, rows: int) -> None:
        self.counts[bisect.bisect_left(_BATCH, rows)] += 1
        self.total += rows

    def collect(self) -> Iterator[Any]:
        family = HistogramMetricFamily("modelpack_batch_rows", "Rows per model call")
        cumulative, buckets = 0, []
        for bound, count in zip(
            [*(str(float(b)) for b in _BATCH), "+Inf"], self.counts, strict=True
        ):
            cumulative += count
            buckets.append((bound, cumulative))
        family.add_metric([], buckets, self.total)
        yield family


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._requests = _Requests()
        r.register(self._requests)  # type: ignore[arg-type]
        self._batches = _Batches()
        r.register(self._batches)  # type: ignore[arg-type]
        self.queue_depth = Gauge(
            "modelpack_queue_depth", "Requests waiting for the model", registry=r
        )
        self.load_seconds = Gauge(
            "modelpack_model_load_seconds",
            "Seconds the serving model took to load and smoke-test",
            registry=r,
        )
        self.model = Info("modelpack_model", "The model being served", registry=r)
        self.reload_failures = Counter(
            "modelpack_model_reload_failures",
            "New versions that failed to load or predict",
            registry=r,
        )

    def loaded(self, name: str, version: str, model_id: str, seconds: float) -> None:
        self.model.info({"name": name, "version": version, "model_id": model_id})
        self.load_seconds.set(seconds)

    def observe(self, route: str, status: int, seconds: float) -> None:
        self._requests.observe(route, status, seconds)

    def batch(self, rows: int) -> None:
        """One model call of ``rows`` rows."""
        self._batches.observe(rows)

    def render(self, queue_depth: int) -> bytes:
        self.queue_depth.set(queue_depth)
        return generate_latest(self.registry)
