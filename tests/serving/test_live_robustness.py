"""Limits, slow clients and malformed requests against a real server: each is refused with the
right status and a JSON error, never a stack trace, and the server keeps answering correctly."""

from __future__ import annotations

import json
import random
import threading
import time

import httpx2
import numpy as np
import pandas as pd
import pytest
from live import LiveServer, raw_http, running
from tolerances import FLOAT64

import modelpack

COLUMNS = [f"f{i}" for i in range(6)]
NAME = "forest"
V2_INFER = f"/v2/models/{NAME}/infer"


@pytest.fixture(scope="module")
def server(tmp_path_factory, frame_forest, frame):
    root = tmp_path_factory.mktemp("robustness")
    path = root / NAME
    modelpack.save(frame_forest, path, input_example=frame[:5], predict_method="predict_proba")
    # max_rows has no CLI flag: this server is started through modelpack.serving.serve().
    live = LiveServer(
        str(path), root, label="limits", options={"max_body_bytes": "1KiB", "max_rows": 10}
    )
    with running(live):
        live.pack = modelpack.load(path)
        yield live


ROWS = np.array([[0.5, -1.0, 2.0, 0.0, 1.5, -0.25], [3.0, 1.0, -2.0, 0.5, 0.0, 1.0]])


def _valid_body(rows: np.ndarray = ROWS) -> bytes:
    return json.dumps({"dataframe_split": {"columns": COLUMNS, "data": rows.tolist()}}).encode()


