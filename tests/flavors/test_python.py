"""The python flavor: PythonModel subclasses, plain functions, artifacts, code paths, params."""

from __future__ import annotations

import os
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
        # The package's modules live under a private name, not under their own.
        assert "code_model" not in sys.modules and "helpers_pkg" not in sys.modules
        own = sys.modules[type(pack.unwrap()).__module__]
        print(pack.predict(np.ones((2, 2))).tolist(), own.__file__)
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


def _save_in_subprocess(src, dest, script, env=None):
    """Save with ``src`` on sys.path, as a user whose modules sit beside their script."""
    code = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(src)!r})
        import numpy as np, modelpack
    """) + textwrap.dedent(script)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=dest.parent, env=env)


def _package_with_helpers(tmp_path, tag, lazy=True):
    """A package whose model imports ``helpers`` at module level, inside predict (lazily,
    unless ``lazy=False``), and from a function pickled by value; ``helpers.VALUE`` is
    ``tag``."""
    src = tmp_path / f"src_{tag}"
    src.mkdir()
    (src / "helpers.py").write_text(f"VALUE = {tag!r}\n")
    (src / "lazy_helpers.py").write_text(f"VALUE = {tag!r} * 2\n")
    (src / f"model_{tag}.py").write_text(
        textwrap.dedent("""
        import numpy as np
        import modelpack
        import helpers

        class Model(modelpack.PythonModel):
            def predict(self, data, params=None):
                import lazy_helpers  # first imported here, after loading

                return np.array([helpers.VALUE, lazy_helpers.VALUE, self.by_value()])
        """)
    )
    if not lazy:
        text = (src / f"model_{tag}.py").read_text()
        text = text.replace("import helpers\n", "import helpers\nimport lazy_helpers\n")
        (src / f"model_{tag}.py").write_text(text.replace("import lazy_helpers  #", "#"))
    dest = tmp_path / f"pkg_{tag}"
    _save_in_subprocess(
        src,
        dest,
        f"""
        from model_{tag} import Model

        def by_value():  # defined in __main__: cloudpickle carries it by value
            import helpers
            return helpers.VALUE + "!"

        model = Model()
        model.by_value = by_value
        paths = [{str(src / "helpers.py")!r}, {str(src / "lazy_helpers.py")!r},
                 {str(src / f"model_{tag}.py")!r}]
        modelpack.save(model, {str(dest)!r}, code_paths=paths)
        """,
    )
    return dest


def test_two_packages_with_the_same_module_names_each_run_their_own(tmp_path):
    a = modelpack.load(_package_with_helpers(tmp_path, "a"))
    b = modelpack.load(_package_with_helpers(tmp_path, "b"))
    # Lazy imports inside predict resolve after loading, each to its own package's copy.
    assert b.predict(np.ones(1)).tolist() == ["b", "bb", "b!"]
    assert a.predict(np.ones(1)).tolist() == ["a", "aa", "a!"]
    assert "helpers" not in sys.modules and "lazy_helpers" not in sys.modules
    with pytest.raises(ModuleNotFoundError):
        __import__("helpers")


def test_loading_and_predicting_write_nothing_into_the_package(tmp_path):
    dest = _package_with_helpers(tmp_path, "c", lazy=False)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    script = textwrap.dedent(f"""
        import sys, numpy as np, modelpack
        assert not sys.dont_write_bytecode
        pack = modelpack.load({str(dest)!r})
        print(pack.predict(np.ones(1)).tolist())
        modelpack.verify({str(dest)!r})
    """)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['c', 'cc', 'c!']"
    assert not [p for p in dest.rglob("*") if "__pycache__" in p.parts or p.suffix == ".pyc"]
    assert modelpack.verify(dest).code == (
        "code/helpers.py",
        "code/lazy_helpers.py",
        "code/model_c.py",
    )


def test_code_that_would_shadow_an_installed_module_is_refused(tmp_path):
    (tmp_path / "numpy.py").write_text("raise SystemExit('the fake numpy ran')\n")
    with pytest.raises(
        InvalidArgument, match=r"^code/numpy.py would shadow the installed module 'numpy'; rename"
    ):
        modelpack.save(lambda d: d, tmp_path / "p", code_paths=[tmp_path / "numpy.py"])
    assert not (tmp_path / "p").exists()


def test_code_paths_belong_to_the_python_flavor(tmp_path):
    from sklearn.linear_model import LinearRegression

    (tmp_path / "feats.py").write_text("X = 1\n")
    model = LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0])
    with pytest.raises(
        InvalidArgument,
        match=r"code_paths are imported by the python flavor only; a sklearn load never runs "
        r"a package's code\. .*cloudpickle\.register_pickle_by_value",
    ):
        modelpack.save(model, tmp_path / "p", code_paths=[tmp_path / "feats.py"])
    assert not (tmp_path / "p").exists()
