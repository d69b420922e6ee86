"""The model registry's calls of ``Client`` (MLflow's names): register, versions, stages,
aliases, tags; mixed into ``Client``, which supplies ``store``, ``artifact_root`` and
``get_run``."""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelpack import resolution, uris
from modelpack.entities import HistoryRecord, ModelVersion, PagedList, RegisteredModel, Run
from modelpack.errors import InvalidArgument, NotFound
from modelpack.run_context import current_user
from modelpack.store import is_remote

if TYPE_CHECKING:
    from modelpack.store.rest import RestStore
    from modelpack.store.sql import SqlStore

__all__ = ["RegistryCalls"]


class RegistryCalls:
    artifact_root: str

    @property
    def store(self) -> SqlStore | RestStore:
        raise NotImplementedError  # Client's

    def get_run(self, run_id: str) -> Run:
        raise NotImplementedError  # Client's

    # ------------------------------------------------------------------ registry

    def register_model(
        self,
        model_uri: str,
        name: str,
        tags: Mapping[str, Any] | None = None,
        description: str | None = None,
        *,
        run_id: str | None = None,
    ) -> ModelVersion:
        """Copy the package at ``model_uri`` into registry storage and make it a new version
        (of the run ``run_id``; default: the run the URI or the package names)."""
        from modelpack.integrity import verify_files
        from modelpack.manifest import (
            MANIFEST_NAME,
            check_recorded,
            parse_manifest,
            read_manifest_bytes,
        )
        from modelpack.store.validation import name as check_name

        check_name(name, "Registered model name")
        if is_remote(self.store):
            return self._register_remote(model_uri, name, tags, description, run_id)
        source, recorded = resolution.resolve_recorded(model_uri, self)
        # The hash recorded is that of the very bytes checked and parsed here: a manifest
        # swapped in after this check hashes differently, and no load of the version accepts it.
        data = read_manifest_bytes(source)
        if recorded is not None:
            sha = check_recorded(source, data, recorded.sha256, recorded.what, recorded.by)
        else:
            sha = hashlib.sha256(data).hexdigest()
        manifest = parse_manifest(data, source / MANIFEST_NAME)
        verify_files(source, manifest.files)
        parsed = uris.parse(model_uri)
        if run_id is None:
            run_id = (
                parsed.run_id
                if isinstance(parsed, uris.RunURI)
                else (manifest.source or {}).get("run_id")
            )
        return self.store_version(
            source,
            name,
            source_uri=model_uri,
            run_id=run_id,
            model_id=manifest.model_id,
            manifest_sha256=sha,
            user_id=current_user(),
            tags=tags,
            description=description,
        )

    def store_version(
        self,
        package: Path,
        name: str,
        *,
        source_uri: str,
        run_id: str | None,
        model_id: str,
        manifest_sha256: str,
        user_id: str,
        tags: Mapping[str, Any] | None = None,
        description: str | None = None,
    ) -> ModelVersion:
        """Copy the verified ``package`` into registry storage (``registry/<uuid>``) and record
        it as the next version of ``name``; the copy is removed if the record fails, and a
        marker lets ``modelpack gc`` find a copy a killed process left behind. Callers verify
        first (``register_model``; the server, for the caller it authenticated)."""
        from modelpack import gc
        from modelpack.artifacts import artifact_store

        relative = f"registry/{uuid.uuid4().hex}"
        root = artifact_store(self.artifact_root)
        gc.collect_registrations(self)  # copies killed registrations left behind
        marker = gc.mark_registration(self, relative)
        try:
            root.put_dir(package, relative)
            return self.store.create_model_version(
                name,
                source=source_uri,
                run_id=run_id,
                model_id=model_id,
                manifest_sha256=manifest_sha256,
                storage_location=f"{self.artifact_root}/{relative}",
                user_id=user_id,
                tags=tags,
                description=description,
            )
        except BaseException:
            root.delete(relative)
            raise
        finally:
            if marker is not None:
                marker.unlink(missing_ok=True)

    def _register_remote(
        self,
        model_uri: str,
        name: str,
        tags: Mapping[str, Any] | None,
        description: str | None,
        run_id: str | None,
    ) -> ModelVersion:
        """``register_model`` on a ``modelpack server``: the server copies the package into its
        registry storage and verifies it. What the server can read is sent as the source: a
        ``runs:/`` URI (of a run on that server), ``models:/<name>/<version>`` (a ``models:/``
        URI resolved to its version here), an artifact of the server's outside its registry
        storage. Anything else (a folder, ``s3://``, a version's storage folder) is verified
        here and uploaded through the proxy to ``uploads/<uuid>`` first; the upload is removed
        if the registration fails."""

        store: Any = self.store  # a RestStore (registry_calls never imports it)

        def create(source: str, run: str | None) -> ModelVersion:
            return store.create_model_version(
                name,
                source=source,
                run_id=run,
                user_id=current_user(),
                tags=tags,
                description=description,
            )

        public = store.public_uri(model_uri) if isinstance(model_uri, str) else ""
        on_server = public.startswith(store.PROXY_SCHEME)
        if on_server and not public[len(store.PROXY_SCHEME) :].lstrip("/").startswith("registry/"):
            return create(model_uri, run_id)
        parsed = None if on_server else uris.parse(model_uri)
        if isinstance(parsed, uris.RunURI):
            return create(model_uri, parsed.run_id if run_id is None else run_id)
        if isinstance(parsed, uris.ModelURI):
            version = resolution.model_version(self, parsed)
            return create(version.uri, version.run_id if run_id is None else run_id)
        with tempfile.TemporaryDirectory(prefix="modelpack-register-") as tmp:
            if on_server:  # a version's storage: downloaded, and sent back as an upload
                from modelpack.artifacts import artifact_store

                parent, _, leaf = (store.local_uri(public) or "").rstrip("/").rpartition("/")
                local = Path(tmp) / "package"
                artifact_store(parent).get_dir(leaf, local)
            else:
                local, _ = resolution.resolve_recorded(model_uri, self)  # checked as recorded
            return self._upload_and_create(local, run_id, create)

    def _upload_and_create(
        self, local: Path, run_id: str | None, create: Callable[[str, str | None], ModelVersion]
    ) -> ModelVersion:
        from modelpack.artifacts import artifact_store
        from modelpack.integrity import verify_files
        from modelpack.manifest import MANIFEST_NAME, parse_manifest, read_manifest_bytes

        store: Any = self.store
        manifest = parse_manifest(read_manifest_bytes(local), local / MANIFEST_NAME)
        verify_files(local, manifest.files)  # a damaged package is named before it is sent
        if run_id is None:
            run_id = (manifest.source or {}).get("run_id")
        folder = uuid.uuid4().hex
        uploads = artifact_store(store.local_uri(f"{store.PROXY_SCHEME}/uploads"))
        uploads.put_dir(local, folder)
        try:
            return create(f"{store.PROXY_SCHEME}/uploads/{folder}", run_id)
        except BaseException:
            with contextlib.suppress(Exception):  # the server may have removed it already
                uploads.delete(folder)
            raise

    def create_registered_model(
        self, name: str, tags: Mapping[str, Any] | None = None, description: str | None = None
    ) -> RegisteredModel:
        return self.store.create_registered_model(name, tags, description)

    def get_registered_model(self, name: str) -> RegisteredModel:
        return self.store.get_registered_model(name)

    def search_registered_models(
        self,
        filter_string: str | None = None,
        max_results: int = 100,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> Any:
        models, token = self.store.search_registered_models(
            filter_string, max_results, order_by, page_token
        )
        return PagedList(models, token)

    def update_registered_model(self, name: str, description: str | None = None) -> RegisteredModel:
        if description is None:
            raise InvalidArgument(
                f"update_registered_model({name!r}) changes the description: pass description=."
            )
        return self.store.update_registered_model(name, description)

    def rename_registered_model(self, name: str, new_name: str) -> RegisteredModel:
        return self.store.rename_registered_model(name, new_name, current_user())

    def delete_registered_model(self, name: str, force: bool = False) -> None:
        # A server deletes the storage itself and returns no locations.
        for location in self.store.delete_registered_model(name, current_user(), force=force):
            self._remove_storage(location)

    def set_registered_model_tag(self, name: str, key: str, value: Any) -> None:
        self.store.set_registered_model_tag(name, key, value)

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        self.store.delete_registered_model_tag(name, key)

    def get_model_version(self, name: str, version: int | str) -> ModelVersion:
        return self.store.get_model_version(name, version)

    def search_model_versions(
        self,
        filter_string: str | None = None,
        max_results: int = 1000,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> Any:
        versions, token = self.store.search_model_versions(
            filter_string, max_results, order_by, page_token
        )
        return PagedList(versions, token)

    def get_latest_versions(
        self, name: str, stages: Sequence[str] | None = None
    ) -> list[ModelVersion]:
        return self.store.get_latest_versions(name, stages)

    def update_model_version(
        self, name: str, version: int | str, description: str | None = None
    ) -> ModelVersion:
        if description is None:
            raise InvalidArgument(
                f"update_model_version({name!r}, {version!r}) changes the description: pass "
                f"description=."
            )
        return self.store.update_model_version(name, version, description)

    def set_model_version_tag(
        self,
        name: str,
        version: int | str | None = None,
        key: str | None = None,
        value: Any = None,
        stage: str | None = None,
    ) -> None:
        """Tag a version, named by ``version`` or (MLflow's older form) by ``stage``: the
        newest version in that stage."""
        number = self._version_or_stage(name, version, stage)
        if key is None:
            raise InvalidArgument("set_model_version_tag needs key= (and value=).")
        self.store.set_model_version_tag(name, number, key, value)

    def delete_model_version_tag(
        self,
        name: str,
        version: int | str | None = None,
        key: str | None = None,
        stage: str | None = None,
    ) -> None:
        number = self._version_or_stage(name, version, stage)
        if key is None:
            raise InvalidArgument("delete_model_version_tag needs key=.")
        self.store.delete_model_version_tag(name, number, key)

    def _version_or_stage(self, name: str, version: Any, stage: str | None) -> int | str:
        if (version is None) == (stage is None):
            raise InvalidArgument(
                f"Name the version of {name!r} by version= or by stage=, not "
                f"{'both' if version is not None else 'neither'}."
            )
        if version is not None:
            return version
        latest = self.store.get_latest_versions(name, [str(stage)])
        if not latest:
            raise NotFound(f"Registered model {name!r} has no version in stage {stage!r}.")
        return latest[0].version

    def get_model_version_download_uri(self, name: str, version: int | str) -> str:
        """Where the version's package is stored (a folder under the registry's storage)."""
        return self.get_model_version(name, version).storage_location

    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str | None = None,
        tags: Mapping[str, Any] | None = None,
        run_link: str | None = None,
        description: str | None = None,
        await_creation_for: int = 300,
    ) -> ModelVersion:
        """A new version of ``name`` from the package at ``source`` (a ``runs:/`` or
        ``models:/`` URI, a path or a run's artifact location), as ``register_model`` does;
        the registered model is created if it does not exist.

        ``await_creation_for`` is accepted for MLflow's sake: a version here is READY when
        this returns. ``run_link`` is not recorded (the version's ``run_id`` links its run).
        """
        if run_link is not None:
            raise InvalidArgument(
                "run_link is not recorded by modelpack: the version's run_id links it to its "
                "run. Leave run_link out (MLflow would have stored it as a URL)."
            )
        if isinstance(await_creation_for, bool) or not isinstance(await_creation_for, int):
            raise InvalidArgument(f"await_creation_for is seconds, got {await_creation_for!r}.")
        if run_id is not None:
            self.get_run(run_id)  # NotFound names a mistyped id before anything is copied
        return self.register_model(source, name, tags=tags, description=description, run_id=run_id)

    def copy_model_version(self, src_model_uri: str, dst_name: str) -> ModelVersion:
        """A new version of ``dst_name`` holding the package of ``src_model_uri``
        (``models:/Name/3``, ``models:/Name@champion``...), with its run, tags and description;
        ``dst_name`` is created if it does not exist."""
        source = self._model_version_at(src_model_uri)
        return self.register_model(
            source.uri,
            dst_name,
            tags=source.tags,
            description=source.description,
            run_id=source.run_id,
        )

    def _model_version_at(self, model_uri: str) -> ModelVersion:
        parsed = uris.parse(model_uri)
        if not isinstance(parsed, uris.ModelURI):
            raise InvalidArgument(
                f"copy_model_version copies a registered version: pass models:/Name/Version or "
                f"models:/Name@alias, got {model_uri!r}."
            )
        return resolution.model_version(self, parsed)

    def transition_model_version_stage(
        self,
        name: str,
        version: int | str,
        stage: str,
        archive_existing_versions: bool = False,
        comment: str | None = None,
    ) -> ModelVersion:
        return self.store.transition_model_version_stage(
            name,
            version,
            stage,
            archive_existing_versions=archive_existing_versions,
            comment=comment,
            user_id=current_user(),
        )

    def set_registered_model_alias(
        self, name: str, alias: str, version: int | str, comment: str | None = None
    ) -> None:
        self.store.set_registered_model_alias(name, alias, version, current_user(), comment)

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        self.store.delete_registered_model_alias(name, alias, current_user())

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        return self.store.get_model_version_by_alias(name, alias)

    def delete_model_version(self, name: str, version: int | str, force: bool = False) -> None:
        """Delete a version; refused for one in Production or holding an alias, unless forced."""
        location = self.store.delete_model_version(name, version, current_user(), force)
        if location is not None:  # None: a server, which deletes the storage itself
            self._remove_storage(location)

    def get_model_history(self, name: str) -> list[HistoryRecord]:
        return self.store.get_model_history(name)

    def _remove_storage(self, location: str) -> None:
        from modelpack.artifacts import artifact_store, registry_folder

        # The store refused a foreign location before it deleted the row; checked again here,
        # where the files are removed (a link may have been swapped in meanwhile).
        folder = registry_folder(self.artifact_root, location)
        if folder is None:
            raise InvalidArgument(
                f"Not removing {location!r}: it is not a folder of the registry's storage "
                f"({self.artifact_root.rstrip('/')}/registry/<id>)."
            )
        artifact_store(self.artifact_root).delete(folder)