def assert_still_serving(server: LiveServer, rows: np.ndarray = ROWS) -> None:
    """A valid request answers exactly what the package predicts (and v2 too)."""
    expected = np.asarray(server.pack.predict(pd.DataFrame(rows, columns=COLUMNS)))
    with httpx2.Client(base_url=server.url, timeout=10) as http:
        response = http.post(
            "/invocations", content=_valid_body(rows), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 200, (response.text, server.logs())
        np.testing.assert_allclose(np.asarray(response.json()["predictions"]), expected, **FLOAT64)
        inputs = [
            {"name": c, "shape": [len(rows)], "datatype": "FP64", "data": rows[:, i].tolist()}
            for i, c in enumerate(COLUMNS)
        ]
        response = http.post(V2_INFER, json={"inputs": inputs})
        assert response.status_code == 200, (response.text, server.logs())
        (out,) = response.json()["outputs"]
        np.testing.assert_allclose(
            np.asarray(out["data"]).reshape(out["shape"]), expected, **FLOAT64
        )


def _error(response: httpx2.Response, status: int, v2: bool = False) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    if v2:
        assert set(body) == {"error"}, body
        return body["error"]
    assert set(body) == {"error_code", "message"}, body
    return body["message"]


# ---------------------------------------------------------------------------- limits


def test_body_over_the_limit_with_content_length_is_413(server):
    body = b'{"inputs": [' + b"1.0, " * 400 + b"1.0]}"
    assert len(body) > 1024
    with httpx2.Client(base_url=server.url, timeout=10) as http:
        response = http.post(
            "/invocations", content=body, headers={"Content-Type": "application/json"}
        )
        assert _error(response, 413) == (
            f"The body is {len(body)} bytes; the limit is 1024 (--max-body-bytes)."
        )
        assert response.json()["error_code"] == "REQUEST_TOO_LARGE"
        response = http.post(V2_INFER, content=body)
        assert _error(response, 413, v2=True) == (
            f"The body is {len(body)} bytes; the limit is 1024 (--max-body-bytes)."
        )
    assert_still_serving(server)


def test_streamed_body_over_the_limit_without_content_length_is_413(server):
    sent = []

    def chunks():
        for _ in range(8):  # 8 x 256 bytes; the server stops reading after 1024
            sent.append(256)
            yield b" " * 256

    with httpx2.Client(base_url=server.url, timeout=10) as http:
        response = http.post(
            "/invocations", content=chunks(), headers={"Content-Type": "application/json"}
        )
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert _error(response, 413) == "The body is over the limit of 1024 bytes (--max-body-bytes)."
    # The same by hand, with a head the client controls exactly.
    head = (
        b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    parts = [b"200\r\n" + b" " * 512 + b"\r\n"] * 3 + [b"0\r\n\r\n"]
    answer = raw_http(server.port, head, parts)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"The body is over the limit of 1024 bytes (--max-body-bytes)." in answer
    assert_still_serving(server)


def test_deeply_nested_json_is_400(server):
    body = '{"inputs": ' + "[" * 100 + "1" + "]" * 100 + "}"
    with httpx2.Client(base_url=server.url, timeout=10) as http:
        response = http.post(
            "/invocations", content=body, headers={"Content-Type": "application/json"}
        )
        assert _error(response, 400) == "The JSON is nested deeper than 32 levels."
        v2 = '{"inputs": [{"name": "f0", "shape": [1], "datatype": "FP64", "data": '
        response = http.post(V2_INFER, content=v2 + "[" * 100 + "1" + "]" * 100 + "}]}")
        assert _error(response, 400, v2=True) == "The JSON is nested deeper than 32 levels."
    assert_still_serving(server)


def test_too_many_rows_is_413(server):
    rows = np.zeros((11, 6), dtype=int)
    with httpx2.Client(base_url=server.url, timeout=10) as http:
        response = http.post(
            "/invocations", content=_valid_body(rows), headers={"Content-Type": "application/json"}
        )
        assert _error(response, 413) == (
            "The request has 11 rows; this server accepts at most 10 per request. Split it."
        )
        csv = ",".join(COLUMNS) + "\n" + "0,0,0,0,0,0\n" * 11
        response = http.post("/invocations", content=csv, headers={"Content-Type": "text/csv"})
        assert _error(response, 413) == (
            "The request has 11 rows; this server accepts at most 10 per request. Split it."
        )
    assert_still_serving(server, np.ones((10, 6)))  # exactly the limit is fine


def test_v2_shape_implying_10_to_the_30_elements_is_413_before_allocation(server):
    shape = [10**10, 10**10, 10**10]
    request = {"inputs": [{"name": "f0", "shape": shape, "datatype": "FP64", "data": [1.0]}]}
    with httpx2.Client(base_url=server.url, timeout=10) as http:
        response = http.post(V2_INFER, json=request)
    assert _error(response, 413, v2=True) == (
        f"input 'f0': shape {shape} means {10**30} elements; this server accepts at most 50000000."
    )
    assert_still_serving(server)


def test_unsupported_charset_and_content_type_are_415(server):
    with httpx2.Client(base_url=server.url, timeout=10) as http:
        response = http.post(
            "/invocations",
            content=_valid_body(),
            headers={"Content-Type": "application/json; charset=latin-1"},
        )
        assert _error(response, 415) == (
            "Unsupported content type 'application/json; charset=latin-1': JSON must be UTF-8, "
            "with no other parameters."
        )
        assert response.json()["error_code"] == "UNSUPPORTED_MEDIA_TYPE"
        response = http.post(
            "/invocations", content=_valid_body(), headers={"Content-Type": "text/plain"}
        )
        assert _error(response, 415) == (
            "Unsupported content type 'text/plain'. Send application/json or text/csv."
        )
    assert_still_serving(server)


# ---------------------------------------------------------------------------- slow clients


def test_clients_trickling_their_bodies_do_not_block_others(server):
    body = _valid_body()
    head = (
        f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    step = -(-len(body) // 20)  # 20 pieces, one per 100 ms: about 2 s per request
    pieces = [body[i : i + step] for i in range(0, len(body), step)]
    answers: dict[int, bytes | BaseException] = {}

    def trickle(i: int) -> None:
        try:
            answers[i] = raw_http(server.port, head, pieces, pause=0.1, timeout=10)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertions below
            answers[i] = exc

    threads = [threading.Thread(target=trickle, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.2)  # the slow uploads have begun
    latencies = []
    started_all = time.monotonic()
    with httpx2.Client(base_url=server.url, timeout=10) as http:
        for _ in range(10):
            started = time.monotonic()
            response = http.post(
                "/invocations", content=body, headers={"Content-Type": "application/json"}
            )
            latencies.append(time.monotonic() - started)
            assert response.status_code == 200, response.text
    finished_all = time.monotonic()
    # All ten answered while the slow uploads were still trickling: they did not wait for them.
    assert all(t.is_alive() for t in threads), (
        "the slow uploads ended first",
        latencies,
        finished_all - started_all,
    )
    for t in threads:
        t.join(10)
    expected = np.asarray(server.pack.predict(pd.DataFrame(ROWS, columns=COLUMNS)))
    for i in range(3):
        answer = answers[i]
        assert isinstance(answer, bytes), answer
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
        payload = json.loads(answer.split(b"\r\n\r\n", 1)[1])
        np.testing.assert_allclose(np.asarray(payload["predictions"]), expected, **FLOAT64)


# ---------------------------------------------------------------------------- fuzz


def _random_json(rng: random.Random, depth: int = 0) -> object:
    kinds = ["int", "float", "str", "bool", "null", "list", "dict"] if depth < 5 else ["int"]
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.choice([0, -1, 7, 2**31, 2**63 - 1, -(2**63), 2**64 + 5])
    if kind == "float":
        return rng.choice([0.5, -1e300, 1e-300, 3.25, 1e30])
    if kind == "str":
        return rng.choice(["", "x", "f0", "inputs", "\u00e9\u4e2d", "1.5", "null", "\x00"])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "list":
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(1, 4))]
    keys = [
        "inputs",
        "instances",
        "dataframe_split",
        "dataframe_records",
        "params",
        "columns",
        "data",
        "name",
        "shape",
        "datatype",
        "f0",
        "zz",
    ]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randint(1, 3))}


def _wrong_value(rng: random.Random) -> object:
    return rng.choice(["abc", [1.0], {"v": 1}, "", [[1, 2]], "NaN", "1.5"])


def _malformed_invocation(rng: random.Random) -> tuple[bytes, str]:
    """(body, content type) that no server should accept."""
    json_type = "application/json"
    case = rng.randrange(8)
    if case == 0:  # a random JSON document without exactly one well-formed data key
        doc = _random_json(rng)
        if isinstance(doc, dict):
            doc.pop("inputs", None)
            doc.pop("instances", None)
            doc["dataframe_split"] = _random_json(rng, 4)
            doc["dataframe_records"] = [1]  # two data keys at once
        return json.dumps(doc).encode(), json_type
    if case == 1:  # a well-formed frame with one value of the wrong type
        rows = [[rng.uniform(-3, 3) for _ in COLUMNS] for _ in range(rng.randint(1, 4))]
        rows[rng.randrange(len(rows))][rng.randrange(6)] = _wrong_value(rng)
        form = rng.choice(["split", "records", "inputs"])
        if form == "split":
            doc = {"dataframe_split": {"columns": COLUMNS, "data": rows}}
        elif form == "records":
            doc = {"dataframe_records": [dict(zip(COLUMNS, r, strict=True)) for r in rows]}
        else:
            doc = {"inputs": {c: [r[i] for r in rows] for i, c in enumerate(COLUMNS)}}
        return json.dumps(doc).encode(), json_type
    if case == 2:  # a valid body cut short
        body = _valid_body()
        return body[: rng.randrange(1, len(body) - 1)], json_type
    if case == 3:  # garbage bytes
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))), json_type
    if case == 4:  # a wrong or missing content type
        ctype = rng.choice(
            [
                "text/plain",
                "application/xml",
                "application/json; charset=utf-16",
                "application/json; boundary=x",
                "",
                "multipart/form-data",
                "application/x-www-form-urlencoded",
            ]
        )
        return _valid_body(), ctype
    if case == 5:  # CSV that does not fit the signature
        header = rng.choice([",".join(COLUMNS), "a,b", "f0,f1,f2,f3,f4,f5,f6"])
        line = rng.choice(["1,2,3", "x,y,z,1,2,3", '"unterminated,1,2,3,4,5', "1,2,3,4,5,6,7,8"])
        return f"{header}\n{line}\n".encode(), "text/csv"
    if case == 6:  # numbers JSON cannot hold, or a missing column
        doc = {"dataframe_split": {"columns": COLUMNS[:5], "data": [[1.0] * 5]}}
        text = json.dumps(doc)
        return rng.choice(
            [
                text.encode(),
                text.replace("1.0", "1e400", 1).encode(),
                text.replace("1.0", "NaN", 1).encode(),
            ]
        ), json_type
    # case 7: a top-level list, or unknown params
    doc = rng.choice(
        [
            [_valid_body().decode()],
            {
                "dataframe_split": {"columns": COLUMNS, "data": [[1.0] * 6]},
                "params": {"threshold": 0.5},
            },
        ]
    )
    return json.dumps(doc).encode(), json_type


