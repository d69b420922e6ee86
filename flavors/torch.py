"""Save and serve PyTorch modules: a torch.export program, TorchScript, or a cloudpickled module.

With an input example the module is saved as a pickle-free ``torch.export`` program with a
dynamic batch dimension (``model/model.pt2``). When export fails, or without an example, it is
saved as TorchScript, and as a last resort as a cloudpickled module (``model/model.pth``, the
name MLflow's loader opens; packages saved before used ``model/model.pt``). The
config's ``format`` says which; ``save(..., format=...)`` forces one.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from modelpack.errors import FormatError, InvalidArgument, SchemaError
from modelpack.flavor import Predict, check_options, require
from modelpack.flavors import _quiet
from modelpack.paths import resolve_inside

NAME = "torch"
FORMATS = ("export", "torchscript", "pickle")
# The keys save() writes into the manifest's flavors.torch, each with the values it may take
# (None: any). Reading a manifest refuses other keys and values.
CONFIG_KEYS = {
    "path": None,
    "format": FORMATS,
    "torch_version": None,
    "float_dtype": None,
    "input_dtype": None,
}
_PTH = "model/model.pth"  # the name mlflow.pytorch opens (modelpack.mlmodel)
_FILES = {"export": "model/model.pt2", "torchscript": _PTH, "pickle": _PTH}
_LABELS = {"export": "torch.export", "torchscript": "TorchScript", "pickle": "pickle"}
# The attribute under which ``load`` keeps the ExportedProgram next to its module.
_PROGRAM_ATTR = "_modelpack_exported_program"
log = logging.getLogger(__name__)


def _torch() -> Any:
    return require("torch", NAME, "torch")


def matches(obj: Any) -> bool:
    """True for a ``torch.nn.Module`` (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def requirements(obj: Any, config: Mapping[str, Any]) -> list[str]:
    """Distributions a saved module needs at load (a pickled one, cloudpickle too)."""
    return ["torch", "numpy", *(["cloudpickle"] if config.get("format") == "pickle" else [])]


def save(obj: Any, dest: Path, *, example: Any = None, **options: Any) -> dict:
    """Write ``obj`` under ``dest/model`` and return the flavor config.

    Options:
        format: ``"export"`` (needs an example), ``"torchscript"`` or ``"pickle"``; by default
            the first that works, in that order (export only with an example). What torch
            prints and logs while a format fails is kept off the console; when another
            format is used instead, one warning says which and why.

    Raises:
        InvalidArgument: for an unknown option or format, a non-module, or when the forced
            format (or every format) fails; the message carries the reason.
    """
    check_options(NAME, "save", options, ("format",))
    fmt = options.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise InvalidArgument(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}.")
    torch = _torch()
    if not isinstance(obj, torch.nn.Module):
        raise InvalidArgument(
            f"The 'torch' flavor saves torch.nn.Module objects, got {type(obj).__name__}."
        )
    float_dtype = _float_dtype(torch, obj)
    try:
        inputs = None if example is None else _example_inputs(torch, example, float_dtype)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InvalidArgument(f"The input example cannot become a tensor: {exc}") from exc
    if fmt == "export" and inputs is None:
        raise InvalidArgument("format='export' needs an input example to trace the module with.")
    order = [fmt] if fmt else ["export", "torchscript", "pickle"] if inputs else FORMATS[1:]
    failures: list[tuple[str, Exception]] = []
    with _eval_mode(obj):
        for candidate in order:
            path = dest / _FILES[candidate]
            try:
                with _quiet.silenced("torch"):  # a failed export prints ~40 lines
                    _SAVERS[candidate](torch, obj, inputs, path)
                break
            except Exception as exc:  # noqa: BLE001 - every framework error means "try the next"
                path.unlink(missing_ok=True)
                failures.append((candidate, exc))
        else:
            raise InvalidArgument(
                f"Could not save {type(obj).__name__} with the 'torch' flavor. "
                + " ".join(f"{c}: {type(e).__name__}: {e}".strip() for c, e in failures)
            )
    if failures:
        # A warning: the package is not what a first choice would have made (TorchScript or a
        # pickle instead of a pickle-free export program), and the user should see that once.
        log.warning(
            "Saving %s as %s: %s. Pass format=%r to see the whole error.",
            type(obj).__name__,
            _LABELS[candidate],
            "; ".join(f"{_LABELS[c]} failed ({_first_line(e)})" for c, e in failures),
            failures[0][0],
        )
    config: dict[str, Any] = {
        "path": _FILES[candidate],
        "format": candidate,
        "torch_version": torch.__version__,
    }
    if float_dtype is not None:
        config["float_dtype"] = str(float_dtype).removeprefix("torch.")
    if inputs is not None and isinstance(inputs, tuple):
        config["input_dtype"] = str(inputs[0].dtype).removeprefix("torch.")
    return config


def load(src: Path, config: Mapping[str, Any], **options: Any) -> Any:
    """Load the saved module onto ``device`` (``"cpu"``, default, or ``"cuda"``), in eval mode.

    Raises:
        InvalidArgument: for an unknown option, a bad device, or CUDA asked for but absent.
        FormatError: for an unknown format or a path that leaves the package.
    """
    check_options(NAME, "load", options, ("device",))
    torch = _torch()
    device = _device(torch, options.get("device", "cpu"))
    path = resolve_inside(src, config["path"], "torch model path")
    fmt = config.get("format")
    if fmt == "export":
        program = torch.export.load(str(path))
        if device.type != "cpu":
            from torch.export.passes import move_to_device_pass

            program = move_to_device_pass(program, device)
        module = program.module()  # exported in eval mode; its eval() is unsupported
        module.__dict__[_PROGRAM_ATTR] = program
        return module
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location=device)
    elif fmt == "pickle":
        module = torch.load(str(path), map_location=device, weights_only=False).to(device)
    else:
        raise FormatError(f"Unknown torch format {fmt!r}. Supported: {', '.join(FORMATS)}.")
    return module.eval()


