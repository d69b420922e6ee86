"""What the server serves: the loaded model, and following the registry when its target moves.

For ``models:/Name/<stage>``, ``models:/Name@alias`` and ``models:/Name/latest`` a poller asks
the registry which version the URI names. When that changes, the new version is loaded,
verified and smoke-tested off the event loop, then swapped in with one assignment: requests
already queued finish on the old model, new ones go to the new one. A version that fails to
load or to predict leaves the old one serving and is reported in /health, /version, /metrics.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import modelpack
from modelpack import resolution, uris
from modelpack.serving.batching import Batcher
from modelpack.serving.config import ServeOptions
from modelpack.serving.metrics import Metrics

log = logging.getLogger("modelpack.serving")


@dataclass
class Loaded:
    """One loaded, smoke-tested model and its batching loop."""

    pack: modelpack.Package
    name: str
    version: str  # the registered version, or the model_id for a plain path
    registered_version: int | None
    batcher: Batcher
    load_seconds: float
    loaded_at: dt.datetime


def _smoke_test(pack: modelpack.Package) -> None:
    example = pack.input_example()
    if example is not None:
        pack.predict(example)


class Deployment:
    """Holds the serving model for one URI and swaps it when the registry moves."""

    def __init__(self, uri: str, options: ServeOptions, metrics: Metrics) -> None:
        self.uri = uri
        self.target = uris.parse(uri)
        self.options = options
        self.metrics = metrics
        self.current: Loaded | None = None
        self.arriving = 0  # requests being read and checked, not yet queued
        self.last_error: dict[str, Any] | None = None
        self.failed_version: int | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelpack-model")
        self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelpack-loader")
        self._poller: asyncio.Task[None] | None = None
        self._client: Any = None
        self._draining: set[asyncio.Task[None]] = set()

    @property
    def moving(self) -> bool:
        return isinstance(self.target, uris.ModelURI) and self.target.moving

    # ------------------------------------------------------------------ loading

    def _client_for(self) -> Any:
        if self._client is None:
            self._client = modelpack.Client(
                self.options.tracking_uri, self.options.artifact_root, create=False
            )
        return self._client

    def _target(self) -> Any:
        """The ModelVersion the URI names now (registry URIs only)."""
        assert isinstance(self.target, uris.ModelURI)
        return resolution.model_version(self._client_for(), self.target)

    def _load(self, version: Any | None) -> tuple[modelpack.Package, float]:
        started = time.perf_counter()
        path = resolution.resolve(version or self.uri, self._client_for())
        pack = modelpack.load(path, flavor=self.options.flavor)
        _smoke_test(pack)
        return pack, time.perf_counter() - started

    def _name(self, version: Any | None, pack: modelpack.Package) -> str:
        if self.options.name:
            return self.options.name
        if version is not None:
            return str(version.name)
        return Path(pack.path).name

    def _activate(self, pack: modelpack.Package, version: Any | None, seconds: float) -> Loaded:
        batcher = Batcher(
            pack.run,
            max_batch_size=self.options.max_batch_size,
            max_delay_s=self.options.max_batch_delay_ms / 1000,
            max_queue=self.options.max_queue,
            executor=self._executor,
            arriving=lambda: self.arriving,
            on_batch=self.metrics.batch,
        )
        batcher.start()
        loaded = Loaded(
            pack=pack,
            name=self._name(version, pack),
            version=str(version.version) if version is not None else pack.model_id,
            registered_version=version.version if version is not None else None,
            batcher=batcher,
            load_seconds=seconds,
            loaded_at=dt.datetime.now(dt.UTC),
        )
        self.metrics.loaded(loaded.name, loaded.version, pack.model_id, seconds)
        return loaded

    async def start(self) -> None:
        """Load the first model (the server is not ready until it has passed its smoke test)."""
        loop = asyncio.get_running_loop()
        version = (
            await loop.run_in_executor(self._loader, self._target)
            if isinstance(self.target, uris.ModelURI)
            else None
        )
        pack, seconds = await loop.run_in_executor(self._loader, self._load, version)
        self.current = self._activate(pack, version, seconds)
        log.info(
            "Serving %s version %s (%s, loaded in %.2fs)",
            self.current.name,
            self.current.version,
            pack.flavor,
            seconds,
        )
        if self.moving and self.options.poll_interval_s > 0:
            self._poller = loop.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.options.poll_interval_s)
            try:
                await self.check_registry()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the registry being down must not kill us
                log.warning("Could not poll the registry for %s: %s", self.uri, exc)

    async def check_registry(self) -> bool:
        """Follow the registry once; True if a new version was swapped in."""
        loop = asyncio.get_running_loop()
        version = await loop.run_in_executor(self._loader, self._target)
        current = self.current
        if current is not None and version.version == current.registered_version:
            return False
        if version.version == self.failed_version:
            return False  # already tried and failed; wait for the target to move again
        log.info("%s now names version %s; loading it", self.uri, version.version)
        try:
            pack, seconds = await loop.run_in_executor(self._loader, self._load, version)
        except Exception as exc:  # noqa: BLE001 - the old model keeps serving
            self.failed_version = version.version
            self.last_error = {
                "version": str(version.version),
                "error": f"{type(exc).__name__}: {exc}",
                "at": dt.datetime.now(dt.UTC).isoformat(),
            }
            self.metrics.reload_failures.inc()
            log.error(
                "Version %s failed to load or predict; still serving %s: %s",
                version.version,
                current.version if current else None,
                exc,
            )
            return False
        new = self._activate(pack, version, seconds)
        old, self.current = self.current, new
        self.failed_version = None
        self.last_error = None
        log.info(
            "Swapped %s: version %s -> %s", new.name, old.version if old else None, new.version
        )
        if old is not None:
            # Keep a reference: the loop holds tasks weakly, and the old queue must drain.
            drain = loop.create_task(old.batcher.drain())
            self._draining.add(drain)
            drain.add_done_callback(self._draining.discard)
        return True

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        if self.current is not None:
            await self.current.batcher.drain()
        self._executor.shutdown(wait=False)
        self._loader.shutdown(wait=False)
