"""The model registry over MLflow's REST API (``/mlflow/registered-models/...``,
``/mlflow/model-versions/...``), and what MLflow lacks under ``/modelpack/...``: the audit
history, the verification of a stored version, the newest version and the one in a stage.

Registering (``model-versions/create``) is where MLflow's server was attacked (CVE-2023-1177,
-2356, -2780, 2026-2614: a ``source`` that walks out of the artifact root makes the server copy
or serve any file). Here the ``source`` must be one of

- ``models:/m-<id>``: a LoggedModel's files (MLflow 3 clients);
- ``models:/<name>/<version>`` or ``models:/<name>@<alias>``: a registered version (a copy);
- ``runs:/<run_id>/<path>``: a path under the run's artifact location;
- ``mlflow-artifacts:/<path>`` (when the server proxies artifacts): under the artifact location
  of the run ``run_id``, of a LoggedModel (``.../models/m-<id>/artifacts/...``) or of an upload
  folder ``uploads/<32 hex>/`` (modelpack's own client uploads a package there first);
- the run's own artifact URI followed by a path (MLflow 2 clients without the proxy; ``run_id``
  given);

with no ``..`` or ``.`` segment (plain or percent-encoded, once or more), no backslash, NUL or
control character, and, on a local artifact store, no symlink anywhere below the location it
must lie in (checked on the real path). Anything else is a 400 naming why, before any file is
read. The files are then copied into registry-owned storage (``<root>/registry/<uuid>``) and
verified there: a modelpack package against its manifest (a bad hash is a 400 naming the file),
an MLflow model directory converted into a verified package that keeps MLflow's files and
``MLmodel`` (so ``mlflow.pyfunc.load_model`` and ``modelpack.load`` both accept the folder that
``get-download-uri`` names). The version is READY when the call returns; every registry write
records the authenticated user in the history.

Access: reads need READ on the model; writes EDIT; renaming, deleting, alias moves and
transitions to Production or Archived need MANAGE; creating a model that does not exist needs
the editor role. Searches need a login and show only the models the caller may read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from modelpack.errors import FormatError, IntegrityError, InvalidArgument, NotFound
from modelpack.server.endpoints import LOGIN, Call, Endpoint, on_model
from modelpack.server.state import PROXY_SCHEME, ServerState
from modelpack.server.wire import (
    ApiError,
    boolean,
    integer,
    optional_text,
    pairs,
    strings,
    text,
)

__all__ = ["ENDPOINTS", "Located", "locate_source", "model_version_json", "registered_model_json"]

RM = "/mlflow/registered-models"
MV = "/mlflow/model-versions"
EXT = "/modelpack"
MAX_MODELS_PAGE = 1000
MAX_VERSIONS_PAGE = 200_000
_STORE_PAGE = 50_000  # the most one store search returns (modelpack.store.search.MAX_RESULTS)
_RUN_ID = re.compile(r"[0-9a-f]{32}")
_UPLOAD = re.compile(r"uploads/[0-9a-f]{32}(/.*)?")
_IN_LOGGED_MODEL = re.compile(r"(?P<prefix>.+/models/(?P<id>m-[0-9a-f]{32})/artifacts)(/.*)?")
_MAX_SOURCE = 4096
_DECODINGS = 4  # how many layers of percent-encoding a source is unwrapped to be checked


# ---------------------------------------------------------------------- JSON shapes


def _tags(tags: Any) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in tags.items()]


def logged_model_of(source: str) -> str | None:
    """The LoggedModel id of a ``models:/m-<id>`` source, else None."""
    from modelpack.uris import logged_model_id

    return logged_model_id(source)


def model_version_json(version: Any, state: ServerState) -> dict[str, Any]:
    """MLflow's ``ModelVersion`` message (version as a string, stage and status as names),
    with what modelpack's own client needs to verify a load (MLflow's clients ignore fields
    they do not know): ``modelpack_model_id`` and ``manifest_sha256``, the package's record,
    and ``storage_location`` as clients see it."""
    out: dict[str, Any] = {
        "name": version.name,
        "version": str(version.version),
        "creation_timestamp": version.creation_timestamp,
        "last_updated_timestamp": version.last_updated_timestamp,
        "user_id": version.user_id,
        "current_stage": version.stage,
        "description": version.description,
        "source": version.source,
        "status": version.status or "READY",
        "status_message": "",
        "tags": _tags(version.tags),
        "run_link": "",
        "aliases": list(version.aliases),
    }
    if version.run_id:
        out["run_id"] = version.run_id
    model_id = logged_model_of(version.source)
    if model_id is not None:
        out["model_id"] = model_id
    out["modelpack_model_id"] = version.model_id
    out["manifest_sha256"] = version.manifest_sha256
    out["storage_location"] = state.public_uri(version.storage_location)
    return out


def registered_model_json(model: Any, state: ServerState) -> dict[str, Any]:
    """MLflow's ``RegisteredModel`` message."""
    return {
        "name": model.name,
        "creation_timestamp": model.creation_timestamp,
        "last_updated_timestamp": model.last_updated_timestamp,
        "description": model.description,
        "latest_versions": [model_version_json(v, state) for v in model.latest_versions],
        "tags": _tags(model.tags),
        "aliases": [{"alias": a, "version": str(v)} for a, v in sorted(model.aliases.items())],
    }


