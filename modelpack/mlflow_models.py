"""MLflow model directories (an ``MLmodel`` file, no ``modelpack.yaml``) as modelpack packages.

``convert(src, dest)`` writes a real package from one: MLflow's files stay at their relative
paths (with the original ``MLmodel``, so MLflow still loads the package), and a manifest beside
them names the flavor that runs it, the signature and input example carried over, MLflow's
pinned environment files, and the sha256 of every file. The files are copied first and the
*copies* hashed, so a file that changes while it is read cannot make a package whose hashes lie.

``cached_package(src, cache)`` is the same conversion kept in the package cache under the
sha256 of the source's files: a second load of an unchanged MLflow directory converts nothing,
and a changed one converts again. Resolution (``modelpack.resolution``) uses it for every
folder that is an MLflow model, so ``load``, ``serve``, ``predict`` and ``info`` read them.

Nothing here deserializes a model: converting reads only ``MLmodel``, JSON and YAML.

Example:
    >>> modelpack.mlflow_models.convert(Path("mlruns/.../artifacts"), Path("churn"))
    >>> modelpack.load("path/to/mlflow_model").predict(df)   # converted once, then cached
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path

from modelpack import _mlmodel_read as mlmodel_read
from modelpack import _mlmodel_signature as mlmodel_signature
from modelpack import atomic, publishing
from modelpack._version import __version__
from modelpack.errors import FormatError, IntegrityError, InvalidArgument, NotFound
from modelpack.integrity import MANIFEST_NAME, hash_tree, sha256_file, verify_files, walk_files
from modelpack.manifest import Manifest, read_manifest, write_manifest

__all__ = ["MLMODEL", "cached_package", "convert", "copy_package", "is_mlflow_model"]

MLMODEL = mlmodel_read.MLMODEL
# Bumped when a conversion of the same files would write a different package: old cache
# entries are then never reused.
CONVERTER_VERSION = 1
_ENTRY_PREFIX = "mlflow-"


def is_mlflow_model(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an MLflow model directory: an ``MLmodel`` file, no ``modelpack.yaml``.

    (A modelpack package also carries an ``MLmodel``; it is read as the package it is.)
    """
    root = Path(os.fspath(path))
    return (
        (root / MLMODEL).is_file()
        and not (root / MLMODEL).is_symlink()
        and not os.path.lexists(root / MANIFEST_NAME)
    )


def _check_source(src: Path) -> None:
    if not src.is_dir():
        raise NotFound(f"No MLflow model at {str(src)!r}: the path is not a directory.")
    if os.path.lexists(src / MANIFEST_NAME):
        raise InvalidArgument(
            f"{str(src)!r} is already a modelpack package (it has {MANIFEST_NAME}); load or "
            f"copy it as it is."
        )
    if not is_mlflow_model(src):
        raise FormatError(
            f"{str(src)!r} is not an MLflow model directory: it has no {MLMODEL} file."
        )


def _copy_files(src: Path, staging: Path) -> None:
    """Copy every file of ``src`` into ``staging``, refusing links (as packages do)."""
    files, links = walk_files(src)
    if links:
        raise FormatError(
            f"{links[0]}: is a symlink in the MLflow model {str(src)!r}; packages may not "
            f"contain links. Copy the model with the links resolved first."
        )
    for rel in files:
        target = staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, target)


def _build(staging: Path) -> Manifest:
    """Write the manifest for the MLflow files copied into ``staging``; return it, re-read
    and verified as any load would."""
    files = hash_tree(staging)
    model = mlmodel_read.read_mlmodel(staging)
    mlflow_flavor, flavor, config, code = mlmodel_read.flavor_config(model, staging, files)
    signature, dropped = mlmodel_signature.signature(model)
    config = mlmodel_read.with_input_dtype(flavor, config, signature)
    example_rel, example_bytes = mlmodel_signature.example(model, staging, files, signature)
    if example_bytes is not None and example_rel is not None:
        if example_rel in files:
            raise FormatError(
                f"The MLflow model has a file named {example_rel!r}, the name modelpack writes "
                f"its input example to; rename it."
            )
        atomic.write_durably(staging / example_rel, example_bytes)
        files = hash_tree(staging)
    manifest = Manifest(
        model_id=uuid.uuid4().hex,
        created_at=_dt.datetime.now(_dt.UTC),
        modelpack_version=__version__,
        flavor=flavor,
        flavors={flavor: config},
        files=files,
        signature=signature,
        input_example=example_rel,
        environment=mlmodel_read.environment(model, staging, files),
        code=tuple(code),
        metadata=mlmodel_read.provenance(model, mlflow_flavor, dropped),
    )
    write_manifest(staging, manifest)
    # Read back as any load reads it: the schema (each flavor's config keys), every file.
    written = read_manifest(staging)
    verify_files(staging, written.files)
    return written


