"""The torch flavor: export / TorchScript / pickle saving, loading, and predict."""

from __future__ import annotations

import contextlib
import logging
import re
import subprocess
import sys

import numpy as np
import pytest
from tolerances import CUDA_FLOAT32, FLOAT32

torch = pytest.importorskip("torch")

import modelpack  # noqa: E402
from modelpack.errors import FormatError, InvalidArgument, SchemaError  # noqa: E402
from modelpack.flavor import Columns  # noqa: E402
from modelpack.flavors import torch as flavor  # noqa: E402


def mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(20, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 2),
    )  # fmt: skip


class TwoHeads(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.body = torch.nn.Linear(20, 8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        return h.relu(), h.sum(dim=1)


class NamedHeads(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.body = torch.nn.Linear(20, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.body(x)
        return {"logits": h, "best": h.argmax(dim=1)}


class Branchy(torch.nn.Module):
    """Data-dependent control flow: torch.export refuses it, TorchScript compiles it."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.lin = torch.nn.Linear(20, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.lin(x)
        return -self.lin(x)


class VarArgs(torch.nn.Module):
    """``*args`` in forward: TorchScript cannot compile it, pickle can save it."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.lin = torch.nn.Linear(20, 2)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return self.lin(xs[0]) * 2


class Stubborn(torch.nn.Module):
    """``*args`` and data-dependent control flow: export, script and trace all fail."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(6)
        self.lin = torch.nn.Linear(20, 2)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if xs[0].sum() > 0:
            return self.lin(xs[0])
        return -self.lin(xs[0])


class Pair(torch.nn.Module):
    """Two keyword inputs."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(5)
        self.lin = torch.nn.Linear(4, 2)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.lin(a) + b.sum(dim=1, keepdim=True)


@pytest.fixture
def X() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(7, 20))


def eager(module: torch.nn.Module, x: np.ndarray):
    with torch.no_grad():
        out = module.eval()(torch.as_tensor(x, dtype=torch.float32))
    if isinstance(out, tuple):
        return {f"output_{i}": o.numpy() for i, o in enumerate(out)}
    if isinstance(out, dict):
        return {k: v.numpy() for k, v in out.items()}
    return out.numpy()


def roundtrip(module, tmp_path, **save_options):
    """save -> load -> predictor, as core does it; returns (config, native, predict)."""
    dest = tmp_path / "pkg"
    (dest / "model").mkdir(parents=True)
    config = flavor.save(module, dest, **save_options)
    assert (dest / config["path"]).is_file()
    native = flavor.load(dest, config)
    return config, native, flavor.predictor(native, config)


def test_matches_modules_only_and_import_is_cheap():
    assert flavor.matches(mlp())
    assert not flavor.matches(np.zeros(3))
    code = (
        "import sys, modelpack.flavors.torch as f; assert not f.matches(object()); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_export_from_batch_one_example_has_dynamic_batch(tmp_path, X):
    model = mlp()
    config, native, predict = roundtrip(model, tmp_path, example=X[:1])
    assert config["format"] == "export"
    assert config["path"] == "model/model.pt2"
    assert config["torch_version"] == torch.__version__
    for rows in (X[:1], X):
        np.testing.assert_allclose(predict(rows, {}), eager(model, rows), **FLOAT32)
    # The loaded native object is a callable module, as a user would unwrap it.
    out = native(torch.as_tensor(X, dtype=torch.float32))
    np.testing.assert_allclose(out.detach().numpy(), eager(model, X), **FLOAT32)


def test_export_checks_feature_shape(tmp_path, X):
    _, _, predict = roundtrip(mlp(), tmp_path, example=X[:2])
    with pytest.raises(SchemaError, match=r"expected shape \(-1, 20\), got \(7, 19\)"):
        predict(X[:, :19], {})


def test_without_example_saves_torchscript(tmp_path, X):
    model = mlp()
    config, _, predict = roundtrip(model, tmp_path)
    assert (config["format"], config["path"]) == ("torchscript", "model/model.pth")
    np.testing.assert_allclose(predict(X, {}), eager(model, X), **FLOAT32)


def test_unscriptable_module_without_example_is_pickled(tmp_path, X):
    model = VarArgs()
    config, _, predict = roundtrip(model, tmp_path)
    assert config["format"] == "pickle"
    np.testing.assert_allclose(predict(X, {}), eager(model, X), **FLOAT32)


def test_export_failure_falls_back_to_torchscript(tmp_path, X):
    model = Branchy()
    config, _, predict = roundtrip(model, tmp_path, example=X[:2])
    assert config["format"] == "torchscript"
    for rows in (np.abs(X), -np.abs(X)):  # both branches survive
        np.testing.assert_allclose(predict(rows, {}), eager(model, rows), **FLOAT32)


@pytest.mark.parametrize("fmt", ["export", "torchscript", "pickle"])
def test_format_can_be_forced(tmp_path, X, fmt):
    model = mlp()
    config, _, predict = roundtrip(model, tmp_path, example=X[:3], format=fmt)
    assert config["format"] == fmt
    np.testing.assert_allclose(predict(X, {}), eager(model, X), **FLOAT32)


@pytest.mark.parametrize("fmt", ["export", "torchscript", "pickle"])
def test_requirements_name_what_loading_the_format_needs(tmp_path, X, fmt):
    modelpack.save(mlp(), tmp_path / "m", input_example=X[:3], format=fmt)
    pinned = {
        line.split("==")[0] for line in (tmp_path / "m" / "requirements.txt").read_text().split()
    }
    assert {"torch", "numpy"} <= pinned
    assert ("cloudpickle" in pinned) == (fmt == "pickle")


def test_forced_format_that_fails_says_why(tmp_path, X):
    with pytest.raises(InvalidArgument, match=r"Could not save Branchy .* export: "):
        roundtrip(Branchy(), tmp_path, example=X[:2], format="export")


def test_export_needs_an_example(tmp_path):
    with pytest.raises(InvalidArgument, match="format='export' needs an input example"):
        roundtrip(mlp(), tmp_path, format="export")


def test_unknown_format_and_options_are_rejected(tmp_path, X):
    with pytest.raises(InvalidArgument, match="format must be one of export, torchscript, pickle"):
        roundtrip(mlp(), tmp_path, format="onnx")
    dest = tmp_path / "other"
    (dest / "model").mkdir(parents=True)
    with pytest.raises(InvalidArgument, match="The 'torch' flavor's save does not take 'opset'"):
        flavor.save(mlp(), dest, opset=17)
    config = flavor.save(mlp(), dest)
    with pytest.raises(InvalidArgument, match="The 'torch' flavor's load does not take 'thread"):
        flavor.load(dest, config, threads=2)
    with pytest.raises(FormatError, match="Unknown torch format 'tflite'. Supported: export, "):
        flavor.load(dest, {**config, "format": "tflite"})
    with pytest.raises(FormatError, match="torch model path '../model.pt': must not contain"):
        flavor.load(dest / "model", {**config, "path": "../model.pt"})


def test_save_rejects_non_modules_and_odd_examples(tmp_path):
    with pytest.raises(InvalidArgument, match="saves torch.nn.Module objects, got str"):
        flavor.save("mlp", tmp_path)
    with pytest.raises(InvalidArgument, match="The input example cannot become a tensor"):
        flavor.save(mlp(), tmp_path, example=np.array([["a", "b"]], dtype=object))


@pytest.mark.parametrize("fmt", ["export", "torchscript"])
def test_tuple_output_becomes_dict(tmp_path, X, fmt):
    model = TwoHeads()
    _, _, predict = roundtrip(model, tmp_path, example=X[:2], format=fmt)
    got, want = predict(X, {}), eager(model, X)
    assert sorted(got) == ["output_0", "output_1"]
    for key in want:
        np.testing.assert_allclose(got[key], want[key], **FLOAT32)


def test_dict_output_stays_named(tmp_path, X):
    model = NamedHeads()
    config, _, predict = roundtrip(model, tmp_path, example=X[:2])
    assert config["format"] == "export"
    got, want = predict(X, {}), eager(model, X)
    assert sorted(got) == ["best", "logits"]
    np.testing.assert_array_equal(got["best"], want["best"])
    np.testing.assert_allclose(got["logits"], want["logits"], **FLOAT32)


def test_dict_example_means_keyword_inputs(tmp_path):
    rng = np.random.default_rng(1)
    data = {"a": rng.normal(size=(5, 4)), "b": rng.normal(size=(5, 3))}
    model = Pair()
    config, _, predict = roundtrip(model, tmp_path, example={k: v[:1] for k, v in data.items()})
    assert config["format"] == "export"
    with torch.no_grad():
        want = model(**{k: torch.as_tensor(v, dtype=torch.float32) for k, v in data.items()})
    np.testing.assert_allclose(predict(data, {}), want.numpy(), **FLOAT32)


def test_columns_input_becomes_one_matrix(tmp_path, X):
    model = mlp()
    _, _, predict = roundtrip(model, tmp_path, example=X[:2])
    columns = Columns({f"f{i}": X[:, i] for i in range(20)}, n_rows=len(X))
    np.testing.assert_allclose(predict(columns, {}), eager(model, X), **FLOAT32)


def test_predict_accepts_lists_and_read_only_arrays(tmp_path, X):
    model = mlp()
    _, _, predict = roundtrip(model, tmp_path, format="torchscript")
    frozen = np.asfortranarray(X)
    frozen.flags.writeable = False
    np.testing.assert_allclose(predict(frozen, {}), eager(model, X), **FLOAT32)
    np.testing.assert_allclose(predict(X.tolist(), {}), eager(model, X), **FLOAT32)


def test_saving_uses_eval_mode_and_restores_training(tmp_path, X):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(20, 16), torch.nn.Dropout(0.5))
    model.train()
    _, _, predict = roundtrip(model, tmp_path, example=X[:2])
    assert model.training and model[1].training
    first, second = predict(X, {}), predict(X, {})
    np.testing.assert_array_equal(first, second)  # no dropout at inference
    np.testing.assert_allclose(first, eager(model, X), **FLOAT32)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_unavailable_is_a_clear_error(tmp_path):
    dest = tmp_path / "pkg"
    (dest / "model").mkdir(parents=True)
    config = flavor.save(mlp(), dest)
    with pytest.raises(InvalidArgument, match=r"CUDA is not available .* Use device='cpu'"):
        flavor.load(dest, config, device="cuda")
    with pytest.raises(InvalidArgument, match="device must be 'cpu' or 'cuda', got 'gpu'"):
        flavor.load(dest, config, device="gpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("fmt", ["export", "torchscript", "pickle"])
def test_cuda_device(tmp_path, X, fmt):
    model = mlp()
    dest = tmp_path / "pkg"
    (dest / "model").mkdir(parents=True)
    config = flavor.save(model, dest, example=X[:2], format=fmt)
    predict = flavor.predictor(flavor.load(dest, config, device="cuda"), config)
    np.testing.assert_allclose(predict(X, {}), eager(model, X), **CUDA_FLOAT32)


def test_public_api_round_trip(tmp_path, X):
    model = mlp()
    modelpack.save(model, tmp_path / "p", input_example=X[:2])
    pack = modelpack.load(tmp_path / "p")
    assert pack.flavor == "torch"
    assert pack.manifest.flavors["torch"]["format"] == "export"
    np.testing.assert_allclose(pack.predict(X), eager(model, X), **FLOAT32)
    np.testing.assert_allclose(pack.predict(X[:1]), eager(model, X[:1]), **FLOAT32)


def test_public_api_round_trip_without_example(tmp_path, X):
    model = TwoHeads()
    modelpack.save(model, tmp_path / "p")
    pack = modelpack.load(tmp_path / "p")
    assert pack.manifest.flavors["torch"]["format"] == "torchscript"
    got, want = pack.predict(X), eager(model, X)
    np.testing.assert_allclose(got["output_1"], want["output_1"], **FLOAT32)


@contextlib.contextmanager
def torch_logs_to_stderr():
    """Point torch's own log handlers at sys.stderr now, where a terminal would show them.

    torch's handlers keep the stream that was sys.stderr when torch was imported (pytest's).
    """
    handlers = {
        handler
        for name, lg in list(logging.Logger.manager.loggerDict.items())
        if isinstance(lg, logging.Logger) and name.split(".")[0] == "torch"
        for handler in lg.handlers
        if type(handler) is logging.StreamHandler
    }
    assert handlers, "torch installs no log handlers: this test needs a new way in"
    previous = {handler: handler.setStream(sys.stderr) for handler in handlers}
    try:
        yield
    finally:
        for handler, stream in previous.items():
            if stream is not None:
                handler.setStream(stream)


@pytest.mark.parametrize(
    ("module", "example", "line"),
    [
        (
            Branchy,
            True,
            r"Saving Branchy as TorchScript: torch\.export failed \(GuardOnDataDependentSymNode: "
            r"Could not guard on data-dependent expression [^\n]*\)\. "
            r"Pass format='export' to see the whole error\.",
        ),
        (
            Stubborn,
            True,
            r"Saving Stubborn as pickle: torch\.export failed \(UserError: [^\n]*\); "
            r"TorchScript failed \(TracerWarning: Converting a tensor to a Python "
            r"boolean[^\n]*\)\. "
            r"Pass format='export' to see the whole error\.",
        ),
        (
            VarArgs,
            False,
            r"Saving VarArgs as pickle: TorchScript failed \(NotSupportedError: Compiled "
            r"functions can't take variable number of arguments[^\n]*\)\. "
            r"Pass format='torchscript' to see the whole error\.",
        ),
    ],
)
def test_a_fallback_prints_nothing_and_logs_one_line_saying_why(
    tmp_path, X, capfd, caplog, module, example, line
):
    model = module()
    capfd.readouterr()
    with caplog.at_level("DEBUG"), torch_logs_to_stderr():
        modelpack.save(model, tmp_path / "p", input_example=X[:2] if example else None)
    out, err = capfd.readouterr()
    assert (out + err).count("\n") <= 1, out + err
    records = [r for r in caplog.records if r.name.startswith(("torch", "modelpack.flavors"))]
    assert [(r.name, r.levelname) for r in records] == [("modelpack.flavors.torch", "WARNING")]
    assert re.fullmatch(line, records[0].getMessage())
    pack = modelpack.load(tmp_path / "p")
    np.testing.assert_allclose(pack.predict(np.abs(X)), eager(model, np.abs(X)), **FLOAT32)