# ---------------------------------------------------------------------- access


def _name(call: Call) -> str:
    return text(call.params, "name")


def _existing_name(call: Call) -> str | None:
    """The model's name if it exists; None for a model about to be created (the authorizer
    then asks for the editor role)."""
    name = _name(call)
    try:
        call.state.store.get_registered_model(name)
    except NotFound:
        return None
    return name


def _require(call: Call, level: str) -> None:
    """Check ``level`` on the call's model, beyond what its endpoint required."""
    access = on_model(level, _name)
    call.state.auth.authorize(
        dataclasses.replace(call, endpoint=dataclasses.replace(call.endpoint, access=access))
    )


def _readable(call: Call) -> set[str] | None:
    """The names of the models the caller may read (None: all of them)."""
    from modelpack.server import auth

    return auth.readable_models(call)


# ---------------------------------------------------------------------- sources


def refuse(source: str, why: str) -> ApiError:
    shown = source if len(source) <= 200 else source[:200] + "..."
    return ApiError(
        "INVALID_PARAMETER_VALUE",
        f"Invalid model version source {shown!r}: {why}. A source is models:/m-<id>, "
        f"models:/<name>/<version>, runs:/<run_id>/<path>, or a path under the artifact "
        f"location of its run (run_id), of a logged model or of an uploads/ folder "
        f"(mlflow-artifacts:/...).",
    )


def check_source_text(source: Any) -> str:
    """Refuse a source with traversal in it, at any layer of percent-encoding."""
    if not isinstance(source, str) or not source:
        raise ApiError("INVALID_PARAMETER_VALUE", "Missing value for required parameter 'source'.")
    if len(source) > _MAX_SOURCE:
        raise refuse(source, f"it is {len(source)} characters long; the limit is {_MAX_SOURCE}")
    current = source
    for layer in range(_DECODINGS + 1):
        how = "" if layer == 0 else " once decoded" if layer == 1 else f" decoded {layer} times"
        if "\\" in current:
            raise refuse(source, f"it contains a backslash{how}")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in current):
            raise refuse(source, f"it contains a NUL or control character{how}")
        segments = current.split("/")
        if ".." in segments:
            raise refuse(source, f"it contains a '..' segment{how}")
        if "." in segments:
            raise refuse(source, f"it contains a '.' segment{how}")
        decoded = unquote(current)
        if decoded == current:
            return source
        current = decoded
    raise refuse(source, f"it is percent-encoded more than {_DECODINGS} times")


def _relative(source: str, rel: str) -> str:
    """``rel`` (a path below a location) checked clean: "" for the location itself."""
    from modelpack.paths import check_length, check_relative

    rel = rel.rstrip("/")  # a trailing slash names the same folder
    if rel == "":
        return ""
    if rel.startswith("/") or "//" in rel:
        raise refuse(source, "its path has an empty segment or is absolute")
    try:
        checked = str(check_relative(rel, "Source path"))
        check_length(checked, "Source path")
    except FormatError as exc:
        raise refuse(source, exc.message.rstrip(".")) from None
    return checked


@dataclass(frozen=True)
class Located:
    """Where a source's files are: ``rel`` under the artifact location ``root``."""

    root: str
    rel: str
    run_id: str | None = None
    logged_model: str | None = None
    registered: Any = None  # the ModelVersion a models:/<name>/<version> source names


