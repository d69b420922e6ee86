import subprocess
import sys

HEAVY = (
    "numpy",
    "pandas",
    "sklearn",
    "torch",
    "onnxruntime",
    "sqlalchemy",
    "starlette",
    "pyarrow",
    "yaml",
    "cloudpickle",
)


def test_import_modelpack_loads_no_heavy_library():
    code = f"import sys, modelpack\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_names_are_exported():
    import modelpack

    for name in (
        "save",
        "load",
        "verify",
        "infer_signature",
        "PythonModel",
        "Package",
        "Signature",
        "SchemaError",
        "IntegrityError",
    ):
        assert name in modelpack.__all__
        assert hasattr(modelpack, name)
    assert modelpack.errors.UnknownFlavor.__mro__[1] is modelpack.errors.FlavorError


def test_cli_help_imports_no_heavy_library():
    code = (
        "import sys\nfrom modelpack.cli import build_parser\nbuild_parser().format_help()\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_flavors_cannot_be_imported_under_a_second_name(tmp_path):
    import modelpack.flavors

    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "try:\n    import flavors\nexcept ImportError as e:\n    print(e)\n"
    )
    root = str(__import__("pathlib").Path(modelpack.flavors.__file__).parent.parent)
    out = subprocess.run(
        [sys.executable, "-c", code, root], capture_output=True, text=True, check=True
    )
    assert "must be imported as 'modelpack.flavors'" in out.stdout
