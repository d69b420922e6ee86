"""Saving, loading and verifying model packages, and the one ``predict`` over every flavor."""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

from modelpack import atomic, publishing
from modelpack._version import __version__
from modelpack.errors import (
    Conflict,
    FlavorError,
    IntegrityError,
    InvalidArgument,
    NotFound,
    SchemaError,
    UnknownFlavor,
)
from modelpack.flavor import Flavor, Predict, flavor_for, get_flavor
from modelpack.integrity import hash_tree, verify_files
from modelpack.manifest import (
    MANIFEST_NAME,
    Manifest,
    check_recorded,
    dump_yaml,
    parse_manifest,
    read_manifest_bytes,
    write_manifest,
)
from modelpack.paths import resolve_inside
from modelpack.resolution import Recorded, resolve_recorded
from modelpack.signature import Signature

__all__ = ["Package", "load", "save", "verify"]

INPUT_EXAMPLE = "input_example.json"
# The flavors that import a package's code/: custom models (ours, and MLflow's PythonModels).
CODE_FLAVORS = ("python", "mlflow_pyfunc")
_NO_PARAMS: Mapping[str, Any] = MappingProxyType({})


class Package:
    """A loaded model package: ``predict`` plus what the manifest says.

    Attributes:
        path: the local directory the package was loaded from.
        manifest: the checked manifest.
        flavor: the name of the flavor that runs ``predict``.
    """

    def __init__(
        self, path: Path, manifest: Manifest, flavor: str, native: Any, predict: Predict
    ) -> None:
        from modelpack import enforcement

        self.path = path
        self.manifest = manifest
        self.flavor = flavor
        self._native = native
        self._predict = predict
        self._plan, self._params = enforcement.signature_plans(manifest.signature)
        # Bound once: predict is the hot path and does no imports or lookups it can avoid.
        self._n_rows = enforcement.n_rows
        self._empty_output = enforcement.empty_output
        self._normalize_output = enforcement.normalize_output

    @property
    def signature(self) -> Signature | None:
        return self.manifest.signature

    @property
    def model_id(self) -> str:
        return self.manifest.model_id

    def unwrap(self) -> Any:
        """The framework's own model object (an estimator, a module, an ONNX session...)."""
        return self._native

    def input_example(self) -> Any:
        """The stored input example, decoded (``None`` if the package has none)."""
        return _read_example(self.path, self.manifest)

    def predict(self, data: Any, params: Mapping[str, Any] | None = None) -> Any:
        """Check ``data`` and ``params`` against the signature, then run the model.

        Args:
            data: a DataFrame, numpy array, dict of column -> values, list of records, list of
                rows, or pyarrow Table.
            params: inference params declared in the signature; defaults fill the rest.

        Returns:
            A numpy array, a DataFrame, or a dict of arrays.

        Raises:
            SchemaError: the data or params do not match the signature.
        """
        x = data if self._plan is None else self._plan(data)
        p = self._params(params) if params or self._params.defaults else _NO_PARAMS
        if self._n_rows(x) == 0:
            return self.empty_output()
        return self._normalize_output(self._predict(x, p))

    def check(self, data: Any, params: Mapping[str, Any] | None = None) -> tuple[Any, Any, int]:
        """What ``predict`` does before the model runs: ``(checked data, params, rows)``.

        Rows is -1 when the package has no signature and the data's length is unknown. A
        server checks each request with this, merges the results, and calls ``run`` once.
        """
        x = data if self._plan is None else self._plan(data)
        p = self._params(params) if params or self._params.defaults else _NO_PARAMS
        return x, p, self._n_rows(x)

    def run(self, checked: Any, params: Mapping[str, Any]) -> Any:
        """Run the model on data ``check`` returned (or several such, merged)."""
        return self._normalize_output(self._predict(checked, params))

    def empty_output(self) -> Any:
        """The prediction for zero rows, typed by the output signature."""
        sig = self.manifest.signature
        return self._empty_output(sig.outputs if sig is not None else None)

    def __repr__(self) -> str:
        return f"<Package {self.path} flavor={self.flavor} model_id={self.model_id[:12]}>"


