"""The python flavor: PythonModel subclasses, plain functions, artifacts, code paths, params."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

import modelpack
from modelpack.errors import InvalidArgument, NotFound, SchemaError


class Scaler(modelpack.PythonModel):
    def load_context(self, context):
        with open(context.artifacts["factor"]) as f:
            self.factor = float(f.read())
        self.vocab = sorted(
            p.name for p in __import__("pathlib").Path(context.artifacts["vocab_dir"]).iterdir()
        )

    def predict(self, data, params=None):
        offset = (params or {}).get("offset", 0.0)
        return data["x"].to_numpy() * self.factor + offset


def test_python_model_with_artifacts_and_params(tmp_path):
    (tmp_path / "factor.txt").write_text("3")
    vocab = tmp_path / "vocab"
    vocab.mkdir()
    (vocab / "a").write_text("")
    (vocab / "b").write_text("")
    example = pd.DataFrame({"x": [1.0, 2.0]})
    sig = modelpack.infer_signature(example, params={"offset": 0.0})
    modelpack.save(
        Scaler(),
        tmp_path / "p",
        input_example=example,
        signature=sig,
        artifacts={"factor": tmp_path / "factor.txt", "vocab_dir": vocab},
    )
    (tmp_path / "factor.txt").write_text("100")  # the package keeps its own copy
    pack = modelpack.load(tmp_path / "p")
    assert pack.unwrap().vocab == ["a", "b"]
    assert pack.predict({"x": [1, 2]}).tolist() == [3.0, 6.0]
    assert pack.predict({"x": [1]}, params={"offset": 1}).tolist() == [4.0]
    with pytest.raises(SchemaError, match="Unknown param 'scale'"):
        pack.predict({"x": [1]}, params={"scale": 2})
    config = pack.manifest.flavors["python"]
    assert config["artifacts"] == {
        "factor": "artifacts/0/factor.txt",
        "vocab_dir": "artifacts/1/vocab",
    }


def test_unlisted_artifact_file_fails_verification(tmp_path):
    (tmp_path / "f.txt").write_text("1")
    (tmp_path / "vocab").mkdir()
    modelpack.save(
        Scaler(),
        tmp_path / "p",
        artifacts={"factor": tmp_path / "f.txt", "vocab_dir": tmp_path / "vocab"},
    )
    (tmp_path / "p" / "artifacts" / "0" / "sneaky.txt").write_text("x")
    with pytest.raises(modelpack.IntegrityError, match="artifacts/0/sneaky.txt: is not listed"):
        modelpack.load(tmp_path / "p")


def test_plain_function_and_lambda(tmp_path):
    def double(data):
        return np.asarray(data) * 2

    modelpack.save(double, tmp_path / "f", input_example=np.array([[1.0, 2.0]]))
    pack = modelpack.load(tmp_path / "f")
    assert pack.flavor == "python" and pack.manifest.flavors["python"]["kind"] == "function"
    assert pack.predict([[1, 2]]).tolist() == [[2.0, 4.0]]
    assert pack.signature.outputs.to_dict()["dtype"] == "float64"
    modelpack.save(lambda d: d + 1, tmp_path / "l")
    assert modelpack.load(tmp_path / "l").predict(np.array([1])).tolist() == [2]


def test_function_with_params(tmp_path):
    def thresh(data, params=None):
        return (np.asarray(data) > params["t"]).astype(int)

    sig = modelpack.infer_signature(np.array([0.1, 0.9]), params={"t": 0.5})
    modelpack.save(thresh, tmp_path / "p", signature=sig)
    pack = modelpack.load(tmp_path / "p")
    assert pack.predict(np.array([0.1, 0.9])).tolist() == [0, 1]
    assert pack.predict(np.array([0.1, 0.9]), params={"t": 0.05}).tolist() == [1, 1]


def test_artifact_folder_containing_the_package_is_refused(tmp_path):
    with pytest.raises(
        InvalidArgument,
        match=r"Artifact 'all': the folder .* contains the "
        r"package being saved",
    ):
        modelpack.save(Scaler(), tmp_path / "p", artifacts={"all": tmp_path})
    assert list(tmp_path.iterdir()) == []


def test_artifacts_need_a_python_model_and_must_exist(tmp_path):
    with pytest.raises(InvalidArgument, match="artifacts= needs a PythonModel subclass"):
        modelpack.save(lambda d: d, tmp_path / "p", artifacts={"a": __file__})
    with pytest.raises(NotFound, match=r"Artifact 'a': '.*nope' does not exist"):
        modelpack.save(Scaler(), tmp_path / "p", artifacts={"a": tmp_path / "nope"})
    with pytest.raises(InvalidArgument, match="'sklearn' flavor's save does not take 'artifacts'"):
        from sklearn.linear_model import LinearRegression

        modelpack.save(LinearRegression(), tmp_path / "p", artifacts={"a": __file__})
    assert not (tmp_path / "p").exists()


def test_predict_that_fails_on_the_example_saves_nothing(tmp_path):
    def broken(data):
        raise RuntimeError("boom")

    with pytest.raises(
        modelpack.FlavorError,
        match=r"failed to predict on the input example "
        r"\(RuntimeError: boom\); nothing was saved",
    ):
        modelpack.save(broken, tmp_path / "p", input_example=np.ones((1, 2)))
    assert list(tmp_path.iterdir()) == []


CODE_MODEL = textwrap.dedent("""
    import numpy as np
    import modelpack
    from helpers_pkg.scale import factor

    class CodeModel(modelpack.PythonModel):
        def predict(self, data, params=None):
            return np.asarray(data) * factor()
