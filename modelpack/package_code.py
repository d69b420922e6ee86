"""A package's own code (``code/``): run by the python flavor only, in a namespace of its own.

Each loaded package gets a ``CodeSpace``: its modules live under a private parent name
(``_modelpack_code_<id>.helpers``), so two packages that both ship ``helpers`` never meet, and
``import helpers`` anywhere else in the process finds nothing new. Inside the package's own
modules (and in functions its pickle carries by value) ``import helpers`` resolves to the
package's copy, through a per-package ``__import__``: that works while the model loads, while
it predicts and long after (a lazy import inside ``predict``), in any thread.

While the python flavor unpickles the model and runs ``load_context``, the package's plain
module names are also in ``sys.modules`` (a pickle names classes by ``module.qualname``);
loads of packages with code take a lock for that moment, and the names are removed after.

Sources are read once, checked against the manifest's sha256, and compiled from memory: a
load never writes ``__pycache__`` into a package, and a lazy import never reads a file that
changed after the load. A module name that something else on ``sys.path`` (or a built-in)
already provides is refused: a package's ``code/onnx.py`` can never stand in for onnx.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import pickle
import sys
import threading
import types
import uuid
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from modelpack.errors import FormatError, IntegrityError
from modelpack.paths import resolve_inside

__all__ = ["CodeSpace", "build", "check_shadows", "load_pickle", "shadowing"]

_LOCK = threading.RLock()
_ACTIVE: ContextVar[CodeSpace | None] = ContextVar("modelpack_code_space", default=None)
_SKIP_DIRS = ("__pycache__",)


@dataclass(frozen=True)
class _Source:
    data: bytes
    path: Path
    is_package: bool


class CodeSpace:
    """The modules of one loaded package, importable under ``prefix`` only."""

    def __init__(self, top: Mapping[str, str], sources: Mapping[str, _Source]) -> None:
        self.prefix = f"_modelpack_code_{uuid.uuid4().hex[:16]}"
        self.top = dict(top)  # plain top-level name -> its code entry
        self.sources = dict(sources)  # plain dotted name -> source
        self.builtins = dict(builtins.__dict__)
        self.builtins["__import__"] = _package_import(self.prefix, frozenset(self.top))
        parent = types.ModuleType(self.prefix, "Code of one loaded modelpack package.")
        parent.__path__ = []
        parent.__spec__ = importlib.machinery.ModuleSpec(self.prefix, None, is_package=True)
        self._parent = parent
        self._finder = _SpaceFinder(self)

    def register(self) -> CodeSpace:
        """Make the private names importable (first on ``sys.meta_path``: they are unique)."""
        sys.modules[self.prefix] = self._parent
        sys.meta_path.insert(0, self._finder)
        return self

    def spec(self, plain: str, name: str, loader: importlib.abc.Loader) -> Any:
        src = self.sources[plain]
        spec = importlib.util.spec_from_loader(
            name, loader, origin=str(src.path), is_package=src.is_package
        )
        assert spec is not None
        spec.has_location = True
        return spec

    def module(self, plain: str) -> types.ModuleType:
        """The package's module ``plain`` (``helpers``, ``pkg.sub``), imported if need be."""
        return importlib.import_module(f"{self.prefix}.{plain}")

    @contextlib.contextmanager
    def loading(self) -> Iterator[None]:
        """While the python flavor loads: plain names and pickles resolve to this package."""
        finder = _PlainFinder(self)
        with _LOCK:
            sys.meta_path.insert(0, finder)
            token = _ACTIVE.set(self)
            try:
                yield
            finally:
                _ACTIVE.reset(token)
                sys.meta_path.remove(finder)
                for name, module in finder.served:
                    if sys.modules.get(name) is module:
                        del sys.modules[name]

    def unpickle(self, file: IO[bytes]) -> Any:
        """``pickle.load``, with functions carried by value importing this package's code."""
        made: list[dict] = []
        space_builtins = self.builtins

        def make_function(code: Any, globals: dict, name: Any, argdefs: Any, closure: Any) -> Any:
            # cloudpickle's own _make_function, with this package's builtins (so __import__).
            globals["__builtins__"] = space_builtins
            made.append(globals)
            return types.FunctionType(code, globals, name, argdefs, closure)

        class Unpickler(pickle.Unpickler):
            def find_class(self, module: str, name: str) -> Any:
                if module == "cloudpickle.cloudpickle" and name == "_make_function":
                    return make_function
                return super().find_class(module, name)

        obj = Unpickler(file).load()
        for g in made:  # cloudpickle's setstate puts the interpreter's builtins back
            g["__builtins__"] = space_builtins
        return obj

    def bind(self, owner: Any) -> None:
        """Forget the modules when ``owner`` (the model object) is collected."""
        try:
            weakref.finalize(owner, _close, self.prefix, self._finder)
        except TypeError:
            pass  # not weak-referenceable: the modules stay for the process's life

    def close(self) -> None:
        _close(self.prefix, self._finder)