def _malformed_v2(rng: random.Random) -> tuple[bytes, dict[str, str]]:
    """(body, headers) for /v2/.../infer that no server should accept."""
    good = [{"name": c, "shape": [1], "datatype": "FP64", "data": [1.0]} for c in COLUMNS]
    case = rng.randrange(7)
    if case == 0:
        doc = _random_json(rng)
        if isinstance(doc, dict):
            doc.pop("inputs", None)
        return json.dumps(doc).encode(), {}
    if case == 1:  # a tensor whose datatype, shape or data is wrong
        broken = [dict(t) for t in good]
        t = broken[rng.randrange(6)]
        field, value = rng.choice(
            [
                ("datatype", "BYTES"),
                ("datatype", "FP128"),
                ("datatype", None),
                ("shape", [2]),
                ("shape", [-1]),
                ("shape", "1"),
                ("shape", [1.5]),
                ("data", ["x"]),
                ("data", [{}]),
                ("data", 1.0),
                ("data", [[1.0, 2.0]]),
                ("name", 7),
                ("name", "nope"),
                ("parameters", "x"),
                ("parameters", [1]),
                ("datatype", ["FP64"]),
                ("datatype", {}),
                ("shape", [1] * 65),
                ("shape", [1, 1, 1]),
                ("data", [1e300]),
                ("data", ["1.5"]),
            ]
        )
        t[field] = value
        return json.dumps({"inputs": broken}).encode(), {}
    if case == 2:
        body = json.dumps({"inputs": good}).encode()
        return body[: rng.randrange(1, len(body) - 1)], {}
    if case == 3:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))), {}
    if case == 4:  # the binary extension with lying sizes
        described = [
            {
                "name": t["name"],
                "shape": [1],
                "datatype": "FP64",
                "parameters": {"binary_data_size": 8},
            }
            for t in good
        ]
        head = json.dumps({"inputs": described}).encode()
        tail = np.ones(rng.choice([1, 3, 5])).tobytes()  # 6 tensors need 6 doubles
        length = rng.choice([str(len(head)), str(len(head) + 10_000), "-1", "abc"])
        return head + tail, {"Inference-Header-Content-Length": length}
    if case == 5:
        return json.dumps({"inputs": []}).encode(), {}
    top = rng.choice(
        [
            {"outputs": [{"name": "nope"}]},
            {"outputs": [{"name": ["predict"]}]},
            {"outputs": {"name": "predict"}},
            {"outputs": [{"name": "predict", "parameters": "x"}]},
            {"parameters": "pd"},
            {"parameters": {"binary_data_output": "no"}},
        ]
    )
    return json.dumps({"inputs": good, **top}).encode(), {}


