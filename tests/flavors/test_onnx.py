"""The onnx flavor: saving protos and files (external data included), sessions, predict,
signatures, and converting scikit-learn estimators."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
from tolerances import FLOAT32

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("skl2onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor  # noqa: E402

import modelpack  # noqa: E402
from modelpack.errors import FormatError, InvalidArgument, SchemaError  # noqa: E402
from modelpack.flavor import Columns  # noqa: E402
from modelpack.flavors import onnx as flavor  # noqa: E402

W = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
B = np.array([1.0, -1.0, 0.5], dtype=np.float32)


def affine_proto() -> onnx.ModelProto:
    """y = x @ W + B, with a symbolic batch dimension."""
    node = helper.make_node
    graph = helper.make_graph(
        [node("MatMul", ["x", "W"], ["xw"]), node("Add", ["xw", "B"], ["y"])],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B")],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def two_input_proto() -> onnx.ModelProto:
    """out = a + 2 * b over two [N, 1] double inputs."""
    node = helper.make_node
    graph = helper.make_graph(
        [node("Mul", ["b", "two"], ["b2"]), node("Add", ["a", "b2"], ["out"])],
        "pair",
        [helper.make_tensor_value_info(n, TensorProto.DOUBLE, [None, 1]) for n in ("a", "b")],
        [helper.make_tensor_value_info("out", TensorProto.DOUBLE, [None, 1])],
        [numpy_helper.from_array(np.array([2.0]), "two")],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture
def x() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(9, 4)).astype(np.float32)


@pytest.fixture
def external_model(tmp_path):
    """An affine model whose tensors live in ``weights.bin`` beside it."""
    src = tmp_path / "src"
    src.mkdir()
    path = src / "affine.onnx"
    onnx.save_model(affine_proto(), str(path), save_as_external_data=True,
                    location="weights.bin", size_threshold=0)  # fmt: skip
    assert (src / "weights.bin").is_file()
    return path


@pytest.fixture(scope="module")
def forest():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6))
    y = (X[:, 0] + X[:, 1] * X[:, 2] > 0).astype(np.int64)
    return RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y), X


def new_dest(tmp_path, name="pkg"):
    dest = tmp_path / name
    (dest / "model").mkdir(parents=True)
    return dest


def roundtrip(obj, tmp_path, load_options=None, **save_options):
    dest = new_dest(tmp_path)
    config = flavor.save(obj, dest, **save_options)
    native = flavor.load(dest, config, **(load_options or {}))
    return dest, config, flavor.predictor(native, config)


def with_location(path, location):
    """Rewrite every external-data location in the model file at ``path``."""
    proto = onnx.load(str(path), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    path.write_bytes(proto.SerializeToString())


def test_matches_protos_and_onnx_files(tmp_path, external_model):
    assert flavor.matches(affine_proto())
    assert flavor.matches(external_model) and flavor.matches(str(external_model))
    assert not flavor.matches(tmp_path / "missing.onnx")
    assert not flavor.matches(np.zeros(2))
    code = (
        "import sys, modelpack.flavors.onnx as f; assert not f.matches('x.txt'); "
        "assert 'onnx' not in sys.modules and 'onnxruntime' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_save_proto_and_predict(tmp_path, x):
    dest, config, predict = roundtrip(affine_proto(), tmp_path)
    assert config["path"] == "model/model.onnx" and (dest / "model" / "model.onnx").is_file()
    assert (config["opset"], config["input_names"], config["output_names"]) == (17, ["x"], ["y"])
    assert config["external_data"] == []
    np.testing.assert_allclose(predict(x, {}), x @ W + B, **FLOAT32)
    # float64 and list input are cast to the graph's float
    np.testing.assert_allclose(predict(x.astype(np.float64).tolist(), {}), x @ W + B, **FLOAT32)
    assert flavor.requirements(affine_proto(), config) == ["onnx", "onnxruntime", "numpy"]


def test_external_data_is_copied_into_the_package(tmp_path, external_model, x):
    dest, config, predict = roundtrip(external_model, tmp_path)
    assert config["external_data"] == ["weights.bin"]
    copied = dest / "model" / "weights.bin"
    assert copied.read_bytes() == (external_model.parent / "weights.bin").read_bytes()
    shutil.rmtree(external_model.parent)  # the package stands alone
    predict = flavor.predictor(flavor.load(dest, config), config)
    np.testing.assert_allclose(predict(x, {}), x @ W + B, **FLOAT32)


@pytest.mark.parametrize(
    ("location", "message"),
    [("../weights.bin", r"must not contain '\.\.'"), ("/etc/passwd", "must be relative")],
)
def test_unsafe_external_location_is_rejected_at_save(tmp_path, external_model, location, message):
    with_location(external_model, location)
    with pytest.raises(FormatError, match=f"ONNX external data location '{location}': {message}"):
        flavor.save(external_model, new_dest(tmp_path))
    assert not (tmp_path / "pkg" / "model" / "model.onnx").exists()


def test_unsafe_external_location_is_rejected_at_load(tmp_path, external_model):
    dest = new_dest(tmp_path)
    config = flavor.save(external_model, dest)
    (tmp_path / "secret.bin").write_bytes((dest / "model" / "weights.bin").read_bytes())
    with_location(dest / "model" / "model.onnx", "../../secret.bin")
    with pytest.raises(FormatError, match=r"'\.\./\.\./secret\.bin': must not contain '\.\.'"):
        flavor.load(dest, config)


def test_proto_without_its_external_files_is_rejected(tmp_path, external_model):
    proto = onnx.load(str(external_model), load_external_data=False)
    with pytest.raises(InvalidArgument, match="Pass the path of its .onnx file instead"):
        flavor.save(proto, new_dest(tmp_path))
    # loaded with its data, the same model saves inline
    _, config, _ = roundtrip(onnx.load(str(external_model)), tmp_path / "inline")
    assert config["external_data"] == []


def test_save_rejects_other_objects_and_options(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(InvalidArgument, match="junk.onnx' is not a readable ONNX model"):
        flavor.save(tmp_path / "junk.onnx", new_dest(tmp_path, "a"))
    with pytest.raises(InvalidArgument, match="saves an onnx.ModelProto or the path of a .onnx"):
        flavor.save(42, new_dest(tmp_path))
    with pytest.raises(InvalidArgument, match="The 'onnx' flavor's save does not take 'opset'"):
        flavor.save(affine_proto(), new_dest(tmp_path, "b"), opset=13)
    with pytest.raises(InvalidArgument, match="the model has no output 'z'. Outputs: y."):
        flavor.save(affine_proto(), new_dest(tmp_path, "c"), output_names=["z"])
    with pytest.raises(InvalidArgument, match="columns must be a list of column names"):
        flavor.save(affine_proto(), new_dest(tmp_path, "d"), columns="abc")


def test_unknown_provider_lists_available(tmp_path):
    dest = new_dest(tmp_path)
    config = flavor.save(affine_proto(), dest)
    with pytest.raises(
        InvalidArgument,
        match=r"Unknown onnxruntime provider 'NopeExecutionProvider'\. Available: .*CPUExec",
    ):
        flavor.load(dest, config, providers=["NopeExecutionProvider"])
    with pytest.raises(InvalidArgument, match="The 'onnx' flavor's load does not take 'device'"):
        flavor.load(dest, config, device="cuda")
    with pytest.raises(InvalidArgument, match="intra_op_num_threads must be an integer >= 0"):
        flavor.load(dest, config, intra_op_num_threads=-1)
    with pytest.raises(FormatError, match="ONNX model path '/tmp/x.onnx': must be relative"):
        flavor.load(dest, {**config, "path": "/tmp/x.onnx"})


def test_load_options_reach_the_session(tmp_path, x):
    options = {"providers": [("CPUExecutionProvider", {})], "intra_op_num_threads": 1,
               "inter_op_num_threads": 1}  # fmt: skip
    dest, config, predict = roundtrip(affine_proto(), tmp_path, load_options=options)
    session = flavor.load(dest, config, **options)
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert session.get_session_options().intra_op_num_threads == 1
    np.testing.assert_allclose(predict(x, {}), x @ W + B, **FLOAT32)


def test_several_inputs_from_columns_dicts_and_frames(tmp_path):
    _, _, predict = roundtrip(two_input_proto(), tmp_path)
    a, b = np.arange(5.0), np.ones(5)
    want = (a + 2 * b).reshape(-1, 1)
    np.testing.assert_allclose(predict(Columns({"a": a, "b": b}, n_rows=5), {}), want)
    np.testing.assert_allclose(predict({"b": b.astype(np.int32), "a": a.tolist()}, {}), want)
    pd = pytest.importorskip("pandas")
    np.testing.assert_allclose(predict(pd.DataFrame({"a": a, "b": b}), {}), want)
    with pytest.raises(SchemaError, match="Missing input 'b': the model takes a, b; got a."):
        predict({"a": a}, {})
    with pytest.raises(SchemaError, match=r"takes 2 inputs \(a, b\): pass a dict"):
        predict(np.ones((5, 2)), {})


def test_columns_feed_a_one_input_graph_as_a_matrix(tmp_path, x):
    _, _, predict = roundtrip(affine_proto(), tmp_path)
    columns = Columns({f"c{i}": x[:, i].astype(np.float64) for i in range(4)}, n_rows=len(x))
    np.testing.assert_allclose(predict(columns, {}), x @ W + B, **FLOAT32)


def test_convert_random_forest_agrees_with_sklearn(tmp_path, forest):
    model, X = forest
    proba = model.predict_proba(X)
    assert (proba[:, 0] == proba[:, 1]).any(), "the data should hold a 5-5 tie"
    proto, options = flavor.convert(model, X[:5])
    assert options == {"output_names": ["label"]}
    assert proto.graph.input[0].type.tensor_type.elem_type == TensorProto.DOUBLE
    _, config, predict = roundtrip(proto, tmp_path, **options)
    assert config["output_names"] == ["label"]
    np.testing.assert_array_equal(predict(X, {}), model.predict(X))

    proto, options = flavor.convert(model, X[:5], predict_method="predict_proba")
    assert options == {"output_names": ["probabilities"]}
    _, _, predict = roundtrip(proto, tmp_path / "proba", **options)
    np.testing.assert_allclose(predict(X, {}), model.predict_proba(X), **FLOAT32)


def test_convert_float32_example_gives_a_float_graph(tmp_path, forest):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3)).astype(np.float32)
    model = RandomForestRegressor(n_estimators=5, random_state=0).fit(X, X.sum(axis=1))
    proto, options = flavor.convert(model, X[:5])
    assert proto.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    _, _, predict = roundtrip(proto, tmp_path, **options)
    np.testing.assert_allclose(predict(X, {}).ravel(), model.predict(X), **FLOAT32)


def test_convert_columns_follow_the_training_order(tmp_path, forest):
    pd = pytest.importorskip("pandas")
    _, X = forest
    frame = pd.DataFrame(X, columns=list("abcdef"))
    y = (X[:, 0] > 0).astype(np.int64)
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(frame, y)
    shuffled = frame[list("fedcba")]
    example = Columns({c: shuffled[c].to_numpy() for c in shuffled}, n_rows=len(X))
    proto, options = flavor.convert(model, example)
    assert options["columns"] == list("abcdef")
    _, _, predict = roundtrip(proto, tmp_path, **options)
    np.testing.assert_array_equal(predict(example, {}), model.predict(frame))


def test_convert_errors_say_what_is_wrong(forest):
    model, X = forest
    with pytest.raises(InvalidArgument, match="Cannot serve 'decision_function'.*Supported: pre"):
        flavor.convert(model, X[:5], predict_method="decision_function")
    with pytest.raises(InvalidArgument, match="column 'name' is not numeric"):
        flavor.convert(model, {"name": np.array(["a", "b"]), "x": np.ones(2)})
    with pytest.raises(InvalidArgument, match=r"expected a 2-D example .* got shape \(6,\)"):
        flavor.convert(model, X[0])


def test_infer_signature_from_graph(tmp_path, forest):
    model, X = forest
    proto, options = flavor.convert(model, X[:5])
    sig = flavor.infer_signature(proto)
    assert sig.inputs.to_dict() == {"kind": "tensor", "dtype": "float64", "shape": [-1, 6],
                                    "name": "input"}  # fmt: skip
    assert [(t.name, t.dtype, t.shape) for t in sig.outputs.tensors] == [
        ("label", "int64", (-1,)), ("probabilities", "float32", (-1, 2))
    ]  # fmt: skip
    dest, config, _ = roundtrip(proto, tmp_path, **options)
    from_session = flavor.infer_signature(flavor.load(dest, config), config["output_names"])
    assert from_session == flavor.graph_signature(config, dest)
    assert from_session.outputs.to_dict() == {"kind": "tensor", "dtype": "int64", "shape": [-1],
                                              "name": "label"}  # fmt: skip
    assert flavor.infer_signature(affine_proto()).inputs.tensors[0].shape == (-1, 4)


def test_public_api_sklearn_also_onnx(tmp_path, forest):
    model, X = forest
    path = tmp_path / "p"
    modelpack.save(model, path, input_example=X[:5], also=("onnx",))
    pack = modelpack.load(path, flavor="onnx")
    assert pack.flavor == "onnx" and (path / "model" / "model.onnx").is_file()
    np.testing.assert_array_equal(pack.predict(X), model.predict(X))


def test_public_api_onnx_file_with_external_data(tmp_path, external_model, x):
    modelpack.save(external_model, tmp_path / "p", input_example=x[:2])
    shutil.rmtree(external_model.parent)
    pack = modelpack.load(tmp_path / "p")
    assert pack.flavor == "onnx"
    np.testing.assert_allclose(pack.predict(x), x @ W + B, **FLOAT32)