""")


def test_code_paths_are_importable_while_loading_without_sys_path(tmp_path):
    src = tmp_path / "src"
    (src / "helpers_pkg").mkdir(parents=True)
    (src / "helpers_pkg" / "__init__.py").write_text("")
    (src / "helpers_pkg" / "scale.py").write_text("def factor():\n    return 7\n")
    (src / "code_model.py").write_text(CODE_MODEL)
    save_script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(src)!r})
        import numpy as np, modelpack
        from code_model import CodeModel
        modelpack.save(CodeModel(), {str(tmp_path / "p")!r}, input_example=np.ones((1, 2)),
                       code_paths=[{str(src / "code_model.py")!r}, {str(src / "helpers_pkg")!r}])
    """)
    subprocess.run([sys.executable, "-c", save_script], check=True, cwd=tmp_path)
    load_script = textwrap.dedent(f"""
        import sys, numpy as np, modelpack
        before = list(sys.path)
        pack = modelpack.load({str(tmp_path / "p")!r})
        assert sys.path == before, "sys.path changed"
        print(pack.predict(np.ones((2, 2))).tolist(), sys.modules['code_model'].__file__)
    """)
    out = subprocess.run(
        [sys.executable, "-c", load_script],
        check=True,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    result, origin = out.stdout.rsplit(" ", 1)
    assert result == "[[7.0, 7.0], [7.0, 7.0]]"
    assert origin.strip().startswith(str(tmp_path / "p" / "code"))
    manifest = modelpack.verify(tmp_path / "p")
    assert manifest.code == ("code/code_model.py", "code/helpers_pkg")
    assert "code/helpers_pkg/scale.py" in manifest.files


def test_bad_code_paths(tmp_path):
    with pytest.raises(NotFound, match="code_paths: .* does not exist"):
        modelpack.save(lambda d: d, tmp_path / "p", code_paths=[tmp_path / "nope.py"])
    (tmp_path / "data.csv").write_text("a")
    with pytest.raises(InvalidArgument, match="is not a .py file or a folder"):
        modelpack.save(lambda d: d, tmp_path / "p", code_paths=[tmp_path / "data.csv"])
