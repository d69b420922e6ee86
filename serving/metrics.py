"""Prometheus metrics, in a registry of the app's own (two apps in one process never mix)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

_LATENCY = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "modelpack_requests", "Requests by route and status", ["route", "status"], registry=r
        )
        self.errors = Counter(
            "modelpack_request_errors",
            "Responses with status >= 400",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "modelpack_request_seconds", "Request latency", ["route"], buckets=_LATENCY, registry=r
        )
        self.batch_size = Histogram(
            "modelpack_batch_rows", "Rows per model call", buckets=_BATCH, registry=r
        )
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
        self._children: dict[tuple[str, int], tuple[object, object, object]] = {}

    def loaded(self, name: str, version: str, model_id: str, seconds: float) -> None:
        self.model.info({"name": name, "version": version, "model_id": model_id})
        self.load_seconds.set(seconds)

    def observe(self, route: str, status: int, seconds: float) -> None:
        # Label lookups cost microseconds; keep the children once per (route, status).
        children = self._children.get((route, status))
        if children is None:
            children = (
                self.requests.labels(route, str(status)),
                self.errors.labels(route, str(status)) if status >= 400 else None,
                self.latency.labels(route),
            )
            self._children[(route, status)] = children
        requests, errors, latency = children
        requests.inc()  # type: ignore[attr-defined]
        if errors is not None:
            errors.inc()  # type: ignore[attr-defined]
        latency.observe(seconds)  # type: ignore[attr-defined]

    def render(self, queue_depth: int) -> bytes:
        self.queue_depth.set(queue_depth)
        return generate_latest(self.registry)