# ---------------------------------------------------------------------------- load


def _read_example(root: Path, manifest: Manifest) -> Any:
    import json

    from modelpack.payload import decode_input

    if manifest.input_example is None:
        return None
    path = resolve_inside(root, manifest.input_example, "input_example")
    with open(path, encoding="utf-8") as f:
        data, _ = decode_input(json.load(f), manifest.signature)
    return data


def stored_flavor(manifest: Manifest, flavor: str | None) -> str:
    """The flavor to run: ``flavor``, or the package's own when None.

    Raises:
        UnknownFlavor: the package does not store that flavor.
    """
    name = flavor or manifest.flavor
    if name not in manifest.flavors:
        stored = ", ".join(manifest.flavors)
        raise UnknownFlavor(
            f"This package does not store the {name!r} flavor. Stored: {stored}.",
            name,
            list(manifest.flavors),
        )
    return name


def load(uri: str | os.PathLike[str], *, flavor: str | None = None, **options: Any) -> Package:
    """Load a package: verify every file's hash, then deserialize and build ``predict``.

    Only the python flavor runs the package's own code (``code/``), in a namespace of its own;
    the other flavors never import it.

    Args:
        uri: a local path, ``file://``, ``runs:/<run_id>/<path>``, ``models:/<name>/<version>``,
            ``models:/<name>/<stage>``, ``models:/<name>@<alias>``, ``models:/<name>/latest``
            or ``s3://bucket/prefix``.
        flavor: run another representation stored in the package (e.g. ``"onnx"``).
        **options: for the flavor's loader, e.g. ``device="cuda"`` (torch) or
            ``providers=[...]``, ``intra_op_num_threads=4`` (onnx).

    Raises:
        NotFound, FormatError, IntegrityError, UnknownFlavor, MissingDependency; Conflict if
        the package was replaced again and again while it was being read.

    Example:
        >>> pack = modelpack.load("churn")
        >>> pack.predict(df)
    """
    root, recorded = resolve_recorded(uri)
    return _consistent(root, lambda: _load_once(root, flavor, options, recorded))


def _read_checked(root: Path, recorded: Recorded | None) -> Manifest:
    """The manifest at ``root``, read once: the bytes checked against the store's record are
    the bytes parsed (a manifest swapped in after resolution is caught), then every file."""
    data = read_manifest_bytes(root)
    if recorded is not None:
        check_recorded(root, data, recorded.sha256, recorded.what, recorded.by)
    manifest = parse_manifest(data, root / MANIFEST_NAME)
    verify_files(root, manifest.files)
    return manifest


def _load_once(
    root: Path, flavor: str | None, options: dict[str, Any], recorded: Recorded | None
) -> Package:
    from modelpack import package_code

    manifest = _read_checked(root, recorded)
    name = stored_flavor(manifest, flavor)
    module = get_flavor(name)
    config = manifest.flavors[name]
    resolve_inside(root, config["path"], f"flavors.{name}.path")
    _check_listed(root, manifest, name, config)
    if name not in CODE_FLAVORS:
        package_code.check_shadows(root, manifest.code)
        native = _load_without_code(module, root, manifest, config, options)
        return Package(root, manifest, name, native, module.predictor(native, config))
    space = package_code.build(root, manifest.code, manifest.files)
    if space is None:
        native = module.load(root, config, **options)
    else:
        try:
            with space.loading():
                native = module.load(root, config, **options)
        except BaseException:
            space.close()
            raise
        space.bind(native)
    return Package(root, manifest, name, native, module.predictor(native, config))


def _load_without_code(
    module: Flavor, root: Path, manifest: Manifest, config: Mapping[str, Any], options: Any
) -> Any:
    try:
        return module.load(root, config, **options)
    except ModuleNotFoundError as exc:
        shipped = {PurePosixPath(rel).stem for rel in manifest.code}
        head = (exc.name or "").partition(".")[0]
        if head not in shipped:
            raise
        raise FlavorError(
            f"The {module.NAME} model needs the module {head!r}, which this package ships in "
            f"code/; only the python flavor imports a package's code. Re-save it with the "
            f"module pickled by value (cloudpickle.register_pickle_by_value({head}) before "
            f"modelpack.save), or wrap it in a modelpack.PythonModel."
        ) from exc


