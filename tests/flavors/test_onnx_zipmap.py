"""skl2onnx's default classifier output (a ZipMap: one class -> probability map per row) saved
with the onnx flavor: served as a probabilities tensor, columns in class order."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
skl2onnx = pytest.importorskip("skl2onnx")

from onnx import TensorProto, helper  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

import modelpack  # noqa: E402
from modelpack.errors import InvalidArgument  # noqa: E402
from modelpack.flavors import onnx as flavor  # noqa: E402
from modelpack.signature import TensorSchema, TensorSpec  # noqa: E402

NAMES = np.array(["setosa", "versicolor", "virginica"])


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return X.astype(np.float32), y


def classifiers(iris):
    X, y = iris
    return {
        "forest": RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y),
        "logistic": LogisticRegression(max_iter=1000).fit(X, y),
        "logistic-named": LogisticRegression(max_iter=1000).fit(X, NAMES[y]),
    }


@pytest.fixture(scope="module", params=["forest", "logistic", "logistic-named"])
def zipmap_model(request, iris):
    """(fitted sklearn classifier, its skl2onnx conversion with the default ZipMap)."""
    clf = classifiers(iris)[request.param]
    proto = skl2onnx.to_onnx(clf, iris[0][:1])
    assert [n.op_type for n in proto.graph.node][-1] == "ZipMap"
    return clf, proto


def check_predictions(out, clf, X):
    assert sorted(out) == ["output_label", "output_probability"]
    np.testing.assert_array_equal(out["output_label"], clf.predict(X))
    proba = out["output_probability"]
    assert proba.dtype == np.float32 and proba.shape == (len(X), len(clf.classes_))
    np.testing.assert_allclose(proba, clf.predict_proba(X), rtol=1e-5, atol=1e-6)


def test_zipmap_output_is_served_as_a_probabilities_table(tmp_path, zipmap_model, iris):
    clf, proto = zipmap_model
    X = iris[0]
    before = proto.SerializeToString()
    modelpack.save(proto, tmp_path / "p", input_example=X[:5])
    assert proto.SerializeToString() == before  # the caller's proto is not rewritten
    pack = modelpack.load(tmp_path / "p")
    check_predictions(pack.predict(X), clf, X)
    label = "str" if clf.classes_.dtype.kind in "OU" else "int64"
    assert pack.signature.inputs == TensorSchema((TensorSpec("float32", (-1, 4)),))
    assert pack.signature.outputs == TensorSchema(
        (
            TensorSpec(label, (-1,), "output_label"),
            TensorSpec("float32", (-1, 3), "output_probability"),
        )
    )
    assert modelpack.verify(tmp_path / "p").model_id == pack.model_id


def test_zipmap_model_without_example_gets_its_signature_from_the_graph(
    tmp_path, zipmap_model, iris
):
    clf, proto = zipmap_model
    X = iris[0]
    modelpack.save(proto, tmp_path / "p")
    pack = modelpack.load(tmp_path / "p")
    assert [(t.name, t.dtype, t.shape) for t in pack.signature.outputs.tensors][1] == (
        "output_probability",
        "float32",
        (-1, 3),
    )
    check_predictions(pack.predict(X[:7]), clf, X[:7])


def test_zipmap_model_saved_from_a_file_and_as_one_output(tmp_path, zipmap_model, iris):
    clf, proto = zipmap_model
    X = iris[0]
    path = tmp_path / "clf.onnx"
    path.write_bytes(proto.SerializeToString())
    modelpack.save(path, tmp_path / "p", input_example=X[:3], output_names=["output_probability"])
    proba = modelpack.load(tmp_path / "p").predict(X)
    np.testing.assert_allclose(proba, clf.predict_proba(X), rtol=1e-5, atol=1e-6)


def test_zipmap_model_is_served_over_http(tmp_path, iris):
    from starlette.testclient import TestClient

    from modelpack.serving import create_app

    X = iris[0]
    clf = classifiers(iris)["logistic-named"]
    modelpack.save(skl2onnx.to_onnx(clf, X[:1]), tmp_path / "p", input_example=X[:2])
    with TestClient(create_app(str(tmp_path / "p"))) as client:
        response = client.post("/invocations", json={"inputs": X[:4].tolist()})
    assert response.status_code == 200, response.text
    got = response.json()["predictions"]
    assert got["output_label"] == clf.predict(X[:4]).tolist()
    np.testing.assert_allclose(
        got["output_probability"], clf.predict_proba(X[:4]), rtol=1e-5, atol=1e-6
    )


def maps_type():
    """seq(map(int64, float)), what a ZipMap outputs."""
    value = helper.make_tensor_type_proto(TensorProto.FLOAT, [])
    return helper.make_sequence_type_proto(helper.make_map_type_proto(TensorProto.INT64, value))


def zipmap_graph(nodes, output, name="zip"):
    return helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, [None, 2])],
        [helper.make_value_info(output, maps_type())],
    )


def zipmap(output="maps"):
    return helper.make_node(
        "ZipMap", ["p"], [output], domain="ai.onnx.ml", classlabels_int64s=[0, 1]
    )


def feeding_proto():
    """The maps feed another node: the graph needs them as maps."""
    return zipmap_graph([zipmap(), helper.make_node("Identity", ["maps"], ["out"])], "out")


def nested_proto():
    """A ZipMap inside an If branch."""
    branch = helper.make_graph(
        [zipmap("m")], "branch", [], [helper.make_value_info("m", maps_type())]
    )
    cond = helper.make_node(
        "Constant", [], ["c"], value=helper.make_tensor("c", TensorProto.BOOL, [], [True])
    )
    choose = helper.make_node("If", ["c"], ["out"], then_branch=branch, else_branch=branch)
    return zipmap_graph([cond, choose], "out")


@pytest.mark.parametrize(
    ("graph", "opsets", "message"),
    [
        (feeding_proto, ("", "ai.onnx.ml"), r"The ZipMap output 'maps' feeds other nodes"),
        (nested_proto, ("", "ai.onnx.ml"), r"The model has a ZipMap inside a subgraph"),
        (lambda: zipmap_graph([zipmap()], "maps"), ("ai.onnx.ml",), r"no default-domain opset"),
    ],
)
def test_zipmap_that_cannot_become_a_tensor_is_refused(tmp_path, graph, opsets, message):
    versions = {"": 17, "ai.onnx.ml": 3}
    proto = helper.make_model(
        graph(), opset_imports=[helper.make_opsetid(d, versions[d]) for d in opsets]
    )
    dest = tmp_path / "pkg"
    (dest / "model").mkdir(parents=True)
    how = r"Convert the classifier with skl2onnx\.to_onnx\(\.\.\., options=\{'zipmap': False\}\)"
    with pytest.raises(InvalidArgument, match=rf"{message}.*{how}"):
        flavor.save(proto, dest)
    assert not (dest / "model" / "model.onnx").exists()


def test_zipmap_model_file_with_external_data(tmp_path):
    """softmax(x @ W) zipped, W in a file beside the model: the file is rewritten, W copied."""
    from onnx import numpy_helper

    W = np.array([[1.0, -1.0], [0.5, 2.0]], dtype=np.float32)
    node = helper.make_node
    graph = zipmap_graph(
        [
            node("MatMul", ["p", "W"], ["logits"]),
            node("Softmax", ["logits"], ["proba"], axis=1),
            node("ZipMap", ["proba"], ["maps"], domain="ai.onnx.ml", classlabels_int64s=[3, 7]),
        ],
        "maps",
    )
    graph.initializer.append(numpy_helper.from_array(W, "W"))
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    )
    src = tmp_path / "src"
    src.mkdir()
    onnx.save_model(proto, str(src / "m.onnx"), save_as_external_data=True,
                    location="w.bin", size_threshold=0)  # fmt: skip
    x = np.array([[0.0, 1.0], [2.0, -1.0], [1.0, 1.0]], dtype=np.float32)
    modelpack.save(src / "m.onnx", tmp_path / "p", input_example=x[:2])
    assert (tmp_path / "p" / "model" / "w.bin").read_bytes() == (src / "w.bin").read_bytes()
    logits = x @ W
    want = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(
        modelpack.load(tmp_path / "p").predict(x), want, rtol=1e-5, atol=1e-6
    )
