"""Reading a manifest is strict (issue 9): schema, ids, versions, size, YAML aliases and anchors."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

import modelpack
from modelpack.cli import main
from modelpack.errors import FormatError
from modelpack.manifest import Manifest, dump_yaml

GOLDEN = Path(__file__).parent.parent / "data" / "modelpack-v1.yaml"
MiB = 1 << 20


@pytest.fixture(scope="module")
def golden():
    return yaml.safe_load(GOLDEN.read_text())


@pytest.fixture
def saved(tmp_path, forest, xy):
    path = tmp_path / "rf"
    modelpack.save(forest, path, input_example=xy[0][:5], metadata={"team": "risk"})
    return path


def _edited(golden, change):
    d = copy.deepcopy(golden)
    change(d)
    return d


def _rename(section, old, new):
    def change(d):
        target = section(d)
        target[new] = target.pop(old)

    return change


def _write_manifest(path: Path, text: str) -> None:
    (path / "modelpack.yaml").write_text(text)


# ------------------------------------------------------------------ unknown keys, nearest known


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            _rename(lambda d: d, "modelpack_version", "modelpack_versiom"),
            r"manifest: unknown key 'modelpack_versiom' \(did you mean 'modelpack_version'\?\)",
        ),
        (
            _rename(lambda d: d["flavors"]["sklearn"], "predict_method", "predict_&ethod"),
            r"flavors\.sklearn: unknown key 'predict_&ethod' \(did you mean 'predict_method'\?\)",
        ),
        (
            _rename(lambda d: d["flavors"]["sklearn"], "sklearn_version", "sklBarn_version"),
            r"flavors\.sklearn: unknown key 'sklBarn_version' "
            r"\(did you mean 'sklearn_version'\?\)",
        ),
        (
            _rename(lambda d: d["flavors"]["onnx"], "opset", "opsat"),
            r"flavors\.onnx: unknown key 'opsat' \(did you mean 'opset'\?\)",
        ),
        (
            _rename(lambda d: d["environment"], "python", "pNthon"),
            r"manifest 'environment': unknown key 'pNthon' \(did you mean 'python'\?\)",
        ),
        (
            _rename(lambda d: d["source"], "run_id", "run_ic"),
            r"manifest 'source': unknown key 'run_ic' \(did you mean 'run_id'\?\)",
        ),
        (
            _rename(lambda d: d["signature"], "inputs", "inpuls"),
            r"signature: unknown key 'inpuls' \(did you mean 'inputs'\?\)",
        ),
        (
            _rename(lambda d: d["signature"]["outputs"], "dtype", "dtyqe"),
            r"signature outputs: unknown key 'dtyqe' \(did you mean 'dtype'\?\)",
        ),
        (
            _rename(lambda d: d["signature"]["inputs"]["columns"][0], "required", "requirad"),
            r"column: unknown key 'requirad' \(did you mean 'required'\?\)",
        ),
        (
            _rename(lambda d: d["signature"]["params"][0], "default", "defualt"),
            r"param: unknown key 'defualt' \(did you mean 'default'\?\)",
        ),
        (
            lambda d: d["flavors"]["sklearn"].update(zzz=1),
            r"flavors\.sklearn: unknown key 'zzz'\. Allowed keys: path, serialization, "
            r"predict_method, sklearn_version\.",
        ),
    ],
)
def test_an_unknown_key_is_named_with_the_nearest_known_one(golden, change, message):
    with pytest.raises(FormatError, match=message):
        Manifest.from_dict(_edited(golden, change))


def test_every_builtin_flavor_lists_the_keys_its_save_writes(golden, tmp_path, forest):
    from modelpack.flavors import onnx, python, sklearn, torch

    for module in (onnx, python, sklearn, torch):
        assert "path" in module.CONFIG_KEYS
    # Everything the golden file's flavors say, and what save() writes, is known to them.
    assert set(golden["flavors"]["sklearn"]) <= set(sklearn.CONFIG_KEYS)
    assert set(golden["flavors"]["onnx"]) <= set(onnx.CONFIG_KEYS)
    written = modelpack.save(forest, tmp_path / "skops", serialization="skops")
    assert set(written.flavors["sklearn"]) == set(sklearn.CONFIG_KEYS)
    written = modelpack.save(lambda df: df, tmp_path / "fn", flavor="python")
    assert set(written.flavors["python"]) == set(python.CONFIG_KEYS) - {"artifacts", "model_config"}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "predict_method",
            "predicT",
            r"flavors\.sklearn\.predict_method: 'predicT' is not one of predict, predict_proba, "
            r"decision_function, transform \(did you mean 'predict'\?\)\.",
        ),
        (
            "serialization",
            "clCudpickle",
            r"flavors\.sklearn\.serialization: 'clCudpickle' is not one of cloudpickle, skops "
            r"\(did you mean 'cloudpickle'\?\)\.",
        ),
    ],
)
def test_a_flavor_value_outside_its_choices_is_refused(golden, key, value, message):
    with pytest.raises(FormatError, match=message):
        Manifest.from_dict(_edited(golden, lambda d: d["flavors"]["sklearn"].update({key: value})))


def test_a_flavor_that_is_not_installed_still_reads(golden):
    d = _edited(
        golden, lambda d: d["flavors"].update(thirdparty={"path": "model/model.pkl", "x": 1})
    )
    assert Manifest.from_dict(d).flavors["thirdparty"] == {"path": "model/model.pkl", "x": 1}


# ------------------------------------------------------------------ ids, digests, versions, paths


@pytest.mark.parametrize(
    "bad",
    [
        "../../outside/planted",
        "/etc/planted",
        "9F1C2B7E4D5A4F0C8B3E2A1D0C9B8A77",
        "9f1c2b7e4d5a4f0c8b3e2a1d0c9b8a7",
        "9f1c2b7e-4d5a-4f0c-8b3e-2a1d0c9b8a77",
        12345,
    ],
)
def test_model_id_is_32_lowercase_hex(golden, bad):
    with pytest.raises(FormatError, match=r"model_id: expected 32 lowercase hex characters"):
        Manifest.from_dict(_edited(golden, lambda d: d.update(model_id=bad)))


def test_a_planted_model_id_is_refused_on_load(saved):
    text = (saved / "modelpack.yaml").read_text()
    model_id = yaml.safe_load(text)["model_id"]
    _write_manifest(saved, text.replace(model_id, "../../outside/planted"))
    with pytest.raises(
        FormatError, match=r"model_id: expected 32 lowercase hex characters, got '\.\./\.\./"
    ):
        modelpack.load(saved)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d.update(modelpack_version="0.1.0 final"),
            r"manifest 'modelpack_version': '0\.1\.0 final' is not a version number\.",
        ),
        (
            lambda d: d["flavors"]["sklearn"].update(sklearn_version="1.9.l"),
            r"flavors\.sklearn\.sklearn_version: '1\.9\.l' is not a version number\.",
        ),
        (
            lambda d: d["environment"].update(python="3.1I.7"),
            r"environment 'python': '3\.1I\.7' is not a version number\.",
        ),
        (
            lambda d: d["flavors"]["sklearn"].update(sklearn_version=1.9),
            r"flavors\.sklearn\.sklearn_version: expected a version string, got 1\.9\.",
        ),
    ],
)
def test_versions_must_parse(golden, change, message):
    with pytest.raises(FormatError, match=message):
        Manifest.from_dict(_edited(golden, change))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["files"].update({"model/model.pkl": "C81A" * 16}),
            r"files\.model/model\.pkl: expected a sha256 hex digest, got 'C81A",
        ),
        (
            lambda d: d["flavors"]["sklearn"].update(path="model/modal.pkl"),
            r"flavors\.sklearn\.path 'model/modal\.pkl': is not among the files the manifest "
            r"lists \(did you mean 'model/model\.pkl'\?\)",
        ),
        (
            lambda d: d.update(input_example="input_exampla.json"),
            r"input_example 'input_exampla\.json': is not among the files",
        ),
        (
            lambda d: d["environment"].update(requirements="requirements.tx"),
            r"environment\.requirements 'requirements\.tx': is not among the files",
        ),
        (
            lambda d: d["sizes"].update({"model/model.pk1": 3}),
            r"sizes\.model/model\.pk1: is not listed in files "
            r"\(did you mean 'model/model\.pkl'\?\)",
        ),
        (
            lambda d: d["sizes"].update({"model/model.pkl": -1}),
            r"sizes\.model/model\.pkl: expected a size in bytes, got -1\.",
        ),
        (
            lambda d: d["sizes"].update({"model/model.pkl": True}),
            r"sizes\.model/model\.pkl: expected a size in bytes, got True\.",
        ),
        (
            lambda d: d["signature"].update(inputs=None),
            r"signature inputs: expected a mapping with a 'kind' key, got None\.",
        ),
        (
            lambda d: d["signature"].update(params=7),
            r"signature 'params': expected a list, got 7\.",
        ),
        (
            lambda d: d["signature"].update(
                outputs={
                    "kind": "tensors",
                    "tensors": [{"kind": "x", "dtype": "int64", "shape": [-1]}],
                }
            ),
            r"tensor: unknown key 'kind'",
        ),
    ],
)
def test_values_that_do_not_fit_are_refused(golden, change, message):
    with pytest.raises(FormatError, match=message):
        Manifest.from_dict(_edited(golden, change))


@pytest.mark.parametrize("version", [True, 1.0, "1", None])
def test_format_version_is_the_integer_1_only(golden, version):
    with pytest.raises(
        FormatError,
        match=rf"Unknown format_version {version!r}; this modelpack reads format_version 1",
    ):
        Manifest.from_dict(_edited(golden, lambda d: d.update(format_version=version)))


def test_format_version_true_is_refused_on_load(saved):
    text = (saved / "modelpack.yaml").read_text()
    _write_manifest(saved, text.replace("format_version: 1\n", "format_version: true\n"))
    with pytest.raises(FormatError, match="Unknown format_version True"):
        modelpack.load(saved)
    _write_manifest(saved, text.replace("format_version: 1\n", "format_version: 1.0\n"))
    with pytest.raises(FormatError, match="Unknown format_version 1.0"):
        modelpack.load(saved)


# ------------------------------------------------------------------ what a manifest may cost


BOMB = (
    "  a: &a [x, x, x, x, x, x, x, x, x]\n"
    "  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
    "  d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "  e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
    "  f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
    "  g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
    "  h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
    "  i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]\n"
)


def test_an_alias_bomb_in_metadata_is_refused_naming_the_line(saved, capsys):
    text = (saved / "modelpack.yaml").read_text()
    assert text.endswith("metadata:\n  team: risk\n")
    _write_manifest(saved, text + BOMB)
    line = text.count("\n") + 1  # the first added line holds the first anchor
    message = rf"modelpack\.yaml: line {line}: YAML anchors and aliases are not allowed"
    with pytest.raises(FormatError, match=message):
        modelpack.load(saved)
    assert main(["info", str(saved), "--json"]) == 1
    err = capsys.readouterr().err
    assert f"line {line}: YAML anchors and aliases are not allowed in a manifest." in err


def test_an_anchor_alone_and_a_duplicate_key_are_refused(saved):
    text = (saved / "modelpack.yaml").read_text()
    _write_manifest(saved, text.replace("  team: risk\n", "  team: &t risk\n"))
    with pytest.raises(FormatError, match=r"line \d+: YAML anchors and aliases are not allowed"):
        modelpack.load(saved)
    _write_manifest(saved, text + "flavor: sklearn\n")
    line = text.count("\n") + 1
    with pytest.raises(FormatError, match=rf"line {line}: the key 'flavor' appears twice\."):
        modelpack.load(saved)


def test_a_manifest_over_1_mib_is_refused_before_reading(saved):
    text = (saved / "modelpack.yaml").read_text()
    filler = "  note: " + "x" * MiB + "\n"
    _write_manifest(saved, text + filler)
    with pytest.raises(
        FormatError, match=r"modelpack\.yaml: is larger than 1048576 bytes \(1 MiB\)"
    ):
        modelpack.load(saved)
    # Just under the cap is fine (and the metadata comes back as written).
    room = MiB - len(text.encode()) - len("  note: \n")
    _write_manifest(saved, text + "  note: " + "x" * room + "\n")
    assert len(modelpack.load(saved).manifest.metadata["note"]) == room


def test_metadata_with_a_shared_object_is_written_without_anchors(tmp_path, forest):
    shared = ["a", "b"]
    modelpack.save(forest, tmp_path / "p", metadata={"x": shared, "y": shared})
    assert "&" not in (tmp_path / "p" / "modelpack.yaml").read_text()
    assert modelpack.load(tmp_path / "p").manifest.metadata == {"x": shared, "y": shared}
    assert "&" not in dump_yaml({"x": shared, "y": shared})


# ------------------------------------------------------------------ sizes


def test_saved_manifest_records_every_file_size(saved):
    manifest = modelpack.verify(saved)
    assert manifest.sizes == {rel: (saved / rel).stat().st_size for rel in manifest.files}
    written = yaml.safe_load((saved / "modelpack.yaml").read_text())
    assert written["sizes"] == manifest.sizes
    assert list(written).index("sizes") == list(written).index("files") + 1


def test_a_manifest_without_sizes_still_loads(saved, xy, forest):
    text = (saved / "modelpack.yaml").read_text()
    before, _, after = text.partition("sizes:\n")
    rest = after.split("\n")
    while rest and rest[0].startswith("  "):
        rest.pop(0)
    _write_manifest(saved, before + "\n".join(rest))
    pack = modelpack.load(saved)
    assert pack.manifest.sizes is None
    assert (pack.predict(xy[0][:3]) == forest.predict(xy[0][:3])).all()