def _close(prefix: str, finder: Any) -> None:
    with contextlib.suppress(ValueError):
        sys.meta_path.remove(finder)
    dot = prefix + "."
    for name in [n for n in list(sys.modules) if n == prefix or n.startswith(dot)]:
        sys.modules.pop(name, None)


def _package_import(prefix: str, top: frozenset[str]) -> Any:
    """The ``__import__`` of a package's modules: its own top-level names map to its copy."""

    def __import__(
        name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0
    ) -> Any:
        head = name.partition(".")[0]
        if level == 0 and head in top:
            module = builtins.__import__(f"{prefix}.{name}", globals, locals, fromlist, 0)
            return module if fromlist else sys.modules[f"{prefix}.{head}"]
        return builtins.__import__(name, globals, locals, fromlist, level)

    return __import__


class _SpaceLoader(importlib.abc.Loader):
    def __init__(self, space: CodeSpace) -> None:
        self.space = space

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        plain = module.__spec__.name[len(self.space.prefix) + 1 :]  # type: ignore[union-attr]
        src = self.space.sources[plain]
        module.__dict__["__builtins__"] = self.space.builtins
        code = compile(src.data, str(src.path), "exec", dont_inherit=True)
        exec(code, module.__dict__)  # noqa: S102 - the package's verified code, by design

    def get_source(self, fullname: str) -> str:
        plain = fullname[len(self.space.prefix) + 1 :]
        return importlib.util.decode_source(self.space.sources[plain].data)


class _SpaceFinder(importlib.abc.MetaPathFinder):
    """Finds ``<prefix>.<name>`` for the package's modules (first, so nothing else can)."""

    def __init__(self, space: CodeSpace) -> None:
        self.space = space
        self.dot = space.prefix + "."
        self.loader = _SpaceLoader(space)

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if not fullname.startswith(self.dot):
            return None
        plain = fullname[len(self.dot) :]
        if plain not in self.space.sources:
            return None
        return self.space.spec(plain, fullname, self.loader)


class _AliasLoader(importlib.abc.Loader):
    """Gives a plain name the package's module itself (one module, two names)."""

    def __init__(self, finder: _PlainFinder, plain: str) -> None:
        self.finder, self.plain = finder, plain

    def create_module(self, spec: Any) -> types.ModuleType:
        module = self.finder.space.module(self.plain)
        self.own_spec = module.__spec__
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        module.__spec__ = self.own_spec  # the import system set the alias's spec on it
        self.finder.served.append((self.plain, module))


class _PlainFinder(importlib.abc.MetaPathFinder):
    def __init__(self, space: CodeSpace) -> None:
        self.space = space
        self.served: list[tuple[str, types.ModuleType]] = []

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname not in self.space.sources:
            return None
        return self.space.spec(fullname, fullname, _AliasLoader(self, fullname))


def load_pickle(file: IO[bytes]) -> Any:
    """Unpickle what the python flavor saved, with the loading package's code (if any)."""
    space = _ACTIVE.get()
    return pickle.load(file) if space is None else space.unpickle(file)


# ---------------------------------------------------------------------------- building


def _entries(root: Path, code: Sequence[str]) -> list[tuple[str, str, Path]]:
    """``(module name, code entry, path)`` of each code entry."""
    out, seen = [], set()
    for rel in code:
        where = resolve_inside(root, rel, "code entry")
        if where.is_dir():
            name = where.name
        elif where.suffix == ".py":
            name = where.stem
        else:
            raise FormatError(f"code entry {rel!r}: expected a .py file or a folder.")
        if not name.isidentifier():
            raise FormatError(f"code entry {rel!r}: {name!r} is not a Python module name.")
        if name in seen:
            raise FormatError(f"code entry {rel!r}: two code entries are named {name!r}.")
        seen.add(name)
        out.append((name, rel, where))
    return out


def _read(root: Path, path: Path, files: Mapping[str, str] | None) -> bytes:
    data = path.read_bytes()
    if files is None:
        return data
    rel = path.relative_to(Path(os.path.realpath(root))).as_posix()
    expected = files.get(rel)
    if expected is None:
        raise IntegrityError(
            f"{rel}: is code the manifest does not list; every file a package runs must be "
            f"listed with its sha256.",
            [(rel, "unlisted")],
        )
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise IntegrityError(
            f"{rel}: sha256 is {actual[:12]}..., the manifest says {expected[:12]}.... "
            f"The package was modified after it was saved.",
            [(rel, "modified")],
        )
    return data