# Config keys that name more files a flavor opens (besides ``path``), and how they are joined.
_CONFIG_FILES = {"external_data": "beside path", "artifacts": "from root"}


def _check_listed(root: Path, manifest: Manifest, name: str, config: Mapping[str, Any]) -> None:
    """Every file a flavor (or the package's code) opens must be listed, so its hash was
    checked: a file outside model/, code/ and artifacts/ may lie unlisted in a package.

    Raises:
        IntegrityError: naming the file and the manifest entry that names it.
    """
    path = str(config["path"])
    wanted = [(path, f"flavors.{name}.path")]
    external = config.get("external_data") or ()
    if isinstance(external, list | tuple):
        folder = PurePosixPath(path).parent
        wanted += [(str(folder / str(rel)), f"flavors.{name}.external_data") for rel in external]
    artifacts = config.get("artifacts") or {}
    if isinstance(artifacts, Mapping):
        wanted += [(str(rel), f"flavors.{name}.artifacts.{key}") for key, rel in artifacts.items()]
    wanted += [(rel, "code") for rel in manifest.code]
    if manifest.input_example is not None:
        wanted.append((manifest.input_example, "input_example"))
    files = manifest.files
    for rel, what in wanted:
        if rel in files:
            continue
        where = resolve_inside(root, rel, what)
        if where.is_dir():
            below = [
                p.relative_to(Path(os.path.realpath(root))).as_posix()
                for p in sorted(where.rglob("*"))
                if p.is_file() or p.is_symlink()
            ]
            missing = [r for r in below if r not in files]
            if not missing:
                continue
            rel = missing[0]
        raise IntegrityError(
            f"{rel}: {what} names a file the manifest does not list, so its sha256 was never "
            f"checked. Every file a flavor opens must be listed in files:.",
            [(rel, "unlisted")],
        )


_READ_ATTEMPTS = 8


def _identity(root: Path) -> tuple[int, ...] | None:
    """What changes when a save replaces the package at ``root``: its folder and manifest."""
    try:
        folder = os.stat(root)
        manifest = os.stat(os.path.join(root, MANIFEST_NAME))
    except OSError:
        return None
    return (folder.st_dev, folder.st_ino, manifest.st_ino, manifest.st_mtime_ns, manifest.st_size)


def _consistent(root: Path, read: Any) -> Any:
    """``read()`` of one package, even while another process replaces the one at ``root``.

    An overwrite exchanges the folder at ``root`` atomically, but a reader that resolved
    ``root`` once and reads files by path may see some of each: when the folder changed
    during the read, read again. A failure while nothing changed is real and raised as is.
    """
    from modelpack import gc

    for attempt in range(_READ_ATTEMPTS):
        if not os.path.lexists(root):
            gc.restore_interrupted(root)
        before = _identity(root)
        try:
            result = read()
        except Exception:
            if before is None or _identity(root) == before or attempt + 1 == _READ_ATTEMPTS:
                raise
        else:
            if _identity(root) == before:
                return result
        # Replaced mid-read: wait a little (1, 2, 4 ... ms, at most 50), so that a reader does
        # not keep colliding with a writer that replaces the package at a steady pace.
        time.sleep(min(0.001 * 2**attempt, 0.05))
    raise Conflict(
        f"The package at {str(root)!r} was replaced {_READ_ATTEMPTS} times while it was being "
        f"read; try again.",
        reason="replaced while being read",
        attempts=_READ_ATTEMPTS,
    )


def verify(uri: str | os.PathLike[str]) -> Manifest:
    """Check every file of a package against its manifest; return the manifest if all match.

    Raises:
        IntegrityError: naming each modified, missing or unlisted file.
    """
    root, recorded = resolve_recorded(uri)
    return _consistent(root, lambda: _read_checked(root, recorded))


# ---------------------------------------------------------------------------- save


