"""File verification (issue 9): hard links, sizes before hashes, and single-byte flips."""

from __future__ import annotations

import os
import random
import re

import pytest

import modelpack
from modelpack.errors import FormatError, IntegrityError, ModelpackError

GiB = 1 << 30


@pytest.fixture
def saved(tmp_path, forest, xy):
    path = tmp_path / "rf"
    modelpack.save(forest, path, input_example=xy[0][:5])
    return path


# ------------------------------------------------------------------ hard links


def test_a_hard_linked_file_is_refused_like_a_symlink(saved, tmp_path, deserializations):
    os.link(saved / "model" / "model.pkl", tmp_path / "outside.pkl")  # writable from outside
    with pytest.raises(
        IntegrityError,
        match=r"^model/model\.pkl: has 2 hard links; packages may not contain links\.$",
    ) as e:
        modelpack.load(saved)
    assert e.value.problems == [("model/model.pkl", "hardlink")]
    with pytest.raises(IntegrityError, match="model/model.pkl: has 2 hard links"):
        modelpack.verify(saved)
    assert deserializations == []


def test_a_hard_link_outside_the_listed_files_is_refused_too(saved, tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    os.link(tmp_path / "notes.txt", saved / "NOTES.txt")
    with pytest.raises(IntegrityError, match=r"^NOTES\.txt: has 2 hard links") as e:
        modelpack.verify(saved)
    assert e.value.problems == [("NOTES.txt", "hardlink")]


def test_a_hard_linked_manifest_is_refused(saved, tmp_path):
    os.link(saved / "modelpack.yaml", tmp_path / "manifest-elsewhere.yaml")
    with pytest.raises(FormatError, match=r"modelpack\.yaml: has 2 hard links; packages may not"):
        modelpack.load(saved)


def test_save_refuses_a_flavor_that_leaves_a_hard_link(tmp_path, forest, monkeypatch):
    from modelpack.flavors import sklearn

    outside = tmp_path / "shared.bin"
    outside.write_bytes(b"weights")

    def save(model, dest, **options):  # a flavor that links a big file instead of copying
        os.link(outside, dest / "model" / "weights.bin")
        return {"path": "model/weights.bin", "serialization": "cloudpickle",
                "predict_method": "predict", "sklearn_version": "1.0"}  # fmt: skip

    monkeypatch.setattr(sklearn, "save", save)
    with pytest.raises(FormatError, match=r"^model/weights\.bin: has 2 hard links; packages may"):
        modelpack.save(forest, tmp_path / "p", infer_signature=False)
    assert not (tmp_path / "p").exists()


# ------------------------------------------------------------------ sizes first


def test_a_file_of_another_size_fails_before_it_is_hashed(saved, deserializations):
    recorded = modelpack.verify(saved).sizes["model/model.pkl"]
    os.truncate(saved / "model" / "model.pkl", 2 * GiB)  # sparse: no disk used, 2 GiB to hash
    with pytest.raises(
        IntegrityError,
        match=rf"^model/model\.pkl: size differs: {2 * GiB} bytes, the manifest says "
        rf"{recorded}\. The package was modified after it was saved\.$",
    ) as e:
        modelpack.load(saved)
    assert e.value.problems == [("model/model.pkl", "modified")]
    assert deserializations == []


def test_same_size_different_bytes_is_caught_by_the_hash(saved):
    path = saved / "model" / "model.pkl"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"^model/model\.pkl: sha256 is [0-9a-f]{12}\.\.\."):
        modelpack.verify(saved)


# ------------------------------------------------------------------ single-byte flips, unregistered


def _value_spans(text: str, keys: tuple[str, ...]) -> list[range]:
    """Where the values of ``keys`` (any depth) lie in the manifest's text."""
    spans = []
    for m in re.finditer(r"(?m)^ *(?P<key>[A-Za-z_]+): (?P<value>.+)$", text):
        if m["key"] in keys:
            spans.append(range(m.start("value"), m.end("value")))
    return spans


def test_byte_flips_in_an_unregistered_manifest(saved, deserializations):
    """Without a recorded hash, only a flip that leaves a valid value of a free field passes.

    Those are the documented limit of a package loaded by path: a hex digit of model_id, a
    digit of created_at or of a version string. Every other flip (every key, every digest,
    size, path, flavor value, the YAML structure) is caught before any deserializer runs.
    """
    manifest = saved / "modelpack.yaml"
    original = manifest.read_bytes()
    free = _value_spans(
        original.decode(),
        ("model_id", "created_at", "modelpack_version", "sklearn_version", "python"),
    )
    rng = random.Random(9)
    undetected = []
    for i in range(len(original)):
        flipped = bytearray(original)
        flipped[i] ^= rng.randrange(1, 256)
        manifest.write_bytes(bytes(flipped))
        before = len(deserializations)
        try:
            modelpack.load(saved)
        except ModelpackError:
            assert len(deserializations) == before, f"byte {i}: deserialized, then refused"
        else:
            undetected.append(i)
    manifest.write_bytes(original)
    assert len(original) > 900
    assert [i for i in undetected if not any(i in span for span in free)] == []
    assert len(undetected) < len(original) // 50
