"""The protocol surface, in process: every request form, every error, health and metadata."""

from __future__ import annotations

import base64

import numpy as np
import pandas as pd
import pytest

import modelpack

COLS = [f"f{i}" for i in range(6)]


def test_dataframe_split_records_instances_inputs_and_csv(
    serve, column_package, frame, frame_forest
):
    c = serve(column_package)
    head = frame.head(4)
    expected = frame_forest.predict(head).tolist()
    bodies = [
        {"dataframe_split": {"columns": COLS, "data": head.to_numpy().tolist()}},
        {"dataframe_split": {"columns": COLS[::-1], "data": head[COLS[::-1]].to_numpy().tolist()}},
        {"dataframe_records": head.to_dict("records")},
        {"instances": head.to_dict("records")},
        {"inputs": {k: head[k].tolist() for k in COLS}},
        {"inputs": head.to_numpy().tolist()},
    ]
    for body in bodies:
        r = c.post("/invocations", json=body)
        assert r.status_code == 200, r.text
        assert r.json() == {"predictions": expected}
    for ctype in ("text/csv", "application/csv", "text/csv; charset=utf-8"):
        r = c.post(
            "/invocations", content=head.to_csv(index=False), headers={"content-type": ctype}
        )
        assert r.json() == {"predictions": expected}
    r = c.post(
        "/invocations",
        content=b'{"dataframe_records": []}',
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert r.status_code == 400 and "empty list" in r.json()["message"]


def test_tensor_model_and_onnx_flavor(serve, tensor_package, xy, forest):
    X = xy[0][:5]
    for flavor in (None, "onnx"):
        c = serve(tensor_package, flavor=flavor)
        for body in (
            {"inputs": X.tolist()},
            {"instances": X.tolist()},
            {"dataframe_split": {"columns": COLS, "data": X.tolist()}},
        ):
            r = c.post("/invocations", json=body)
            assert r.json() == {"predictions": forest.predict(X).tolist()}, (flavor, body)
        assert c.get("/version").json()["flavor"] == (flavor or "sklearn")


def test_params_are_checked_and_passed(serve, tmp_path):
    class Scale(modelpack.PythonModel):
        def predict(self, data, params=None):
            return np.asarray(data)[:, 0] * params["k"]

    sig = modelpack.infer_signature(np.zeros((1, 1)), params={"k": 2.0})
    modelpack.save(Scale(), tmp_path / "p", signature=sig, input_example=np.ones((1, 1)))
    c = serve(tmp_path / "p")
    assert c.post("/invocations", json={"inputs": [[1.0], [2.0]]}).json() == {
        "predictions": [2.0, 4.0]
    }
    r = c.post("/invocations", json={"inputs": [[1.0]], "params": {"k": 10}})
    assert r.json() == {"predictions": [10.0]}
    r = c.post("/invocations", json={"inputs": [[1.0]], "params": {"z": 1}})
    assert r.status_code == 400 and "Unknown param 'z'" in r.json()["message"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ([1, 2], 400, "must be a JSON object with one of the keys"),
        ({}, 400, "exactly one of the keys dataframe_split, dataframe_records, instances, inputs"),
        ({"inputs": [[1.0] * 6], "instances": [[1.0] * 6]}, 400, "found: 'instances', 'inputs'"),
        (
            {"dataframe_split": {"columns": COLS, "data": [[1.0] * 5]}},
            400,
            "row 0 must be a list of 6",
        ),
        (
            {"dataframe_records": [{"f0": "x", **{c: 1.0 for c in COLS[1:]}}]},
            400,
            "Column 'f0': expected double, got string at row 0",
        ),
        ({"dataframe_records": [{c: 1.0 for c in COLS[1:]}]}, 400, "Missing required column 'f0'"),
        ({"inputs": [[1.0] * 6], "params": [1]}, 400, "'params' must be an object"),
    ],
)
def test_bad_bodies_name_the_problem(serve, column_package, body, status, message):
    c = serve(column_package)
    r = c.post("/invocations", json=body)
    assert r.status_code == status
    assert message in r.json()["message"] and r.json()["error_code"] == "BAD_REQUEST"
    assert c.post("/invocations", json={"inputs": [[0.0] * 6]}).status_code == 200


@pytest.mark.parametrize(
    ("ctype", "status"),
    [
        ("text/plain", 415),
        ("application/json; charset=latin-1", 415),
        ("", 415),
        ("application/json; foo=bar", 415),
    ],
)
def test_content_types(serve, column_package, ctype, status):
    c = serve(column_package)
    r = c.post(
        "/invocations", content=b'{"inputs": [[0,0,0,0,0,0]]}', headers={"content-type": ctype}
    )
    assert r.status_code == status and r.json()["error_code"] == "UNSUPPORTED_MEDIA_TYPE"