Shape = tuple[str, str, bytes, dict[str, str], str]
JSON_TYPE = {"Content-Type": "application/json"}
TOO_BIG = "expected a number within float32's range"
INFINITE = "expected a finite number"


def _adversarial_corpus() -> list[Shape]:
    """``(label, path, body, headers, what the message must say)`` for every adversarial shape
    of issue 9 item 3, each under the 1 KiB body limit so that it reaches its own check."""
    good = [{"name": c, "shape": [1], "datatype": "FP64", "data": [1.0]} for c in COLUMNS]
    out: list[Shape] = []

    def v2(label: str, doc: dict, expect: str) -> None:
        out.append((f"v2 {label}", V2_INFER, json.dumps(doc).encode(), {}, expect))

    def mlflow(label: str, body: bytes | str, expect: str, ctype: str = "application/json"):
        data = body.encode() if isinstance(body, str) else body
        out.append((label, "/invocations", data, {"Content-Type": ctype}, expect))

    def first(**fields: object) -> list[dict]:
        return [{**good[0], **fields}, *good[1:]]

    # v2 fields of the wrong JSON type, and ranks the signature (or numpy) forbids
    for value in ("pd", [1], 7, True):
        v2(f"parameters={value!r}", {"inputs": good, "parameters": value}, "'parameters' must")
    for value in ("x", [1], 7):
        v2(
            f"input parameters={value!r}",
            {"inputs": first(parameters=value)},
            "input 'f0': 'parameters' must be an object",
        )
        v2(
            f"output parameters={value!r}",
            {"inputs": good, "outputs": [{"name": "predict", "parameters": value}]},
            "outputs[0]: 'parameters' must be an object",
        )
    for value in ("no", 1):
        v2(
            f"binary_data_output={value!r}",
            {"inputs": good, "parameters": {"binary_data_output": value}},
            "'parameters.binary_data_output' must be true or false",
        )
        v2(
            f"binary_data={value!r}",
            {
                "inputs": good,
                "outputs": [{"name": "predict", "parameters": {"binary_data": value}}],
            },
            "outputs[0]: 'parameters.binary_data' must be true or false",
        )
    for value, expect in (
        ({"name": "predict"}, "'outputs' must be a list"),
        ("predict", "'outputs' must be a list"),
        (7, "'outputs' must be a list"),
        ([7], "outputs[0] must be an object with a 'name'"),
        ([{}], "outputs[0]: 'name' must be a string, got null"),
    ):
        v2(f"outputs={value!r}", {"inputs": good, "outputs": value}, expect)
    for value in (7, ["predict"], {"a": 1}, None, True):
        v2(
            f"outputs[0].name={value!r}",
            {"inputs": good, "outputs": [{"name": value}]},
            "outputs[0]: 'name' must be a string",
        )
    for value in (["FP64"], {"FP64": 1}, None, 64, True):
        v2(f"datatype={value!r}", {"inputs": first(datatype=value)}, "'datatype' must be a string")
    for rank in (3, 64, 65, 200):
        v2(
            f"rank {rank}",
            {"inputs": [{**good[0], "shape": [1] * rank}]},
            f"'shape' has {rank} dimensions; a column takes shape [N] or [N, 1]",
        )
    # values the model cannot take: JSON, CSV, v2 JSON and v2 binary
    for column, name in enumerate(COLUMNS):
        for value in ("1e300", "-1e300", "3.5e38"):
            row = ["1.0"] * len(COLUMNS)
            row[column] = value
            doc = f'{{"dataframe_split": {{"columns": {json.dumps(COLUMNS)}, "data": [[%s]]}}}}'
            mlflow(f"json {name}={value}", doc % ", ".join(row), f"Column '{name}': {TOO_BIG}")
    for token in ("NaN", "Infinity", "-Infinity"):
        body = _valid_body().decode().replace("0.5", token, 1)
        mlflow(f"json token {token}", body, "NaN and Infinity are not JSON")
    body = _valid_body().decode().replace("0.5", "1e400", 1)
    mlflow("json token 1e400", body, "number is infinity when parsed as double")
    for column in (0, 5):
        name = COLUMNS[column]
        for value in ("inf", "-inf", "Infinity", "1e400", "1e300"):
            row = ["1"] * len(COLUMNS)
            row[column] = value
            csv = ",".join(COLUMNS) + "\n" + ",".join(row) + "\n"
            what = TOO_BIG if value == "1e300" else INFINITE
            mlflow(f"csv {name}={value}", csv, f"Column '{name}': {what}", "text/csv")
    for datatype, value, expect in (
        ("FP64", 1e300, f"Column 'f0': {TOO_BIG}"),
        ("FP32", 1e300, "input 'f0': expected FP32 values, got 1e+300 at index 0, outside"),
        ("INT64", 1.5, "input 'f0': expected INT64 values, got 1.5 at index 0, which has a"),
        ("BOOL", "x", "input 'f0': expected datatype FP64, got BOOL"),
        ("FP64", "1.5", "input 'f0': the data are not all FP64 values"),
    ):
        doc = {"inputs": first(datatype=datatype, data=[value])}
        v2(f"{datatype} data {value!r}", doc, expect)
    for value in (float("inf"), float("-inf"), 1e300):
        described = first(parameters={"binary_data_size": 8})
        del described[0]["data"]
        head = json.dumps({"inputs": described}).encode()
        headers = {"Inference-Header-Content-Length": str(len(head))}
        expect = f"Column 'f0': {TOO_BIG if value == 1e300 else INFINITE}"
        out.append(
            (f"binary {value!r}", V2_INFER, head + np.array([value]).tobytes(), headers, expect)
        )
    # values echoed back: each message quotes at most a few dozen characters of them
    long = "q" * 500
    cut = "'" + "q" * 36 + "..."
    columns = {"dataframe_split": {"columns": [long, *COLUMNS[1:]], "data": [[1.0] * 6]}}
    mlflow("echo column name", json.dumps(columns), f"got: {'q' * 37}..., f1")
    mlflow("echo body key", json.dumps({long: 1}), f"found: {cut}")
    mlflow("echo param", json.dumps({"inputs": [[1.0] * 6], "params": {long: 1}}), f"param {cut}")
    mlflow("echo content type", _valid_body(), "Unsupported content type 'text/qqq", "text/" + long)
    v2("echo input name", {"inputs": [{**good[0], "name": long}]}, f"input {cut}: the model has")
    v2("echo datatype", {"inputs": [{**good[0], "datatype": long}]}, f"unknown datatype {cut}")
    v2("echo output name", {"inputs": good, "outputs": [{"name": long}]}, f"Unknown output {cut}")
    # Hosts a DNS-rebinding page sends
    for path in ("/invocations", V2_INFER):
        for host in ("evil.example", "evil.example:8080", "127.0.0.1.evil.example"):
            body = (
                _valid_body() if path == "/invocations" else json.dumps({"inputs": good}).encode()
            )
            headers = {**JSON_TYPE, "Host": host}
            out.append((f"host {host} {path}", path, body, headers, f"Host header {host!r} is not"))
    for label, _, body, _, _ in out:
        assert len(body) <= 1024, (label, len(body))
    return out