def _may_read(call: Call, resource_type: str, resource_id: str) -> None:
    """The caller must be able to read what a source copies from (a run's or logged model's
    experiment, a registered model): registering is no way around READ."""
    call.state.auth.check(call, resource_type, "READ", resource_id)


def _run(call: Call, run_id: str, source: str) -> Any:
    if not _RUN_ID.fullmatch(run_id):
        raise refuse(source, f"run id {run_id!r} is not 32 hex digits")
    run = call.state.store.get_run(run_id)
    _may_read(call, "experiment", run.info.experiment_id)
    return run


def _logged_model(call: Call, model_id: str, source: str) -> Any:
    model = call.state.store.get_mlflow_logged_model(model_id)
    _may_read(call, "experiment", model.experiment_id)
    if model.status != "LOGGED_MODEL_READY":
        raise refuse(
            source,
            f"logged model {model_id} is {model.status}; the client finalizes it "
            f"LOGGED_MODEL_READY once its files are uploaded, then registers it",
        )
    return model


def _under(location: str, candidate: str) -> str | None:
    """``candidate``'s path below ``location`` ("" for itself), or None if not below it."""
    location = location.rstrip("/")
    if candidate == location or candidate == location + "/":
        return ""
    if candidate.startswith(location + "/"):
        return candidate[len(location) + 1 :]
    return None


def locate_source(call: Call, source: str, run_id: str | None) -> Located:
    """Where ``source`` lies, proven to be under the location of its run, logged model,
    registered version or upload folder (paths checked; the real path is checked later,
    where the files are read)."""
    from modelpack import resolution, uris

    state = call.state
    check_source_text(source)
    if run_id is not None:
        _run(call, run_id, source)  # a mistyped run is named before any file is read
    if source.startswith("models:"):
        if not source.startswith(uris.MODELS_PREFIX):
            raise refuse(source, "a models: URI is models:/...")
        model_id = logged_model_of(source)
        if model_id is not None:
            model = _logged_model(call, model_id, source)
            return Located(
                model.artifact_location, "", run_id or model.source_run_id, logged_model=model_id
            )
        if source[len(uris.MODELS_PREFIX) :].startswith("m-"):
            raise refuse(source, "a logged model id is 'm-' and 32 lowercase hex digits")
        try:
            parsed = uris.parse(source)
        except InvalidArgument as exc:
            raise refuse(source, exc.message.rstrip(".")) from None
        assert isinstance(parsed, uris.ModelURI)
        _may_read(call, "registered_model", parsed.name)
        version = resolution.model_version(state.client, parsed)
        from modelpack.artifacts import registry_folder

        folder = registry_folder(state.artifact_root, version.storage_location)
        if folder is None:
            raise refuse(source, "the version it names is not stored in this registry")
        return Located(state.artifact_root, folder, run_id or version.run_id, registered=version)
    if source.startswith("runs:"):
        match = re.fullmatch(re.escape(uris.RUNS_PREFIX) + r"(?P<run>[^/]+)/(?P<path>.+)", source)
        if match is None:
            raise refuse(source, "a run URI is runs:/<run_id>/<path>")
        if run_id is not None and run_id != match["run"]:
            raise refuse(source, f"it names run {match['run']}, but run_id is {run_id}")
        run = _run(call, match["run"], source)
        return Located(run.info.artifact_uri, _relative(source, match["path"]), run.info.run_id)
    if source.startswith(PROXY_SCHEME):
        if not state.options.serve_artifacts:
            raise refuse(source, "this server does not serve artifacts (--no-serve-artifacts)")
        rest = source[len(PROXY_SCHEME) :]
        if rest.startswith("//"):  # mlflow-artifacts://host:port/path: the host is ignored
            rest = "/" + rest[2:].partition("/")[2]
        rel = _relative(source, rest.lstrip("/") if rest.startswith("/") else rest)
        if rel == "":
            raise refuse(source, "it names the whole artifact root")
        stored = f"{state.artifact_root}/{rel}"
        if _UPLOAD.fullmatch(rel):
            return Located(state.artifact_root, rel, run_id)
        if run_id is not None:
            run = _run(call, run_id, source)
            below = _under(run.info.artifact_uri, stored)
            if below is not None:
                return Located(run.info.artifact_uri, _relative(source, below), run_id)
        found = _IN_LOGGED_MODEL.fullmatch(rel)
        if found is not None:
            model = _logged_model(call, found["id"], source)
            below = _under(model.artifact_location, stored)
            if below is not None:
                return Located(
                    model.artifact_location,
                    _relative(source, below),
                    run_id or model.source_run_id,
                    logged_model=found["id"],
                )
        if run_id is not None:
            raise refuse(source, f"it is not under the artifact location of run {run_id}")
        raise refuse(
            source,
            "it is not under a logged model's or an uploads/ folder; for a run's artifacts "
            "give run_id",
        )
    # The run's own artifact URI (a client that does not use the proxy sends it as it is).
    if run_id is not None:
        run = _run(call, run_id, source)
        below = _under(run.info.artifact_uri, source)
        if below is not None and not source.startswith("file:"):
            return Located(run.info.artifact_uri, _relative(source, below), run_id)
        raise refuse(source, f"it is not under the artifact location of run {run_id}")
    if source.startswith("/") or re.match(r"^[A-Za-z]:", source):
        raise refuse(source, "an absolute path is accepted only under its run's artifact URI")
    raise refuse(source, "its scheme or form is not one this server registers from")