def predictor(native: Any, config: Mapping[str, Any]) -> Predict:
    """Return ``predict(data, params)``: numpy in, numpy (or a dict of numpy) out."""
    torch = _torch()
    import numpy as np

    fast = _program_call(torch, native)
    device = fast.device if fast else _module_device(torch, native)
    on_cpu = device.type == "cpu"
    target = _np_dtype(np, fast.dtype if fast else config.get("input_dtype"))
    float_dtype = _np_dtype(np, config.get("float_dtype"))
    tensor_type = torch.Tensor
    run = fast.call if fast else native

    def to_tensor(value: Any) -> Any:
        if isinstance(value, tensor_type):
            return value if on_cpu else value.to(device)
        arr = value if type(value) is np.ndarray else np.asarray(value)
        dtype = arr.dtype
        if target is not None:
            if dtype != target and np.can_cast(dtype, target, "same_kind"):
                arr = arr.astype(target)
        elif float_dtype is not None and dtype.kind == "f" and dtype != float_dtype:
            arr = arr.astype(float_dtype)
        if not (arr.flags.c_contiguous and arr.flags.writeable and arr.dtype.isnative):
            arr = np.array(arr, dtype=arr.dtype.newbyteorder("="), order="C")
        tensor = torch.from_numpy(arr)
        return tensor if on_cpu else tensor.to(device)

    def to_numpy(out: Any) -> Any:
        if isinstance(out, tensor_type):
            return out.numpy() if on_cpu and out.device.type == "cpu" else out.cpu().numpy()
        if isinstance(out, tuple | list):
            return {f"output_{i}": to_numpy(o) for i, o in enumerate(out)}
        if isinstance(out, Mapping):
            return {str(k): to_numpy(v) for k, v in out.items()}
        return out

    def predict(data: Any, params: Mapping[str, Any] | None = None) -> Any:
        with torch.inference_mode():
            if hasattr(data, "to_matrix"):  # Columns: one feature matrix in signature order
                return to_numpy(run(to_tensor(data.to_matrix())))
            if isinstance(data, Mapping):
                return to_numpy(native(**{k: to_tensor(v) for k, v in data.items()}))
            return to_numpy(run(to_tensor(data)))

    return predict


def _np_dtype(np: Any, name: str | None) -> Any:
    try:
        return np.dtype(name) if name else None
    except TypeError:  # bfloat16 and other dtypes numpy lacks: pass inputs through
        return None


# ---------------------------------------------------------------------------- saving


