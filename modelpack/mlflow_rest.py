"""Reading an MLflow tracking server over HTTP: its REST API (``/api/2.0/mlflow/...``, every
listing paged) and its artifact routes, with the standard library's urllib."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modelpack.errors import InvalidArgument, ModelpackError, NotFound
from modelpack.mlflow_readers import (
    HISTORY_PAGE,
    PAGE,
    SourceExperiment,
    SourceModel,
    SourceRun,
    SourceVersion,
    copy_tree,
    version_from_dict,
)
from modelpack.paths import check_relative
from modelpack.store.imports import MetricPoint
from modelpack.uris import redact

__all__ = ["RestReader"]

TIMEOUT_S = 60.0
MAX_PAGES = 100_000  # a bound on any paged listing, far past any real store


def _pairs(items: Any) -> dict[str, str]:
    return {str(i["key"]): str(i.get("value", "")) for i in items or ()}


class RestReader:
    """An MLflow tracking server (``http://host:port``, optionally with a path prefix)."""

    def __init__(self, url: str) -> None:
        self.base = url.rstrip("/")
        self.description = f"MLflow server {redact(self.base)}"

    # ------------------------------------------------------------------ transport

    def _open(self, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        url = f"{self.base}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params, doseq=True)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            return urllib.request.urlopen(request, timeout=TIMEOUT_S)  # noqa: S310 - http(s) only
        except urllib.error.HTTPError as exc:
            raise self._error(exc, path) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ModelpackError(
                f"Cannot reach the {self.description}: {reason}. Is the server running?"
            ) from None

    def _error(self, exc: urllib.error.HTTPError, path: str) -> ModelpackError:
        try:
            detail = json.loads(exc.read() or b"{}")
        except ValueError:
            detail = {}
        message = detail.get("message") if isinstance(detail, dict) else None
        code = detail.get("error_code") if isinstance(detail, dict) else None
        text = f"{path} answered HTTP {exc.code}" + (f" {code}: {message}" if message else "")
        cls = NotFound if exc.code == 404 else ModelpackError
        return cls(f"The {self.description}: {text}")

    def _json(self, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Any:
        with self._open(f"/api/2.0/mlflow/{path}", params, body) as reply:
            raw = reply.read()
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            raise ModelpackError(
                f"The {self.description} answered {path} with something that is not JSON; "
                f"is this an MLflow server?"
            ) from None
        if not isinstance(data, dict):
            raise ModelpackError(f"The {self.description} answered {path} with {type(data)}.")
        return data

    def _pages(
        self,
        route: str,
        field: str,
        *,
        post: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Iterator[Any]:
        """Every item of ``field`` over all pages (POST ``post`` or GET ``params``)."""
        token = None
        for _ in range(MAX_PAGES):
            if post is not None:
                page = self._json(route, body={**post, **({"page_token": token} if token else {})})
            else:
                extra: dict[str, Any] = {"page_token": token} if token else {}
                page = self._json(route, params={**(params or {}), **extra})
            yield from page.get(field) or ()
            token = page.get("next_page_token")
            if not token:
                return
        raise ModelpackError(f"The {self.description} kept paging {route} past {MAX_PAGES} pages.")

    # ------------------------------------------------------------------ tracking

    def experiments(self) -> list[SourceExperiment]:
        body = {"max_results": PAGE, "view_type": "ALL"}
        return [
            SourceExperiment(
                experiment_id=str(e["experiment_id"]),
                name=str(e["name"]),
                artifact_location=str(e.get("artifact_location") or ""),
                lifecycle_stage=str(e.get("lifecycle_stage") or "active"),
                creation_time=int(e.get("creation_time") or 0),
                last_update_time=int(e.get("last_update_time") or e.get("creation_time") or 0),
                tags=_pairs(e.get("tags")),
            )
            for e in self._pages("experiments/search", "experiments", post=body)
        ]

    def runs(self, experiment: SourceExperiment) -> list[SourceRun]:
        body = {
            "experiment_ids": [experiment.experiment_id],
            "run_view_type": "ALL",
            "max_results": PAGE,
        }
        out = []
        for run in self._pages("runs/search", "runs", post=body):
            info, data = run.get("info") or {}, run.get("data") or {}
            tags = _pairs(data.get("tags"))
            out.append(
                SourceRun(
                    run_id=str(info.get("run_id") or info.get("run_uuid")),
                    experiment_id=experiment.experiment_id,
                    run_name=str(info.get("run_name") or tags.get("mlflow.runName") or ""),
                    user_id=str(info.get("user_id") or ""),
                    status=str(info.get("status") or "RUNNING"),
                    start_time=int(info.get("start_time") or 0),
                    end_time=None if info.get("end_time") is None else int(info["end_time"]),
                    lifecycle_stage=str(info.get("lifecycle_stage") or "active"),
                    artifact_uri=str(info.get("artifact_uri") or ""),
                    params=_pairs(data.get("params")),
                    tags=tags,
                    metric_keys=tuple(sorted({str(m["key"]) for m in data.get("metrics") or ()})),
                )
            )
        return out

    def metric_history(self, run: SourceRun, key: str) -> list[MetricPoint]:
        params = {"run_id": run.run_id, "metric_key": key, "max_results": HISTORY_PAGE}
        return [
            # NaN and infinities come as the strings "NaN", "Infinity", "-Infinity".
            MetricPoint(
                key, float(m["value"]), int(m.get("timestamp") or 0), int(m.get("step") or 0)
            )
            for m in self._pages("metrics/get-history", "metrics", params=params)
        ]

    def _download(self, path: str, params: dict[str, Any] | None, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        with self._open(path, params) as reply, target.open("wb") as out:
            shutil.copyfileobj(reply, out)

    def download_run_artifacts(self, run: SourceRun, dest: Path) -> None:
        pending = [""]
        for _ in range(MAX_PAGES):
            if not pending:
                return
            folder = pending.pop()
            params = {"run_id": run.run_id, **({"path": folder} if folder else {})}
            for f in self._pages("artifacts/list", "files", params=params):
                rel = str(check_relative(str(f["path"]), "Artifact path"))
                if f.get("is_dir"):
                    pending.append(rel)
                else:
                    query = {"run_id": run.run_id, "path": rel}
                    self._download("/get-artifact", query, dest / rel)
        raise ModelpackError(f"Run {run.run_id}'s artifacts nest deeper than {MAX_PAGES} levels.")

    # ------------------------------------------------------------------ registry

    def registered_models(self) -> list[SourceModel]:
        out = []
        for m in self._pages(
            "registered-models/search", "registered_models", params={"max_results": PAGE}
        ):
            name = str(m["name"])
            versions = [
                version_from_dict(v, _pairs(v.get("tags")))
                for v in self._pages(
                    "model-versions/search",
                    "model_versions",
                    params={"filter": f"name = {_quoted(name)}", "max_results": PAGE},
                )
            ]
            out.append(
                SourceModel(
                    name=name,
                    description=str(m.get("description") or ""),
                    creation_time=int(m.get("creation_timestamp") or 0),
                    last_updated_time=int(m.get("last_updated_timestamp") or 0),
                    tags=_pairs(m.get("tags")),
                    aliases={str(a["alias"]): int(a["version"]) for a in m.get("aliases") or ()},
                    versions=tuple(sorted(versions, key=lambda v: v.version)),
                )
            )
        return out

    def download_version(self, version: SourceVersion, dest: Path) -> None:
        reply = self._json(
            "model-versions/get-download-uri",
            params={"name": version.name, "version": str(version.version)},
        )
        uri = str(reply.get("artifact_uri") or "")
        if uri.startswith("mlflow-artifacts:"):
            self._download_proxied(urllib.parse.urlparse(uri).path.strip("/"), dest)
            return
        if not uri:
            raise NotFound(f"The {self.description} has no download URI for {version.name!r}.")
        # Another scheme (s3://, a path on this machine): read it directly.
        copy_tree(uri, dest, None, f"Version {version.version} of {version.name!r}")

    def _download_proxied(self, top: str, dest: Path) -> None:
        """Copy a folder of the server's artifact proxy (``mlflow-artifacts:/top``)."""
        pending, found = [""], 0
        for _ in range(MAX_PAGES):
            if not pending:
                break
            rel_dir = pending.pop()
            where = f"{top}/{rel_dir}".rstrip("/")
            with self._open("/api/2.0/mlflow-artifacts/artifacts", {"path": where}) as reply:
                listing = json.loads(reply.read() or b"{}")
            for f in listing.get("files") or ():
                rel = str(check_relative(f"{rel_dir}/{f['path']}".lstrip("/"), "Artifact path"))
                if f.get("is_dir"):
                    pending.append(rel)
                else:
                    quoted = urllib.parse.quote(f"{top}/{rel}")
                    self._download(
                        f"/api/2.0/mlflow-artifacts/artifacts/{quoted}", None, dest / rel
                    )
                    found += 1
        if not found:
            raise NotFound(f"mlflow-artifacts:/{top} on the {self.description} holds no files.")


def _quoted(name: str) -> str:
    if "'" not in name:
        return f"'{name}'"
    if '"' not in name:
        return f'"{name}"'
    raise InvalidArgument(f"Registered model name {name!r} has both quote characters.")