def _sources(
    root: Path, name: str, where: Path, files: Mapping[str, str] | None
) -> dict[str, _Source]:
    if where.is_file():
        return {name: _Source(_read(root, where, files), where, False)}
    out: dict[str, _Source] = {}
    for dirpath, dirnames, filenames in os.walk(where):
        base = Path(dirpath)
        parts = base.relative_to(where).parts
        dirnames[:] = sorted(d for d in dirnames if d.isidentifier() and d not in _SKIP_DIRS)
        package = ".".join((name, *parts))
        init = base / "__init__.py"
        data = _read(root, init, files) if init.is_file() else b""
        out[package] = _Source(data, init, True)
        for f in sorted(filenames):
            stem = f[:-3]
            if f.endswith(".py") and f != "__init__.py" and stem.isidentifier():
                out[f"{package}.{stem}"] = _Source(_read(root, base / f, files), base / f, False)
    return out


def build(root: Path, code: Sequence[str], files: Mapping[str, str] | None) -> CodeSpace | None:
    """The code space of the package at ``root`` (None if it ships no code).

    ``files`` are the manifest's hashes, checked for every source read (None while saving).

    Raises:
        FormatError: a code entry is malformed or would shadow an importable module.
        IntegrityError: a source is unlisted or differs from its hash.
    """
    if not code:
        return None
    entries = _entries(root, code)
    sources: dict[str, _Source] = {}
    for name, _, where in entries:
        sources.update(_sources(root, name, where, files))
    with _LOCK:
        _refuse_shadows(entries)
        return CodeSpace({name: rel for name, rel, _ in entries}, sources).register()


def check_shadows(root: Path, code: Sequence[str]) -> None:
    """Refuse a package whose code would shadow an importable module (whatever flavor runs).

    Raises:
        FormatError: naming the code entry and the module.
    """
    if code:
        with _LOCK:
            _refuse_shadows(_entries(root, code))


def _refuse_shadows(entries: Sequence[tuple[str, str, Path]]) -> None:
    for name, rel, where in entries:
        if shadowing(name, where) is not None:
            raise FormatError(f"{rel} would shadow the installed module {name!r}; rename it.")


def shadowing(name: str, own: Path) -> str | None:
    """Where else the top-level module ``name`` can be imported from, if anywhere.

    A copy with the same source as ``own`` (the module being saved, seen from where it was
    imported) does not count. The package finders of this module are not consulted.
    """
    module = sys.modules.get(name)
    if module is not None:
        origin = getattr(module, "__file__", None)
        if not (origin and _same(Path(origin), None, own)):
            return origin or "a module already imported"
    for finder in sys.meta_path:
        if isinstance(finder, _SpaceFinder | _PlainFinder):
            continue
        if finder is importlib.machinery.PathFinder:
            # Every entry, not just the first hit: saving imports the module from the
            # user's folder, and an installed one further down would win elsewhere.
            specs = [_find(finder, name, [entry]) for entry in sys.path]
        else:
            specs = [_find(finder, name, None)]
        for spec in specs:
            if spec is None:
                continue
            origin = spec.origin if spec.has_location else None
            locations = list(spec.submodule_search_locations or ())
            if not _same(Path(origin) if origin else None, locations, own):
                return origin or (locations[0] if locations else str(spec.origin))
    return None


def _find(finder: Any, name: str, path: Any) -> Any:
    find = getattr(finder, "find_spec", None)
    if find is None:
        return None
    try:
        return find(name, path)
    except Exception:  # noqa: BLE001 - a broken finder neither proves nor disproves a module
        return None


def _same(origin: Path | None, locations: Sequence[str] | None, own: Path) -> bool:
    """Whether a found module is ``own`` itself or a byte-for-byte copy of it."""
    try:
        if own.is_file():
            return origin is not None and (
                os.path.samefile(origin, own) or origin.read_bytes() == own.read_bytes()
            )
        folders = list(locations or ())
        if not folders and origin is not None and origin.name == "__init__.py":
            folders = [str(origin.parent)]
        return len(folders) == 1 and _same_tree(Path(folders[0]), own)
    except OSError:
        return False


def _py_files(top: Path) -> dict[str, Path]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
        for f in filenames:
            if f.endswith(".py"):
                p = Path(dirpath, f)
                out[p.relative_to(top).as_posix()] = p
    return out


def _same_tree(a: Path, b: Path) -> bool:
    if os.path.samefile(a, b):
        return True
    fa, fb = _py_files(a), _py_files(b)
    return fa.keys() == fb.keys() and all(fa[k].read_bytes() == fb[k].read_bytes() for k in fa)