GARBAGE = (b"hello world", b"\x16\x03\x01\x02\x00", b"GET /\r\n", b'{"inputs": [1]}')


def test_every_adversarial_shape_is_a_json_4xx_naming_it_and_none_is_a_5xx(server):
    statuses: dict[int, int] = {}
    corpus = _adversarial_corpus()
    with httpx2.Client(base_url=server.url, timeout=10) as http:
        for label, path, body, headers, expect in corpus:
            response = http.post(path, content=body, headers=headers)
            where = f"{label}: {response.status_code} {response.text[:300]}"
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert 400 <= response.status_code < 500, where
            assert response.headers["content-type"] == "application/json", where
            error = response.json()
            message = error["error"] if path.startswith("/v2") else error["message"]
            assert expect in message, where
            assert len(message) <= 1_000 and len(response.content) < 1_200, where
            assert "q" * 50 not in response.text, where
    for garbage in GARBAGE:  # bytes that are no HTTP request: 400 at once, then closed
        answer = raw_http(server.port, garbage)
        assert answer.startswith(b"HTTP/1.1 400 "), (garbage, answer[:300])
        statuses[400] += 1
    assert len(corpus) + len(GARBAGE) == 90
    assert statuses == {400: 89, 415: 1}, statuses  # 0 5xx
    logs = server.logs(100_000)
    assert "Unexpected error" not in logs and "The model failed to predict" not in logs
    assert "Traceback" not in logs
    assert_still_serving(server)