def _copy_code(code_paths: Iterable[str | os.PathLike[str]], staging: Path) -> list[str]:
    from modelpack import package_code

    rels: list[str] = []
    for item in code_paths:
        src = Path(item)
        if not src.exists():
            raise NotFound(f"code_paths: {str(src)!r} does not exist.")
        if src.is_file() and src.suffix != ".py":
            raise InvalidArgument(f"code_paths: {str(src)!r} is not a .py file or a folder.")
        rel = f"code/{src.name}"
        if rel in rels:
            raise InvalidArgument(f"code_paths: two entries are named {src.name!r}.")
        name = src.stem if src.is_file() else src.name
        if not name.isidentifier():
            raise InvalidArgument(f"code_paths: {src.name!r} is not a Python module name.")
        if package_code.shadowing(name, src) is not None:
            raise InvalidArgument(f"{rel} would shadow the installed module {name!r}; rename it.")
        dest = staging / rel
        dest.parent.mkdir(exist_ok=True)
        if src.is_dir():
            shutil.copytree(
                src, dest, symlinks=False, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        else:
            shutil.copy2(src, dest)
        rels.append(rel)
    return rels


def _agree(reference: Any, other: Any) -> str | None:
    """``None`` if two predictions match, else a sentence saying where they differ."""
    import numpy as np

    if isinstance(reference, Mapping) or isinstance(other, Mapping):
        return None if str(reference) == str(other) else "the outputs differ in structure"
    a, b = np.asarray(reference), np.asarray(other)
    if a.shape != b.shape:
        b = b.reshape(a.shape) if a.size == b.size else b
        if a.shape != b.shape:
            return f"output shape {b.shape} instead of {a.shape}"
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        bad = ~np.isclose(a.astype(float), b.astype(float), rtol=1e-4, atol=1e-5)
    else:
        bad = a != b
    if not bad.any():
        return None
    i = int(np.flatnonzero(bad.reshape(-1))[0])
    return (
        f"{int(bad.sum())} of {bad.size} values differ (first at index {i}: "
        f"{a.reshape(-1)[i]!r} vs {b.reshape(-1)[i]!r})"
    )


def save(
    model: Any,
    path: str | os.PathLike[str],
    *,
    flavor: str | None = None,
    signature: Signature | None = None,
    infer_signature: bool = True,
    input_example: Any = None,
    requirements: Sequence[str] | None = None,
    extra_requirements: Sequence[str] = (),
    code_paths: Sequence[str | os.PathLike[str]] = (),
    artifacts: Mapping[str, str | os.PathLike[str]] | None = None,
    metadata: Mapping[str, Any] | None = None,
    also: Sequence[str] = (),
    overwrite: bool = False,
    mlflow: bool = True,
    **flavor_options: Any,
) -> Manifest:
    """Save ``model`` as a package directory at ``path``, atomically.

    Args:
        model: a scikit-learn estimator, torch ``nn.Module``, ONNX model, ``PythonModel`` or
            plain function.
        path: the package directory to create.
        flavor: force a flavor instead of picking one from the object.
        signature: the signature to store; by default inferred from ``input_example`` and the
            model's output on it (unless ``infer_signature=False``).
        input_example: a few rows of real input; stored, and used to infer the signature.
        requirements: pip requirement lines replacing the inferred ones.
        extra_requirements: lines added to the inferred (or given) ones.
        code_paths: ``.py`` files or package folders the model's code needs at load.
        artifacts: name -> local file or folder, copied in, for ``PythonModel.load_context``.
        metadata: free-form data kept in the manifest.
        also: other flavors to store too, e.g. ``("onnx",)`` for a scikit-learn model; each is
            converted, and checked to agree with the model on the input example.
        overwrite: replace an existing package at ``path``.
        mlflow: also write an ``MLmodel`` file (and the files MLflow's loaders open), so that
            MLflow loads and serves the package too (``modelpack.mlmodel``); hashed like the rest.
        **flavor_options: for the flavor's saver, e.g. ``predict_method="predict_proba"``.

    Returns:
        The manifest written.

    Example:
        >>> modelpack.save(model, "churn", input_example=X[:5])
    """
    from modelpack import gc

    target = Path(os.fspath(path))
    if not os.path.lexists(target):
        gc.restore_interrupted(target)
    publishing.check_target(target, overwrite)
    module = get_flavor(flavor) if flavor is not None else flavor_for(model)
    if code_paths and module.NAME != "python":
        raise InvalidArgument(
            f"code_paths are imported by the python flavor only; a {module.NAME} load never "
            f"runs a package's code. To ship the module of a custom class, pickle it by value "
            f"(cloudpickle.register_pickle_by_value(module) before saving), or wrap the model "
            f"in a modelpack.PythonModel."
        )
    also = tuple(also)
    if module.NAME in also or len(set(also)) != len(also):
        raise InvalidArgument(f"also={also!r} repeats a flavor or names the primary one.")
    if also and input_example is None:
        raise InvalidArgument(
            f"also={also!r} needs an input_example: the conversion is checked to agree with "
            f"the model on it before anything is saved."
        )
    extra_modules = [get_flavor(name) for name in also]
    for name, extra in zip(also, extra_modules, strict=True):
        if not hasattr(extra, "convert"):
            raise InvalidArgument(
                f"The {name!r} flavor cannot convert other models; "
                f"also= accepts flavors that can: onnx."
            )
    if signature is not None and not isinstance(signature, Signature):
        raise InvalidArgument(f"signature must be a modelpack.Signature, got {signature!r}.")
    if not isinstance(mlflow, bool):
        raise InvalidArgument(f"mlflow must be True or False, got {mlflow!r}.")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise InvalidArgument(f"metadata must be a mapping, got {type(metadata).__name__}.")
    from modelpack.environment import check_requirements

    given = check_requirements(requirements, "requirements") if requirements is not None else None
    extra_reqs = (
        check_requirements(extra_requirements, "extra_requirements") if extra_requirements else []
    )
    if artifacts is not None:
        flavor_options["artifacts"] = artifacts
    if metadata:
        _check_metadata(metadata)

    target.parent.mkdir(parents=True, exist_ok=True)
    gc.collect(target.parent, ("staging", "old"))  # what killed saves left here
    staging = target.parent / gc.staging_name(target.name)
    staging.mkdir()
    try:
        manifest = _build(
            staging,
            model,
            module,
            extra_modules,
            signature,
            infer_signature,
            input_example,
            given,
            extra_reqs,
            code_paths,
            metadata or {},
            flavor_options,
            mlflow,
        )
        atomic.fsync_tree(staging)
        publishing.publish(staging, target, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _build(
    staging: Path,
    model: Any,
    module: Flavor,
    extra_modules: Sequence[Flavor],
    signature: Signature | None,
    infer: bool,
    example: Any,
    given_reqs: list[str] | None,
    extra_reqs: list[str],
    code_paths: Sequence[str | os.PathLike[str]],
    metadata: Mapping[str, Any],
    flavor_options: dict[str, Any],
    mlflow: bool = True,
) -> Manifest:
    import json

    from modelpack import enforcement, inference, package_code
    from modelpack.environment import infer_requirements, python_env, python_version
    from modelpack.payload import encode_input

    (staging / "model").mkdir()
    code = _copy_code(code_paths, staging)
    configs = {module.NAME: module.save(model, staging, example=example, **flavor_options)}
    example_rel = None
    if example is not None:
        payload = encode_input(example)
        atomic.write_durably(staging / INPUT_EXAMPLE, json.dumps(payload).encode("utf-8"))
        example_rel = INPUT_EXAMPLE

    if signature is None and infer and example is not None:
        signature = Signature(inputs=inference.infer_schema(example))
    elif signature is None and infer and hasattr(module, "graph_signature"):
        signature = module.graph_signature(configs[module.NAME], staging)

    def loaded(flavor_module: Flavor, sig: Signature | None) -> Package:
        name = flavor_module.NAME
        draft = _draft_manifest(configs, name, sig, code)
        space = package_code.build(staging, code, None) if name == "python" else None
        if space is None:
            native = flavor_module.load(staging, configs[name])
        else:
            try:
                with space.loading():
                    native = flavor_module.load(staging, configs[name])
            except BaseException:
                space.close()
                raise
            space.bind(native)
        return Package(staging, draft, name, native, flavor_module.predictor(native, configs[name]))

    reference = None
    if example is not None and (infer or extra_modules):
        pack = loaded(module, signature)
        try:
            reference = pack.predict(example)
        except SchemaError:
            raise
        except Exception as exc:
            raise FlavorError(
                f"The saved model failed to predict on the input example "
                f"({type(exc).__name__}: {exc}); nothing was saved."
            ) from exc
        if infer and signature is not None and signature.outputs is None:
            signature = Signature(
                signature.inputs, inference.infer_schema(reference), signature.params
            )

    for extra in extra_modules:
        enforced = enforcement.input_plan(signature.inputs if signature else None)
        sample = enforced(example) if enforced is not None else example
        convert = getattr(extra, "convert")  # noqa: B009 - optional verb, checked above
        proto, save_options = convert(model, sample, **_convert_options(configs, module))
        configs[extra.NAME] = extra.save(proto, staging, **save_options)
        other = loaded(extra, signature).predict(example)
        problem = _agree(reference, other)
        if problem is not None:
            raise FlavorError(
                f"The {extra.NAME} conversion disagrees with the {module.NAME} model on the "
                f"input example: {problem}. Nothing was saved."
            )

    if signature is None:
        import logging  # here, not at import: logging costs `import modelpack` ~4 ms

        logging.getLogger(__name__).warning(
            "Saved without a signature (no input_example): inputs are not checked, /v2 "
            "metadata lists no inputs, and a server cannot smoke-test a new version before "
            "serving it. Pass input_example=X[:5] to get all three."
        )
    if given_reqs is None:
        flavor_reqs = list(module.requirements(model, configs[module.NAME]))
        for extra in extra_modules:
            flavor_reqs += extra.requirements(None, configs[extra.NAME])
        reqs = infer_requirements(model, flavor_reqs)
    else:
        reqs = list(given_reqs)
    reqs += [r for r in extra_reqs if r not in reqs]
    atomic.write_durably(staging / "requirements.txt", ("\n".join(reqs) + "\n").encode("utf-8"))
    atomic.write_durably(staging / "python_env.yaml", dump_yaml(python_env()).encode("utf-8"))
    model_id, created_at = uuid.uuid4().hex, _dt.datetime.now(_dt.UTC)
    if mlflow:  # before the hashes are taken: the manifest covers these files too
        from modelpack import mlmodel

        mlmodel.write(
            staging,
            flavor=module.NAME,
            configs=configs,
            signature=signature,
            input_example=example_rel,
            model_id=model_id,
            created_at=created_at,
            python_version=python_version(),
            requirements=reqs,
            metadata=metadata,
            modelpack_version=__version__,
        )

    manifest = Manifest(
        model_id=model_id,
        created_at=created_at,
        modelpack_version=__version__,
        flavor=module.NAME,
        flavors=configs,
        files=hash_tree(staging),
        signature=signature,
        input_example=example_rel,
        environment={
            "python": python_version(),
            "requirements": "requirements.txt",
            "python_env": "python_env.yaml",
        },
        code=tuple(code),
        metadata=dict(metadata),
    )
    write_manifest(staging, manifest)
    return manifest


def _convert_options(configs: Mapping[str, Mapping[str, Any]], module: Flavor) -> dict:
    config = configs[module.NAME]
    return {"predict_method": config["predict_method"]} if "predict_method" in config else {}


def _draft_manifest(
    configs: Mapping[str, Any], name: str, sig: Signature | None, code: Sequence[str]
) -> Manifest:
    return Manifest(
        model_id="draft",
        created_at=_dt.datetime.now(_dt.UTC),
        modelpack_version=__version__,
        flavor=name,
        flavors=dict(configs),
        files={},
        signature=sig,
        code=tuple(code),
    )


def _check_metadata(metadata: Mapping[str, Any]) -> None:
    import yaml

    try:
        dump_yaml(dict(metadata))
    except yaml.YAMLError as exc:
        raise InvalidArgument(
            f"metadata must hold only plain data (strings, numbers, lists, dicts): {exc}"
        ) from None