# ---------------------------------------------------------------------- registering


def _local_folder(state: ServerState, store: Any, located: Located, source: str) -> Path | None:
    """The real local folder of ``located``, or None if it is remote.

    Containment is proven on the real path: below the server's artifact root when the
    location lies in it (no symlink anywhere below the root), else below the location itself.
    """
    import os

    from modelpack.artifacts import LocalArtifactStore, artifact_store
    from modelpack.paths import resolve_inside

    if not isinstance(store, LocalArtifactStore):
        return None
    full = f"{store.uri}/{located.rel}" if located.rel else store.uri
    server = artifact_store(state.artifact_root)
    base, rel = store.root, located.rel
    if isinstance(server, LocalArtifactStore):
        below = _under(server.uri, full)
        if below:
            base, rel = server.root, below
    try:
        folder = resolve_inside(base, rel, "Source path") if rel else None
    except FormatError as exc:
        raise refuse(source, exc.message.rstrip(".")) from None
    if folder is None:
        if os.path.islink(base):
            raise refuse(source, "its location is a symlink")
        folder = Path(os.path.realpath(base))
    if not folder.is_dir():
        raise refuse(source, "there is no model directory there")
    return folder


def _recorded(call: Call, located: Located, source: str) -> Any:
    """The manifest hash a store recorded for the package (a run's logged package, a
    registered version), which the copy must match."""
    from modelpack.resolution import Recorded

    if located.registered is not None:
        v = located.registered
        return Recorded(v.manifest_sha256, v.model_id, source, "the registry")
    if located.run_id and located.logged_model is None and located.rel:
        logged = call.state.store.get_logged_model(located.run_id, located.rel)
        if logged is not None:
            return Recorded(
                logged.manifest_sha256, logged.model_id, source, "the tracking store (log_model)"
            )
    return None


def _package(folder: Path, into: Path, recorded: Any, source: str) -> tuple[Path, Any, str]:
    """A verified package made in ``into`` from the files at ``folder``: a package copied
    (verified before and after), or an MLflow model directory converted. Returns the package
    folder, its manifest and the sha256 of its manifest."""
    from modelpack import mlflow_models
    from modelpack.manifest import MANIFEST_NAME, check_recorded, read_manifest_bytes

    target = into / "package"
    try:
        if mlflow_models.is_mlflow_model(folder):
            manifest = mlflow_models.convert(folder, target)
        elif (folder / MANIFEST_NAME).is_file():
            manifest = mlflow_models.copy_package(folder, target)
        else:
            raise refuse(
                source,
                f"there is neither an MLflow model (MLmodel) nor a modelpack package "
                f"({MANIFEST_NAME}) there",
            )
        data = read_manifest_bytes(target)
        if recorded is not None:
            sha = check_recorded(target, data, recorded.sha256, recorded.what, recorded.by)
        else:
            sha = hashlib.sha256(data).hexdigest()
    except IntegrityError as exc:
        raise ApiError(
            "INVALID_PARAMETER_VALUE",
            f"The model at {source!r} fails verification, so nothing was registered: {exc.message}",
        ) from None
    return target, manifest, sha