def test_fuzz_malformed_requests_get_json_4xx_and_the_server_survives(server):
    rng = random.Random(20240601)
    seen: dict[int, int] = {}
    with httpx2.Client(base_url=server.url, timeout=10) as http:
        for i in range(300):
            v2 = i % 3 == 2
            if v2:
                body, headers = _malformed_v2(rng)
                response = http.post(V2_INFER, content=body, headers=headers)
            else:
                body, ctype = _malformed_invocation(rng)
                headers = {"Content-Type": ctype} if ctype else {}
                response = http.post("/invocations", content=body, headers=headers)
            where = f"request {i} ({body[:120]!r}, {headers}): {response.text[:300]}"
            assert 400 <= response.status_code < 500, where
            assert "Traceback" not in response.text, where
            assert response.headers["content-type"] == "application/json", where
            error = response.json()
            assert isinstance(error, dict), where
            message = error["error"] if v2 else error["message"]
            assert isinstance(message, str) and message, where
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
    assert not [code for code in seen if code >= 500], seen
    assert set(seen) <= {400, 404, 413, 415}, seen
    assert seen[400] > 150 and seen[415] > 5, seen
    assert "Traceback" not in server.logs(100_000)
    assert_still_serving(server)


def test_a_double_beyond_float32_for_a_float32_forest_is_400_naming_the_column(server):
    # 1e300 is a valid double, but the forest computes in float32 and cannot take it: that is
    # the request's fault (a 400 naming the column), not the model failing (a 500). A model
    # that fails on its own is test_app.py's test_model_failure_is_a_500_without_details.
    rows = ROWS.copy()
    rows[1, 2] = 1e300
    with httpx2.Client(base_url=server.url, timeout=10) as http:
        response = http.post(
            "/invocations", content=_valid_body(rows), headers={"Content-Type": "application/json"}
        )
    assert _error(response, 400) == (
        "Column 'f2': expected a number within float32's range (-3.4028235e+38..3.4028235e+38),"
        " got 1e+300 at row 1; RandomForestClassifier computes in float32."
    )
    logs = server.logs(100_000)
    assert "The model failed to predict" not in logs and "Traceback" not in logs
    assert_still_serving(server)
