"""One round-trip for every flavor: save -> load -> predict equals the native model."""

from __future__ import annotations

import numpy as np
import pytest
from tolerances import FLOAT32, tolerance

import modelpack


def _sklearn(xy, tmp_path):
    from sklearn.ensemble import RandomForestClassifier

    X, y = xy
    model = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(X, y)
    return model, X, model.predict


def _torch(xy, tmp_path):
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    X = xy[0].astype(np.float32)

    def native(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return model, X, native


def _onnx(xy, tmp_path):
    import onnxruntime as ort
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    X, y = xy
    X = X.astype(np.float32)
    proto = to_onnx(
        LogisticRegression().fit(X, y),
        X[:1],
        options={"zipmap": False},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return proto, X, lambda x: dict(zip(names, session.run(None, {"X": x}), strict=True))


class _Affine(modelpack.PythonModel):
    def predict(self, data, params=None):
        return np.asarray(data) @ np.arange(6.0) + 1.0


def _python(xy, tmp_path):
    model = _Affine()
    return model, xy[0], lambda x: model.predict(x)


BUILDERS = {"sklearn": _sklearn, "torch": _torch, "onnx": _onnx, "python": _python}


def _close(actual, expected):
    if isinstance(expected, dict):
        assert sorted(actual) == sorted(expected)
        for name in expected:
            np.testing.assert_allclose(actual[name], expected[name], **tolerance(expected[name]))
    else:
        np.testing.assert_allclose(actual, expected, **tolerance(expected))


def _head(out, n):
    return {k: v[:n] for k, v in out.items()} if isinstance(out, dict) else out[:n]


@pytest.mark.parametrize("flavor", sorted(BUILDERS))
def test_round_trip(flavor, xy, tmp_path):
    model, X, native = BUILDERS[flavor](xy, tmp_path)
    manifest = modelpack.save(model, tmp_path / "p", input_example=X[:3])
    assert manifest.flavor == flavor
    pack = modelpack.load(tmp_path / "p")
    assert pack.flavor == flavor and pack.signature.inputs.kind == "tensor"
    expected = native(X)
    _close(pack.predict(X), expected)
    _close(pack.predict(X[:1]), _head(expected, 1))
    _close(pack.predict(X[:4].tolist()), _head(expected, 4))
    empty = pack.predict(X[:0])
    assert all(v.shape[0] == 0 for v in (empty.values() if isinstance(empty, dict) else [empty]))
    with pytest.raises(modelpack.SchemaError, match=r"expected shape \(-1, 6\), got \(2, 5\)"):
        pack.predict(X[:2, :5])
    reqs = (tmp_path / "p" / "requirements.txt").read_text()
    assert "numpy==" in reqs
    modelpack.verify(tmp_path / "p")


def test_sklearn_also_onnx_serves_without_unpickling(xy, tmp_path, forest):
    X = xy[0]
    manifest = modelpack.save(forest, tmp_path / "p", input_example=X[:5], also=("onnx",))
    assert set(manifest.flavors) == {"sklearn", "onnx"}
    assert "onnxruntime==" in (tmp_path / "p" / "requirements.txt").read_text()
    pack = modelpack.load(tmp_path / "p", flavor="onnx")
    assert pack.flavor == "onnx"
    assert type(pack.unwrap()).__name__ == "InferenceSession"
    np.testing.assert_array_equal(pack.predict(X), forest.predict(X))
    proba = modelpack.save(
        forest, tmp_path / "q", input_example=X[:5], also=("onnx",), predict_method="predict_proba"
    )
    assert proba.flavors["onnx"]["output_names"] == ["probabilities"]
    np.testing.assert_allclose(
        modelpack.load(tmp_path / "q", flavor="onnx").predict(X), forest.predict_proba(X), **FLOAT32
    )


def test_loading_without_the_framework_names_the_extra(xy, tmp_path, monkeypatch):
    model, X, _ = _onnx(xy, tmp_path)
    modelpack.save(model, tmp_path / "p", input_example=X[:2])
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)
    with pytest.raises(
        modelpack.MissingDependency,
        match=r"The 'onnx' flavor needs onnxruntime\. Install it with: "
        r"pip install 'modelpack\[onnx\]'",
    ) as e:
        modelpack.load(tmp_path / "p")
    assert e.value.extra == "onnx" and e.value.flavor == "onnx"


def test_zero_row_dataframe_gives_an_empty_typed_prediction(tmp_path, frame_forest, frame):
    modelpack.save(frame_forest, tmp_path / "p", input_example=frame.head(3))
    out = modelpack.load(tmp_path / "p").predict(frame.head(0))
    assert out.shape == (0,) and out.dtype == frame_forest.predict(frame.head(1)).dtype