def register(
    call: Call,
    name: str,
    source: str,
    run_id: str | None,
    tags: dict[str, str],
    description: str | None,
) -> Any:
    """Validate ``source``, copy and verify its files into registry storage, and create the
    version (as ``Client.register_model`` does, with the caller as the history's user)."""
    from modelpack.artifacts import artifact_store
    from modelpack.store.validation import name as check_name

    state = call.state
    check_name(name, "Registered model name")
    located = locate_source(call, source, run_id)
    store = artifact_store(located.root)
    recorded = _recorded(call, located, source)
    with tempfile.TemporaryDirectory(prefix="modelpack-register-") as tmp:
        work = Path(tmp)
        folder = _local_folder(state, store, located, source)
        if folder is None:
            folder = work / "download"
            store.get_dir(located.rel, folder)
        package, manifest, sha = _package(folder, work, recorded, source)
        return state.client.store_version(
            package,
            name,
            source_uri=source,
            run_id=located.run_id,
            model_id=manifest.model_id,
            manifest_sha256=sha,
            user_id=call.user,
            tags=tags,
            description=description,
        )


def _remove_storage(state: ServerState, location: str) -> None:
    from modelpack.artifacts import artifact_store, registry_folder

    folder = registry_folder(state.artifact_root, location)
    if folder is not None:
        artifact_store(state.artifact_root).delete(folder)


# ---------------------------------------------------------------------- handlers


def _version(call: Call) -> str:
    return text(call.params, "version")


def create_registered_model(call: Call) -> dict[str, Any]:
    from modelpack.server import auth

    model = call.state.store.create_registered_model(
        _name(call), dict(pairs(call.params, "tags")), optional_text(call.params, "description")
    )
    auth.record_creator(call, "registered_model", model.name)
    return {"registered_model": registered_model_json(model, call.state)}


def rename_registered_model(call: Call) -> dict[str, Any]:
    from modelpack.server import auth

    model = call.state.store.rename_registered_model(
        _name(call), text(call.params, "new_name"), call.user
    )
    auth.rename_resource(call, "registered_model", _name(call), model.name)
    return {"registered_model": registered_model_json(model, call.state)}


def update_registered_model(call: Call) -> dict[str, Any]:
    store = call.state.store
    description = call.params.get("description")
    if description is None:
        model = store.get_registered_model(_name(call))
    else:
        model = store.update_registered_model(
            _name(call), optional_text(call.params, "description") or ""
        )
    return {"registered_model": registered_model_json(model, call.state)}


def delete_registered_model(call: Call) -> dict[str, Any]:
    state = call.state
    force = boolean(call.params, "force")
    from modelpack.server import auth

    locations = state.store.delete_registered_model(_name(call), call.user, force=force)
    auth.forget_resource(call, "registered_model", _name(call))
    for location in locations:
        _remove_storage(state, location)
    return {}


def get_registered_model(call: Call) -> dict[str, Any]:
    model = call.state.store.get_registered_model(_name(call))
    return {"registered_model": registered_model_json(model, call.state)}


def _order(call: Call) -> list[str]:
    return strings(call.params, "order_by")


# MLflow 3's clients add a clause on this tag to every registry search ("tag.`...` != 'true'",
# to leave prompts out), which MLflow's store answers by excluding prompts: models have no
# such tag, so the clause taken literally would match nothing.
_PROMPT_CLAUSE = re.compile(
    r"""(?:\s+AND\s+)?tags?\.(?:`mlflow\.prompt\.is_prompt`|"mlflow\.prompt\.is_prompt"|"""
    r"""mlflow\.prompt\.is_prompt)\s*(?P<op>!=|=)\s*'(?P<value>true|false)'(?:\s+AND\s+)?""",
    re.IGNORECASE,
)


def without_prompt_clause(filter_string: str | None) -> tuple[str | None, bool]:
    """``filter_string`` without MLflow's prompt clause, and whether it asked for prompts
    (this registry holds none, so such a search finds nothing)."""
    if not filter_string:
        return filter_string, False
    match = _PROMPT_CLAUSE.search(filter_string)
    if match is None:
        return filter_string, False
    wants = (match["op"] == "=") == (match["value"].lower() == "true")
    before, after = filter_string[: match.start()].strip(), filter_string[match.end() :].strip()
    rest = f"{before} AND {after}" if before and after else before or after
    return (rest or None), wants


