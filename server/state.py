"""What every handler shares: the options, the store (through a ``Client``), the artifact
root, the authorizer, and the mapping between stored artifact locations and the URIs clients
see (``mlflow-artifacts:/...`` when the server proxies artifacts)."""

from __future__ import annotations

import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any

from modelpack.client import Client
from modelpack.experiments import DEFAULT_EXPERIMENT

if TYPE_CHECKING:
    from modelpack.server.auth import Authorizer
    from modelpack.server.config import ServerOptions

__all__ = ["DEFAULT_ID", "PROXY_SCHEME", "ServerState"]

DEFAULT_ID = "0"  # MLflow's id of the experiment "Default", which its clients assume exists
PROXY_SCHEME = "mlflow-artifacts:"


class ServerState:
    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        # synchronous: whatever a handler logs is stored before the answer says it is
        self.client = Client(options.backend_store_uri, options.artifact_root, synchronous=True)
        self.artifact_root = self.client.artifact_root.rstrip("/")
        self._lock = threading.Lock()
        self._default_id: str | None = None

    @property
    def store(self) -> Any:
        return self.client.store

    @cached_property
    def auth(self) -> Authorizer:
        from modelpack.server.auth import authorizer

        return authorizer(self)

    # ------------------------------------------------------------------ experiment "0"

    @property
    def default_experiment_id(self) -> str:
        """The store's id of the experiment "Default" (created on first use)."""
        if self._default_id is None:
            with self._lock:
                if self._default_id is None:
                    experiment = self.store.get_or_create_experiment(DEFAULT_EXPERIMENT)
                    self._default_id = experiment.experiment_id
        return self._default_id

    def experiment_in(self, wire_id: str) -> str:
        """A client's experiment id -> the store's ("0" is "Default")."""
        return self.default_experiment_id if wire_id == DEFAULT_ID else wire_id

    def experiment_out(self, store_id: str) -> str:
        """The store's experiment id -> the one clients see."""
        return DEFAULT_ID if store_id == self.default_experiment_id else store_id

    # ------------------------------------------------------------------ artifact URIs

    def public_uri(self, location: str | None) -> str | None:
        """A stored artifact location as clients see it: under the artifact root and proxied,
        ``mlflow-artifacts:/<path under the root>``; otherwise unchanged."""
        if location is None or not self.options.serve_artifacts:
            return location
        root = self.artifact_root
        if location == root:
            return f"{PROXY_SCHEME}/"
        if location.startswith(root + "/"):
            return f"{PROXY_SCHEME}/{location[len(root) + 1 :]}"
        return location

    def stored_location(self, uri: str) -> str:
        """The inverse of ``public_uri``; the path is not checked here (callers check it with
        ``modelpack.paths.check_relative`` before it touches storage)."""
        if uri.startswith(PROXY_SCHEME):
            rest = uri[len(PROXY_SCHEME) :].lstrip("/")
            return f"{self.artifact_root}/{rest}" if rest else self.artifact_root
        return uri