@contextlib.contextmanager
def _eval_mode(module: Any) -> Iterator[None]:
    """Save what inference runs (no dropout, running batch-norm stats); restore modes after."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _float_dtype(torch: Any, module: Any) -> Any:
    for t in (*module.parameters(), *module.buffers()):
        if t.is_floating_point():
            return t.dtype
    return None


def _example_inputs(torch: Any, example: Any, float_dtype: Any) -> Any:
    """The example as a tuple of one tensor, or a dict of tensors (keyword inputs)."""
    import numpy as np

    def tensor(value: Any) -> Any:
        t = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
        if t.is_floating_point() and float_dtype is not None:
            t = t.to(float_dtype)
        # export specializes a dimension of size 1: trace a batch of at least 2 rows.
        return t.repeat(2, *[1] * (t.ndim - 1)) if t.ndim and t.shape[0] == 1 else t

    if hasattr(example, "to_matrix"):
        return (tensor(example.to_matrix()),)
    if isinstance(example, Mapping):
        return {str(k): tensor(v) for k, v in example.items()}
    return (tensor(example),)


def _first_line(exc: Exception, limit: int = 200) -> str:
    """``Type: first line of the message``, whitespace collapsed, at most ``limit`` chars."""
    if isinstance(exc, SystemError) and isinstance(exc.__cause__, Exception):
        exc = exc.__cause__  # raised inside a C call (a TracerWarning in Tensor.__bool__)
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {' '.join(lines[0].split())}" if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _save_export(torch: Any, module: Any, inputs: Any, path: Path) -> None:
    batch = torch.export.Dim("batch")
    if isinstance(inputs, dict):
        args, kwargs = (), inputs
        dynamic = {k: {0: batch} if t.ndim else None for k, t in inputs.items()}
    else:
        args, kwargs = inputs, None
        dynamic = tuple({0: batch} if t.ndim else None for t in inputs)
    program = torch.export.export(module, args, kwargs=kwargs, dynamic_shapes=dynamic)
    torch.export.save(program, str(path))


def _save_torchscript(torch: Any, module: Any, inputs: Any, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            scripted = torch.jit.script(module)
        except Exception:
            if inputs is None:
                raise
            # A trace that warns it may not generalize is not a faithful copy: refuse it.
            warnings.simplefilter("error", torch.jit.TracerWarning)
            if isinstance(inputs, dict):
                scripted = torch.jit.trace(module, example_kwarg_inputs=inputs)
            else:
                scripted = torch.jit.trace(module, inputs)
        torch.jit.save(scripted, str(path))


def _save_pickle(torch: Any, module: Any, inputs: Any, path: Path) -> None:
    import cloudpickle

    torch.save(module, str(path), pickle_module=cloudpickle)


_SAVERS = {"export": _save_export, "torchscript": _save_torchscript, "pickle": _save_pickle}


# ---------------------------------------------------------------------------- loading


def _device(torch: Any, device: Any) -> Any:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InvalidArgument(f"device must be 'cpu' or 'cuda', got {device!r}.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InvalidArgument(
            f"device={device!r}: CUDA is not available (torch {torch.__version__}). "
            f"Use device='cpu', or install a CUDA build of torch on a machine with a GPU."
        )
    return dev


def _module_device(torch: Any, module: Any) -> Any:
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return torch.device("cpu")


class _ProgramCall:
    """Runs an ExportedProgram's graph directly: what ``program.module()`` runs, without the
    per-call pytree flattening and guard hooks (~70 us at 1 row), for the common case of one
    tensor in. Input shape and dtype are checked here instead, from the traced placeholder."""

    def __init__(self, graph: Any, lifted: list, placeholder: Any, out_spec: Any) -> None:
        self.graph = graph
        self.lifted = lifted
        val = placeholder.meta["val"]
        self.dtype = str(val.dtype).removeprefix("torch.")
        self.tail = tuple(val.shape[1:]) if all(isinstance(s, int) for s in val.shape[1:]) else None
        self.label = placeholder.name
        self.device = lifted[0].device if lifted else val.device
        self.out_spec = None if out_spec.is_leaf() else out_spec

    def call(self, tensor: Any) -> Any:
        if self.tail is not None and tensor.shape[1:] != self.tail:
            expected = (-1, *self.tail)
            raise SchemaError(
                f"Tensor {self.label!r}: expected shape {expected}, got {tuple(tensor.shape)}.",
                self.label,
            )
        out = self.graph(*self.lifted, tensor)
        if self.out_spec is None:
            return out[0]
        import torch.utils._pytree as pytree

        return pytree.tree_unflatten(list(out), self.out_spec)


def _program_call(torch: Any, native: Any) -> _ProgramCall | None:
    program = getattr(native, "__dict__", {}).get(_PROGRAM_ATTR)
    if program is None:
        return None
    import torch.utils._pytree as pytree
    from torch.export.graph_signature import InputKind, OutputKind

    sig = program.graph_signature
    if program.call_spec.in_spec != pytree.tree_flatten(((0,), {}))[1]:
        return None
    if any(spec.kind != OutputKind.USER_OUTPUT for spec in sig.output_specs):
        return None
    state, constants = program.state_dict, program.constants
    lifted = []
    specs = sig.input_specs
    for spec in specs[:-1]:
        if spec.kind in (InputKind.PARAMETER, InputKind.BUFFER) and spec.target in state:
            lifted.append(state[spec.target])
        elif spec.kind in (InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
            lifted.append(constants[spec.target])
        else:
            return None
    if specs[-1].kind != InputKind.USER_INPUT:
        return None
    placeholders = [n for n in program.graph.nodes if n.op == "placeholder"]
    return _ProgramCall(program.graph_module, lifted, placeholders[-1], program.call_spec.out_spec)