def search_registered_models(call: Call) -> dict[str, Any]:
    size = integer(call.params, "max_results", 100, low=1, high=MAX_MODELS_PAGE) or 100
    filter_string, prompts = without_prompt_clause(optional_text(call.params, "filter"))
    if prompts:
        return {"registered_models": []}
    models, token = call.state.store.search_registered_models(
        filter_string,
        size,
        _order(call),
        optional_text(call.params, "page_token"),
    )
    allowed = _readable(call)
    if allowed is not None:
        models = [m for m in models if m.name in allowed]
    shown = [registered_model_json(m, call.state) for m in models]
    out: dict[str, Any] = {"registered_models": shown}
    if token:
        out["next_page_token"] = token
    return out


def get_latest_versions(call: Call) -> dict[str, Any]:
    versions = call.state.store.get_latest_versions(
        _name(call), strings(call.params, "stages") or None
    )
    return {"model_versions": [model_version_json(v, call.state) for v in versions]}


def set_registered_model_tag(call: Call) -> dict[str, Any]:
    call.state.store.set_registered_model_tag(
        _name(call), text(call.params, "key"), call.params.get("value", "")
    )
    return {}


def delete_registered_model_tag(call: Call) -> dict[str, Any]:
    call.state.store.delete_registered_model_tag(_name(call), text(call.params, "key"))
    return {}


def set_alias(call: Call) -> dict[str, Any]:
    call.state.store.set_registered_model_alias(
        _name(call), text(call.params, "alias"), _version(call), call.user
    )
    return {}


def delete_alias(call: Call) -> dict[str, Any]:
    call.state.store.delete_registered_model_alias(
        _name(call), text(call.params, "alias"), call.user
    )
    return {}


def get_by_alias(call: Call) -> dict[str, Any]:
    version = call.state.store.get_model_version_by_alias(_name(call), text(call.params, "alias"))
    return {"model_version": model_version_json(version, call.state)}


def create_model_version(call: Call) -> dict[str, Any]:
    source = text(call.params, "source")
    run_id = optional_text(call.params, "run_id")
    model_id = optional_text(call.params, "model_id")
    if model_id is not None and logged_model_of(source) not in (None, model_id):
        raise refuse(source, f"it names another logged model than model_id {model_id}")
    from modelpack.server import auth

    new = _existing_name(call) is None
    version = register(
        call,
        _name(call),
        source,
        run_id,
        dict(pairs(call.params, "tags")),
        optional_text(call.params, "description"),
    )
    if new:  # this registration created the model: its creator manages it
        auth.record_creator(call, "registered_model", version.name)
    return {"model_version": model_version_json(version, call.state)}


def update_model_version(call: Call) -> dict[str, Any]:
    store = call.state.store
    description = optional_text(call.params, "description")
    if call.params.get("description") is None:
        version = store.get_model_version(_name(call), _version(call))
    else:
        version = store.update_model_version(_name(call), _version(call), description or "")
    return {"model_version": model_version_json(version, call.state)}


def transition_stage(call: Call) -> dict[str, Any]:
    from modelpack.entities import canonical_stage

    stage = canonical_stage(text(call.params, "stage"))
    if stage in ("Production", "Archived"):
        _require(call, "MANAGE")
    version = call.state.store.transition_model_version_stage(
        _name(call),
        _version(call),
        stage,
        archive_existing_versions=boolean(call.params, "archive_existing_versions"),
        comment=optional_text(call.params, "comment"),
        user_id=call.user,
    )
    return {"model_version": model_version_json(version, call.state)}


def delete_model_version(call: Call) -> dict[str, Any]:
    state = call.state
    location = state.store.delete_model_version(
        _name(call), _version(call), call.user, boolean(call.params, "force")
    )
    _remove_storage(state, location)
    return {}


def get_model_version(call: Call) -> dict[str, Any]:
    version = call.state.store.get_model_version(_name(call), _version(call))
    return {"model_version": model_version_json(version, call.state)}