def convert(
    src: str | os.PathLike[str], dest: str | os.PathLike[str], *, overwrite: bool = False
) -> Manifest:
    """Write a modelpack package at ``dest`` from the MLflow model directory ``src``, atomically.

    Args:
        src: a local MLflow model directory (one with an ``MLmodel`` file).
        dest: the package directory to create.
        overwrite: replace a package already at ``dest``.

    Returns:
        The manifest written (as read back and verified).

    Raises:
        NotFound: ``src`` is not a directory.
        FormatError: ``src`` is not an MLflow model, or its ``MLmodel`` names files it lacks.
        UnknownFlavor: the model's flavor is not one modelpack reads (the message lists them).
        AlreadyExists: ``dest`` exists (and ``overwrite`` is false, or it is no package).

    Example:
        >>> convert("mlruns/1/models/m-.../artifacts", "churn")
    """
    from modelpack import gc

    source, target = Path(os.fspath(src)), Path(os.fspath(dest))
    _check_source(source)
    if not os.path.lexists(target):
        gc.restore_interrupted(target)
    publishing.check_target(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    gc.collect(target.parent, ("staging", "old"))
    staging = target.parent / gc.staging_name(target.name)
    staging.mkdir()
    try:
        _copy_files(source, staging)
        manifest = _build(staging)
        atomic.fsync_tree(staging)
        publishing.publish(staging, target, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def copy_package(
    src: str | os.PathLike[str], dest: str | os.PathLike[str], *, overwrite: bool = False
) -> Manifest:
    """Copy the package at ``src`` to ``dest`` atomically, verified before and after.

    Raises:
        IntegrityError: a file of ``src`` does not match its manifest.
        AlreadyExists: as for ``convert``.
    """
    from modelpack import gc

    source, target = Path(os.fspath(src)), Path(os.fspath(dest))
    verify_files(source, read_manifest(source).files)
    if not os.path.lexists(target):
        gc.restore_interrupted(target)
    publishing.check_target(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    gc.collect(target.parent, ("staging", "old"))
    staging = target.parent / gc.staging_name(target.name)
    staging.mkdir()
    try:
        _copy_files(source, staging)
        manifest = read_manifest(staging)
        verify_files(staging, manifest.files)
        atomic.fsync_tree(staging)
        publishing.publish(staging, target, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


# ---------------------------------------------------------------------------- the cache


def _listing_key(files: Mapping[str, str]) -> str:
    h = hashlib.sha256(f"modelpack-mlflow-{CONVERTER_VERSION}\n".encode())
    for rel in sorted(files):
        h.update(f"{rel}\0{files[rel]}\n".encode())
    return h.hexdigest()


def cached_package(src: str | os.PathLike[str], cache: str | os.PathLike[str]) -> Path:
    """The package converted from the MLflow model ``src``, kept in ``cache``.

    The entry is named after the sha256 of the source's files (paths and contents): an
    unchanged source finds its entry and converts nothing; a changed one converts again. An
    entry is used only if its manifest lists exactly the source's files with their hashes
    (plus what the conversion wrote); every load then verifies the entry's files against it.

    Args:
        src: a local MLflow model directory.
        cache: the private package cache (``modelpack.resolution.private_cache()``).

    Raises:
        IntegrityError: the entry does not match the source it is named after.
        and whatever ``convert`` raises.
    """
    from modelpack import gc

    source, folder = Path(os.fspath(src)), Path(os.fspath(cache))
    _check_source(source)
    listing = _source_listing(source)
    name = f"{_ENTRY_PREFIX}{_listing_key(listing)[:32]}"
    entry = folder / name
    if os.path.lexists(entry):
        _check_entry(entry, listing)
        return entry
    gc.collect(folder, ("staging",))
    staging = folder / gc.staging_name(name)
    staging.mkdir(mode=0o700)
    try:
        _copy_files(source, staging)
        copies = hash_tree(staging)
        # What was copied is what is converted and named: if the source changed while this
        # ran, the entry is the one of the copies.
        entry = folder / f"{_ENTRY_PREFIX}{_listing_key(copies)[:32]}"
        _build(staging)
        atomic.fsync_tree(staging)
        try:
            os.rename(staging, entry)
        except OSError:  # another process converted the same files first
            if not (entry / MANIFEST_NAME).is_file():
                raise
            _check_entry(entry, copies)
        else:
            atomic.fsync_dir(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return entry


def _source_listing(src: Path) -> dict[str, str]:
    """sha256 of every file of an MLflow model, by relative path (links are refused)."""
    files, links = walk_files(src)
    if links:
        raise FormatError(
            f"{links[0]}: is a symlink in the MLflow model {str(src)!r}; packages may not "
            f"contain links. Copy the model with the links resolved first."
        )
    return {rel: sha256_file(src / rel) for rel in files}


def _check_entry(entry: Path, listing: Mapping[str, str]) -> None:
    """Refuse a cache entry that is not the conversion of the files in ``listing``."""
    delete = f"Delete {entry} to convert the MLflow model again."
    if entry.is_symlink() or not entry.is_dir():
        raise IntegrityError(
            f"The cache entry {entry} is not a directory. {delete}", [(str(entry), "symlink")]
        )
    try:
        files = read_manifest(entry).files
    except (FormatError, NotFound) as exc:
        raise IntegrityError(f"{exc} {delete}", [(MANIFEST_NAME, "unreadable")]) from None
    ours = {mlmodel_signature.EXAMPLE_NAME}
    for rel, digest in listing.items():
        if files.get(rel) != digest:
            raise IntegrityError(
                f"{rel}: the cached conversion's manifest does not list the MLflow model's "
                f"file with its sha256; the cache was modified. {delete}",
                [(rel, "modified")],
            )
    extra = sorted(set(files) - set(listing) - ours)
    if extra:
        raise IntegrityError(
            f"{extra[0]}: is in the cached conversion but not in the MLflow model; the cache "
            f"was modified. {delete}",
            [(extra[0], "unlisted")],
        )
