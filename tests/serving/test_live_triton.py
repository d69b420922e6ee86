"""Triton's own HTTP client (tritonclient.http), unchanged, against real modelpack servers: a
tensor-signature model served through its ONNX flavor, and a column-signature model (one v2
input per column)."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as triton
from live import LiveServer, running
from tolerances import FLOAT64
from tritonclient.utils import InferenceServerException

import modelpack

COLUMNS = [f"f{i}" for i in range(6)]


@pytest.fixture(scope="module")
def servers(tmp_path_factory, forest, frame_forest, xy, frame):
    root = tmp_path_factory.mktemp("triton")
    tensor_path, column_path = root / "tensor", root / "columns"
    modelpack.save(forest, tensor_path, input_example=xy[0][:5], also=("onnx",))
    modelpack.save(
        frame_forest, column_path, input_example=frame[:5], predict_method="predict_proba"
    )
    tensor = LiveServer(str(tensor_path), root, label="tensor", args=["--flavor", "onnx"])
    columns = LiveServer(str(column_path), root, label="columns", args=["--name", "churn"])
    with running(tensor, columns):
        yield {
            "tensor": (tensor, modelpack.load(tensor_path, flavor="onnx"), "tensor"),
            "columns": (columns, modelpack.load(column_path), "churn"),
            "sklearn": modelpack.load(tensor_path),
        }


@pytest.fixture
def connect():
    clients = []

    def make(server: LiveServer) -> triton.InferenceServerClient:
        client = triton.InferenceServerClient(
            f"127.0.0.1:{server.port}", connection_timeout=10, network_timeout=10
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_health_and_metadata(servers, connect):
    server, pack, name = servers["tensor"]
    client = connect(server)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.get_server_metadata() == {
        "name": "modelpack",
        "version": modelpack.__version__,
        "extensions": ["binary_tensor_data"],
    }
    assert client.is_model_ready(name)
    assert client.is_model_ready(name, model_version=pack.model_id)
    assert not client.is_model_ready("nope")
    assert not client.is_model_ready(name, model_version="999")
    expected = {
        "name": name,
        "versions": [pack.model_id],
        "platform": "modelpack-onnx",
        "inputs": [{"name": "input", "datatype": "FP64", "shape": [-1, 6]}],
        "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1]}],
    }
    assert client.get_model_metadata(name) == expected
    assert client.get_model_metadata(name, model_version=pack.model_id) == expected
    with pytest.raises(InferenceServerException, match="Unknown model 'nope'"):
        client.get_model_metadata("nope")

    server, pack, name = servers["columns"]
    metadata = connect(server).get_model_metadata(name)
    assert metadata["inputs"] == [{"name": c, "datatype": "FP64", "shape": [-1]} for c in COLUMNS]
    assert metadata["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1, 2]}]


@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False, None])
def test_infer_tensor_model(servers, connect, binary_in, binary_out):
    server, pack, name = servers["tensor"]
    client = connect(server)
    x = np.random.default_rng(5).normal(size=(7, 6))
    inp = triton.InferInput("input", list(x.shape), "FP64")
    inp.set_data_from_numpy(x, binary_data=binary_in)
    outputs = (
        None
        if binary_out is None
        else [triton.InferRequestedOutput("predict", binary_data=binary_out)]
    )
    result = client.infer(name, [inp], outputs=outputs, request_id="42")
    got = result.as_numpy("predict")
    expected = np.asarray(pack.predict(x))
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, servers["sklearn"].predict(x))  # ONNX agrees with sklearn
    assert got.dtype == np.int64
    response = result.get_response()
    assert response["id"] == "42"
    assert response["model_name"] == name
    assert response["model_version"] == pack.model_id
    (out,) = response["outputs"]
    assert out["shape"] == [7]
    # Binary unless JSON was asked for (with no outputs named, the client asks for binary).
    assert ("parameters" in out) == (binary_out is not False), out
    # A version-qualified call goes to /v2/models/{name}/versions/{version}/infer.
    result = client.infer(name, [inp], model_version=pack.model_id, outputs=outputs)
    np.testing.assert_array_equal(result.as_numpy("predict"), expected)


@pytest.mark.parametrize("binary_in", [True, False])
@pytest.mark.parametrize("binary_out", [True, False])
def test_infer_column_model(servers, connect, frame, binary_in, binary_out):
    server, pack, name = servers["columns"]
    client = connect(server)
    rows = frame.iloc[10:19]
    inputs = []
    for column in COLUMNS:
        inp = triton.InferInput(column, [len(rows)], "FP64")
        inp.set_data_from_numpy(rows[column].to_numpy(), binary_data=binary_in)
        inputs.append(inp)
    result = client.infer(
        name, inputs, outputs=[triton.InferRequestedOutput("predict", binary_data=binary_out)]
    )
    got = result.as_numpy("predict")
    assert got.shape == (9, 2) and got.dtype == np.float64
    np.testing.assert_allclose(got, np.asarray(pack.predict(rows)), **FLOAT64)


def test_triton_client_sees_protocol_errors(servers, connect):
    server, pack, name = servers["tensor"]
    client = connect(server)
    x = np.ones((2, 6), dtype=object)
    inp = triton.InferInput("input", [2, 6], "BYTES")
    inp.set_data_from_numpy(x.astype(np.bytes_), binary_data=True)
    with pytest.raises(
        InferenceServerException, match="input 'input': expected datatype FP64, got BYTES"
    ):
        client.infer(name, [inp])
    good = triton.InferInput("input", [2, 6], "FP64")
    good.set_data_from_numpy(np.ones((2, 6)))
    with pytest.raises(InferenceServerException, match="Unknown model 'nope'"):
        client.infer("nope", [good])
    with pytest.raises(InferenceServerException, match="Unknown output 'nope'"):
        client.infer(name, [good], outputs=[triton.InferRequestedOutput("nope")])
    # ...and it keeps working afterwards.
    result = client.infer(name, [good])
    np.testing.assert_array_equal(result.as_numpy("predict"), pack.predict(np.ones((2, 6))))