def search_model_versions(call: Call) -> dict[str, Any]:
    wanted = (
        integer(call.params, "max_results", MAX_VERSIONS_PAGE, low=1, high=MAX_VERSIONS_PAGE)
        or MAX_VERSIONS_PAGE
    )
    store = call.state.store
    from modelpack.store import search as store_search

    filter_string, prompts = without_prompt_clause(optional_text(call.params, "filter"))
    if prompts:
        return {"model_versions": []}
    token = optional_text(call.params, "page_token")
    offset = store_search.decode_token(token)
    found: list[Any] = []
    more: str | None = None
    # The store answers at most 50,000 a page: read pages until this one is full (bounded).
    for _ in range(MAX_VERSIONS_PAGE // _STORE_PAGE + 1):
        size = min(_STORE_PAGE, wanted - len(found))
        page, more = store.search_model_versions(
            filter_string, size, _order(call), store_search.encode_token(offset)
        )
        found.extend(page)
        offset += len(page)
        if more is None or len(found) >= wanted:
            break
    allowed = _readable(call)
    if allowed is not None:
        found = [v for v in found if v.name in allowed]
    out: dict[str, Any] = {"model_versions": [model_version_json(v, call.state) for v in found]}
    if more is not None:
        out["next_page_token"] = store_search.encode_token(offset)
    return out


def get_download_uri(call: Call) -> dict[str, Any]:
    version = call.state.store.get_model_version(_name(call), _version(call))
    return {"artifact_uri": call.state.public_uri(version.storage_location)}


def set_model_version_tag(call: Call) -> dict[str, Any]:
    call.state.store.set_model_version_tag(
        _name(call), _version(call), text(call.params, "key"), call.params.get("value", "")
    )
    return {}


def delete_model_version_tag(call: Call) -> dict[str, Any]:
    call.state.store.delete_model_version_tag(_name(call), _version(call), text(call.params, "key"))
    return {}


# ---------------------------------------------------------------------- modelpack's extensions


def history(call: Call) -> dict[str, Any]:
    records = call.state.store.get_model_history(_name(call))
    return {
        "history": [
            {
                "name": r.name,
                "version": None if r.version is None else str(r.version),
                "action": r.action,
                "from_value": r.from_value,
                "to_value": r.to_value,
                "user_id": r.user_id,
                "timestamp": int(r.timestamp.timestamp() * 1000),
                "comment": r.comment,
            }
            for r in records
        ]
    }


def verify(call: Call) -> dict[str, Any]:
    """Check the stored copy of a version: its manifest against the hash the registry
    recorded, every file against its manifest."""
    from modelpack.artifacts import LocalArtifactStore, artifact_store, registry_folder
    from modelpack.integrity import verify_files
    from modelpack.manifest import (
        MANIFEST_NAME,
        check_recorded,
        parse_manifest,
        read_manifest_bytes,
    )

    state = call.state
    version = state.store.get_model_version(_name(call), _version(call))
    folder_rel = registry_folder(state.artifact_root, version.storage_location)
    if folder_rel is None:
        return {
            "ok": False,
            "problems": [
                {
                    "path": "",
                    "problem": "unrecorded",
                    "message": "The version's storage is not a folder of this registry.",
                }
            ],
        }
    root = artifact_store(state.artifact_root)
    problems: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="modelpack-verify-") as tmp:
        if isinstance(root, LocalArtifactStore):
            local = root.local_path(folder_rel)
            assert local is not None
        else:
            local = Path(tmp) / "copy"
            root.get_dir(folder_rel, local)
        try:
            data = read_manifest_bytes(local)
            check_recorded(local, data, version.manifest_sha256, version.uri, "the registry")
            verify_files(local, parse_manifest(data, local / MANIFEST_NAME).files)
        except IntegrityError as exc:
            problems = [
                {"path": path, "problem": what, "message": exc.message}
                for path, what in (exc.problems or [("", "integrity")])
            ]
        except (FormatError, NotFound) as exc:
            problems = [{"path": MANIFEST_NAME, "problem": "unreadable", "message": str(exc)}]
        finally:
            if not isinstance(root, LocalArtifactStore):
                shutil.rmtree(local, ignore_errors=True)
    return {"ok": not problems, "problems": problems}


def newest(call: Call) -> dict[str, Any]:
    version = call.state.store.get_newest_version(_name(call))
    return {"model_version": model_version_json(version, call.state)}


def in_stage(call: Call) -> dict[str, Any]:
    version = call.state.store.get_version_in_stage(_name(call), text(call.params, "stage"))
    return {"model_version": model_version_json(version, call.state)}