def test_limits(serve, column_package):
    c = serve(column_package, max_body_bytes="1KiB", max_rows=5, max_json_depth=8)
    r = c.post("/invocations", content=b"[" * 2000, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "limit is 1024" in r.json()["message"]
    rows = [[0.0] * 6] * 6
    r = c.post("/invocations", json={"dataframe_split": {"columns": COLS, "data": rows}})
    assert r.status_code == 413 and "at most 5 per request" in r.json()["message"]
    deep = {"inputs": [[0.0] * 6], "params": {"a": [[[[[[[[[1]]]]]]]]]}}
    r = c.post("/invocations", json=deep)
    assert r.status_code == 400 and "nested deeper than 8" in r.json()["message"]
    r = c.post("/invocations", content=b'{"inputs": ', headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["message"]
    assert c.post("/invocations", json={"inputs": [[0.0] * 6]}).status_code == 200


def test_csv_errors(serve, column_package):
    c = serve(column_package)

    def post(text):
        return c.post("/invocations", content=text, headers={"content-type": "text/csv"})

    r = post(",".join(COLS) + "\n" + ",".join(["1"] * 5) + ",abc\n")
    assert (
        r.status_code == 400
        and "Column 'f5': expected a number, got 'abc' at row 0" in (r.json()["message"])
    )
    r = post(",".join(COLS) + "\n1,2\n")
    assert (
        r.status_code == 400 and "CSV line 2 has 2 fields; the header has 6" in r.json()["message"]
    )
    assert post("").json()["message"].startswith("The CSV body is empty")


def test_model_failure_is_a_500_without_details(serve, tmp_path):
    def explode(data):
        if np.asarray(data).sum() > 100:
            raise ValueError("secret internals 12345")
        return np.asarray(data).sum(axis=1)

    modelpack.save(explode, tmp_path / "p", input_example=np.ones((1, 2)))
    c = serve(tmp_path / "p")
    r = c.post("/invocations", json={"inputs": [[1000.0, 1.0]]})
    assert r.status_code == 500
    assert r.json() == {
        "error_code": "INTERNAL_ERROR",
        "message": "The model failed to predict (ValueError); the server log has the details.",
    }
    assert "12345" not in r.text
    assert c.post("/invocations", json={"inputs": [[1.0, 1.0]]}).json() == {"predictions": [2.0]}


def test_health_ready_version_ping_and_header(serve, column_package):
    c = serve(column_package, name="churn")
    manifest = modelpack.verify(column_package)
    for path in ("/ping", "/health", "/ready", "/version", "/v2/health/live"):
        r = c.get(path)
        assert r.status_code == 200 and r.headers["x-model-version"] == manifest.model_id
    assert c.get("/health").json()["model"] == "churn"
    v = c.get("/version").json()
    assert v["model_id"] == manifest.model_id and v["flavor"] == "sklearn"
    assert v["model"] == "churn" and v["modelpack_version"] == modelpack.__version__
    r = c.get("/nope")
    assert r.status_code == 404 and r.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert c.get("/invocations").status_code == 405


def test_metrics(serve, column_package):
    c = serve(column_package)
    c.post("/invocations", json={"inputs": [[0.0] * 6]})
    c.post("/invocations", json={"inputs": [[0.0] * 5]})
    text = c.get("/metrics").text
    assert 'modelpack_requests_total{route="/invocations",status="200"} 1.0' in text
    assert 'modelpack_request_errors_total{route="/invocations",status="400"} 1.0' in text
    assert "modelpack_request_seconds_bucket" in text and "modelpack_batch_rows_count 1.0" in text
    assert "modelpack_queue_depth 0.0" in text and "modelpack_model_load_seconds" in text
    assert 'modelpack_model_info{model_id="' in text
    assert "modelpack_model_reload_failures_total 0.0" in text


def test_openapi_describes_routes_and_inputs(serve, column_package):
    doc = serve(column_package).get("/openapi.json").json()
    assert {"/invocations", "/v2/models/{name}/infer", "/ready"} <= set(doc["paths"])
    record = doc["components"]["schemas"]["Request"]["properties"]["dataframe_records"]["items"]
    assert record["properties"]["f0"] == {"type": "number"} and record["required"] == COLS


# ---------------------------------------------------------------------------- v2


def test_v2_metadata_and_readiness(serve, column_package, tensor_package):
    c = serve(column_package, name="churn")
    assert c.get("/v2").json()["name"] == "modelpack"
    assert c.get("/v2/health/ready").json() == {"ready": True}
    meta = c.get("/v2/models/churn").json()
    assert meta["inputs"][0] == {"name": "f0", "datatype": "FP64", "shape": [-1]}
    assert meta["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [-1]}]
    assert c.get("/v2/models/churn/ready").json() == {"name": "churn", "ready": True}
    version = meta["versions"][0]
    assert c.get(f"/v2/models/churn/versions/{version}").status_code == 200
    r = c.get("/v2/models/other")
    assert r.status_code == 404 and r.json() == {
        "error": "Unknown model 'other'; this server serves 'churn'."
    }
    r = c.get("/v2/models/churn/versions/99/ready")
    assert r.status_code == 404 and "version '99' is not loaded" in r.json()["error"]
    t = serve(tensor_package).get("/v2/models/rf").json()
    assert t["inputs"] == [{"name": "input", "datatype": "FP64", "shape": [-1, 6]}]


def test_v2_infer_columns_and_tensors(
    serve, column_package, tensor_package, frame, xy, forest, frame_forest
):
    c = serve(column_package, name="churn")
    head = frame.head(3)
    body = {
        "id": "42",
        "inputs": [
            {"name": k, "shape": [3], "datatype": "FP64", "data": head[k].tolist()} for k in COLS
        ],
    }
    r = c.post("/v2/models/churn/infer", json=body)
    assert r.json() == {
        "model_name": "churn",
        "model_version": r.json()["model_version"],
        "id": "42",
        "outputs": [
            {
                "name": "predict",
                "shape": [3],
                "datatype": "INT64",
                "data": frame_forest.predict(head).tolist(),
            }
        ],
    }
    t = serve(tensor_package)
    X = xy[0][:2]
    body = {
        "inputs": [
            {
                "name": "input",
                "shape": [2, 6],
                "datatype": "FP32",
                "data": X.astype(np.float32).tolist(),
            }
        ],
        "outputs": [{"name": "predict"}],
    }
    r = t.post("/v2/models/rf/infer", json=body)
    assert (
        r.status_code == 200
        and r.json()["outputs"][0]["data"]
        == forest.predict(X.astype(np.float32).astype(np.float64)).tolist()
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda b: b["inputs"][0].update(datatype="BYTES"),
            "input 'f0': expected datatype FP64, got BYTES",
        ),
        (
            lambda b: b["inputs"][0].update(shape=[2]),
            "input 'f0': shape [2] needs 2 elements, got 3",
        ),
        (
            lambda b: b["inputs"][0].update(shape=[10**15, 10**15]),
            "means 1000000000000000000000000000000 elements",
        ),
        (lambda b: b["inputs"][0].update(datatype="FP128"), "unknown datatype 'FP128'"),
        (lambda b: b["inputs"][0].update(name="zzz"), "input 'zzz': the model has no such input"),
        (lambda b: b.update(inputs=[]), "needs 'inputs': a non-empty list"),
        (lambda b: b.update(outputs=[{"name": "nope"}]), "Unknown output 'nope'"),
        (lambda b: b["inputs"][0].update(shape=[-1]), "'shape' must be a list of sizes >= 0"),
    ],
)
def test_v2_errors(serve, column_package, frame, change, message):
    c = serve(column_package, name="churn")
    body = {
        "inputs": [
            {"name": k, "shape": [3], "datatype": "FP64", "data": frame[k].head(3).tolist()}
            for k in COLS
        ]
    }
    change(body)
    r = c.post("/v2/models/churn/infer", json=body)
    assert r.status_code in (400, 413) and message in r.json()["error"], r.json()
    assert set(r.json()) == {"error"}


def test_v2_binary_tensor_extension(serve, tensor_package, xy, forest):
    import orjson

    c = serve(tensor_package)
    X = np.ascontiguousarray(xy[0][:4])
    raw = X.astype("<f8").tobytes()
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": [4, 6],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "predict", "parameters": {"binary_data": True}}],
        }
    )
    r = c.post(
        "/v2/models/rf/infer",
        content=head + raw,
        headers={
            "inference-header-content-length": str(len(head)),
            "content-type": "application/octet-stream",
        },
    )
    assert r.status_code == 200, r.text
    n = int(r.headers["inference-header-content-length"])
    meta = orjson.loads(r.content[:n])
    assert meta["outputs"][0]["parameters"]["binary_data_size"] == 4 * 8
    np.testing.assert_array_equal(np.frombuffer(r.content[n:], "<i8"), forest.predict(X))


def test_binary_column_arrives_base64(serve, tmp_path):
    def lengths(df):
        return np.array([len(b) for b in df["blob"]])

    example = pd.DataFrame({"blob": [b"ab", b"\x00\x01\x02"]})
    modelpack.save(lengths, tmp_path / "p", input_example=example)
    c = serve(tmp_path / "p")
    body = {"dataframe_records": [{"blob": base64.b64encode(b"hello").decode()}]}
    assert c.post("/invocations", json=body).json() == {"predictions": [5]}
    r = c.post("/invocations", json={"dataframe_records": [{"blob": "not base64!"}]})
    assert r.status_code == 400 and "binary values must be base64" in r.json()["message"]


def test_unknown_option_is_refused():
    from modelpack.serving import create_app

    with pytest.raises(modelpack.InvalidArgument, match="Unknown serve option 'max_batch'"):
        create_app("x", max_batch=3)
    with pytest.raises(modelpack.InvalidArgument, match="Not a size: '12 parsecs'"):
        create_app("x", max_body_bytes="12 parsecs")