def _e(methods: tuple[str, ...], path: str, handler: Any, access: Any, summary: str) -> Endpoint:
    return Endpoint(
        methods, path, handler, access, summary, request_fields=tuple(FIELDS[handler].split())
    )


_V = "name version"
# The fields each call reads (MLflow's request messages), for the OpenAPI document.
FIELDS: dict[Any, str] = {
    create_registered_model: "name tags description",
    rename_registered_model: "name new_name",
    update_registered_model: "name description",
    delete_registered_model: "name force",
    get_registered_model: "name",
    search_registered_models: "filter max_results order_by page_token",
    get_latest_versions: "name stages",
    set_registered_model_tag: "name key value",
    delete_registered_model_tag: "name key",
    set_alias: "name alias version",
    delete_alias: "name alias",
    get_by_alias: "name alias",
    create_model_version: "name source run_id tags run_link description model_id",
    update_model_version: f"{_V} description",
    transition_stage: f"{_V} stage archive_existing_versions comment",
    delete_model_version: f"{_V} force",
    get_model_version: _V,
    search_model_versions: "filter max_results order_by page_token",
    get_download_uri: _V,
    set_model_version_tag: f"{_V} key value",
    delete_model_version_tag: f"{_V} key",
    history: "name",
    verify: _V,
    newest: "name",
    in_stage: "name stage",
}

READ = on_model("READ", _name)
EDIT = on_model("EDIT", _name)
MANAGE = on_model("MANAGE", _name)
CREATE = on_model("EDIT", _existing_name)

ENDPOINTS = [
    _e(("POST",), f"{RM}/create", create_registered_model, CREATE, "Create a registered model."),
    _e(("POST",), f"{RM}/rename", rename_registered_model, MANAGE, "Rename a registered model."),
    _e(("PATCH",), f"{RM}/update", update_registered_model, EDIT, "Set a model's description."),
    _e(("DELETE",), f"{RM}/delete", delete_registered_model, MANAGE, "Delete a model."),
    _e(("GET",), f"{RM}/get", get_registered_model, READ, "Get a registered model."),
    _e(("GET",), f"{RM}/search", search_registered_models, LOGIN, "Search registered models."),
    _e(
        ("POST", "GET"),
        f"{RM}/get-latest-versions",
        get_latest_versions,
        READ,
        "The newest version in each stage.",
    ),
    _e(("POST",), f"{RM}/set-tag", set_registered_model_tag, EDIT, "Tag a registered model."),
    _e(("DELETE",), f"{RM}/delete-tag", delete_registered_model_tag, EDIT, "Delete a tag."),
    _e(("POST",), f"{RM}/alias", set_alias, MANAGE, "Point an alias at a version."),
    _e(("DELETE",), f"{RM}/alias", delete_alias, MANAGE, "Delete an alias."),
    _e(("GET",), f"{RM}/alias", get_by_alias, READ, "The version an alias points at."),
    _e(("POST",), f"{MV}/create", create_model_version, CREATE, "Register a new version."),
    _e(("PATCH",), f"{MV}/update", update_model_version, EDIT, "Set a version's description."),
    _e(
        ("POST",),
        f"{MV}/transition-stage",
        transition_stage,
        EDIT,
        "Move a version to a stage (Production and Archived need MANAGE).",
    ),
    _e(("DELETE",), f"{MV}/delete", delete_model_version, MANAGE, "Delete a version."),
    _e(("GET",), f"{MV}/get", get_model_version, READ, "Get a version."),
    _e(("GET",), f"{MV}/search", search_model_versions, LOGIN, "Search versions."),
    _e(("GET",), f"{MV}/get-download-uri", get_download_uri, READ, "Where a version is."),
    _e(("POST",), f"{MV}/set-tag", set_model_version_tag, EDIT, "Tag a version."),
    _e(("DELETE",), f"{MV}/delete-tag", delete_model_version_tag, EDIT, "Delete a version tag."),
    _e(("GET",), f"{EXT}/registered-models/history", history, READ, "A model's audit trail."),
    _e(("GET",), f"{EXT}/model-versions/verify", verify, READ, "Verify a stored version."),
    _e(("GET",), f"{EXT}/model-versions/newest", newest, READ, "A model's newest version."),
    _e(("GET",), f"{EXT}/model-versions/in-stage", in_stage, READ, "The version in a stage."),
]
