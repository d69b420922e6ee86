"""The manifest hash a store records is checked on every use (issue 9).

A registered version's manifest hash (and a logged model's) is compared on every load of
``models:/`` and ``runs:/`` URIs and on registration from a run, for local and S3 artifact
roots, cache hit or not; the cache is private (0700) and refused when others may write to it.
"""

from __future__ import annotations

import hashlib
import os
import random
import stat
from pathlib import Path

import boto3
import numpy as np
import pytest
import yaml

import modelpack
from modelpack.errors import FormatError, IntegrityError, ModelpackError

MODEL = "model/model.pkl"


def _evil_pickle(marker: Path) -> bytes:
    return f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()


def _swap_model(package: Path, payload: bytes) -> None:
    """What an attacker who can write the package does: new model.pkl, manifest rewritten to
    match it (hash and size), so the package verifies against its own manifest."""
    (package / MODEL).write_bytes(payload)
    manifest = yaml.safe_load((package / "modelpack.yaml").read_text())
    manifest["files"][MODEL] = hashlib.sha256(payload).hexdigest()
    if "sizes" in manifest:
        manifest["sizes"][MODEL] = len(payload)
    (package / "modelpack.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))


@pytest.fixture
def package(tmp_path, forest, xy):
    path = tmp_path / "pkg"
    modelpack.save(forest, path, input_example=xy[0][:2])
    return path


# ------------------------------------------------------------------ local registry and runs


def test_a_swapped_model_in_local_registry_storage_is_refused(
    client, tracking_env, package, tmp_path, deserializations
):
    mv = client.register_model(str(package), "Churn")
    marker = tmp_path / "pwned"
    _swap_model(Path(mv.storage_location), _evil_pickle(marker))
    assert modelpack.verify(mv.storage_location)  # consistent with its own manifest
    message = (
        r"^models:/Churn/1 \(.*\): modelpack\.yaml differs from what the registry recorded "
        r"\(sha256 [0-9a-f]{12}\.\.\., recorded " + mv.manifest_sha256[:12] + r"\.\.\.\)\. "
        r"The package was modified after it was stored"
    )
    for uri in ("models:/Churn/1", "models:/Churn/latest"):
        with pytest.raises(IntegrityError, match=message.replace("Churn/1", uri[8:])) as e:
            modelpack.load(uri)
        assert e.value.problems == [("modelpack.yaml", "modified")]
    with pytest.raises(IntegrityError, match="differs from what the registry recorded"):
        client.resolve("models:/Churn/1")
    assert not marker.exists() and deserializations == []


def test_a_run_tampered_after_log_model_is_refused_on_load_and_registration(
    client, tracking_env, forest, xy, tmp_path, deserializations
):
    run = client.create_run(client.create_experiment("e"))
    info = client.log_model(run.info.run_id, forest, "model", input_example=xy[0][:2])
    deserializations.clear()  # saving loads the model once, to predict on the example
    marker = tmp_path / "pwned"
    _swap_model(client.resolve(info.model_uri), _evil_pickle(marker))
    message = (
        rf"^{info.model_uri} \(.*\): modelpack\.yaml differs from what the tracking store "
        r"\(log_model\) recorded"
    )
    with pytest.raises(IntegrityError, match=message):
        modelpack.load(info.model_uri)
    with pytest.raises(IntegrityError, match=message):
        client.register_model(info.model_uri, "Churn")
    assert client.search_model_versions("name = 'Churn'") == []
    assert not (tmp_path / "artifacts" / "registry").exists() or not any(
        (tmp_path / "artifacts" / "registry").iterdir()
    )
    assert not marker.exists() and deserializations == []


def test_registration_records_the_hash_of_the_manifest_it_verified(client, package):
    mv = client.register_model(str(package), "Churn")
    stored = Path(mv.storage_location) / "modelpack.yaml"
    assert mv.manifest_sha256 == hashlib.sha256(stored.read_bytes()).hexdigest()
    assert client.get_model_version("Churn", 1).manifest_sha256 == mv.manifest_sha256
    assert modelpack.load(mv.storage_location).model_id == mv.model_id


def test_a_planted_model_id_never_reaches_a_path(client, package):
    text = (package / "modelpack.yaml").read_text()
    model_id = yaml.safe_load(text)["model_id"]
    (package / "modelpack.yaml").write_text(text.replace(model_id, "../../outside/planted"))
    with pytest.raises(FormatError, match=r"model_id: expected 32 lowercase hex characters, "
                       r"got '\.\./\.\./outside/planted'"):  # fmt: skip
        client.register_model(str(package), "Churn")
    assert client.search_model_versions("name = 'Churn'") == []


def test_a_damaged_registry_record_is_refused(client, tracking_env, package):
    import sqlalchemy as sa

    from modelpack.store import schema

    client.register_model(str(package), "Churn")
    with client.store.engine.begin() as conn:
        conn.execute(sa.update(schema.model_versions).values(model_id="../../outside/planted"))
    with pytest.raises(
        IntegrityError,
        match=r"the model_id recorded for registered version models:/Churn/1: expected 32 "
        r"lowercase hex characters, got '\.\./\.\./outside/planted'\. The store's record is "
        r"damaged",
    ):
        modelpack.load("models:/Churn/1")


# ------------------------------------------------------------------ S3 and the cache


@pytest.fixture
def s3(monkeypatch, store_url, s3_bucket, tmp_path):
    endpoint, bucket = s3_bucket
    monkeypatch.setenv("MODELPACK_S3_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("MODELPACK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MODELPACK_TRACKING_URI", store_url)
    client = modelpack.Client(store_url, artifact_root=f"s3://{bucket}/team")
    return client, boto3.client("s3", endpoint_url=endpoint), bucket


def test_a_swapped_cache_entry_is_refused_on_a_warm_load(s3, package, tmp_path, deserializations):
    client, _, _ = s3
    client.register_model(str(package), "Churn")
    entry = client.resolve("models:/Churn/1")  # cold: downloaded and verified
    assert entry.parent == tmp_path / "cache" / "packages"
    marker = tmp_path / "pwned"
    _swap_model(entry, _evil_pickle(marker))
    with pytest.raises(
        IntegrityError,
        match=rf"^models:/Churn/1 \({entry}\): modelpack\.yaml differs from what the registry "
        rf"recorded .* It was taken from the cache: delete {entry} to download it again\.$",
    ):
        modelpack.load("models:/Churn/1")
    assert not marker.exists() and deserializations == []


def test_a_cache_entry_with_a_swapped_file_is_refused_by_verification(s3, package, xy, forest):
    client, _, _ = s3
    client.register_model(str(package), "Churn")
    entry = client.resolve("models:/Churn/1")
    np.testing.assert_array_equal(
        modelpack.load("models:/Churn/1").predict(xy[0][:3]), forest.predict(xy[0][:3])
    )
    data = bytearray((entry / MODEL).read_bytes())
    data[100] ^= 1
    (entry / MODEL).write_bytes(bytes(data))  # same size, manifest untouched
    with pytest.raises(IntegrityError, match=r"^model/model\.pkl: sha256 is"):
        modelpack.load("models:/Churn/1")


def test_a_run_tampered_in_s3_is_refused_at_registration(s3, forest, xy):
    client, s3_client, bucket = s3
    run = client.create_run(client.create_experiment("e"))
    info = client.log_model(run.info.run_id, forest, "model", input_example=xy[0][:2])
    prefix = run.info.artifact_uri.split(f"s3://{bucket}/", 1)[1] + "/model/"
    local = Path(client.download_artifacts(run.info.run_id, "model"))
    _swap_model(local, b"not a pickle")
    for name in (MODEL, "modelpack.yaml"):
        s3_client.put_object(Bucket=bucket, Key=prefix + name, Body=(local / name).read_bytes())
    with pytest.raises(IntegrityError, match=rf"^{info.model_uri} \(.*\): modelpack\.yaml "
                       r"differs from what the tracking store \(log_model\) recorded"):  # fmt: skip
        client.register_model(info.model_uri, "Churn")
    assert client.search_model_versions("name = 'Churn'") == []


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_cache_folders_are_created_private(s3, package, tmp_path, monkeypatch):
    client, _, _ = s3
    client.register_model(str(package), "Churn")
    client.resolve("models:/Churn/1")
    assert _mode(tmp_path / "cache") == 0o700 and _mode(tmp_path / "cache" / "packages") == 0o700
    # The default location: every level modelpack creates under the home directory.
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.delenv("MODELPACK_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(home))
    old = os.umask(0o022)
    try:
        client.resolve("models:/Churn/1")
    finally:
        os.umask(old)
    for level in (".cache", ".cache/modelpack", ".cache/modelpack/packages"):
        assert _mode(home / level) == 0o700, level


def test_a_cache_others_can_write_is_refused(s3, package, tmp_path):
    client, _, _ = s3
    client.register_model(str(package), "Churn")
    client.resolve("models:/Churn/1")
    packages = tmp_path / "cache" / "packages"
    os.chmod(packages, 0o770)
    with pytest.raises(
        ModelpackError,
        match=rf"^The package cache {packages} is writable by others \(mode 770\); they could "
        rf"swap a package after it is verified\. Run: chmod 700 {packages}",
    ):
        modelpack.load("models:/Churn/1")
    os.chmod(packages, 0o700)
    assert modelpack.load("models:/Churn/1").manifest.flavor == "sklearn"


# ------------------------------------------------------------------ every byte of a registered one


@pytest.fixture
def sqlite_env(monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path / 'flip-store' / 'modelpack.db'}"
    monkeypatch.setenv("MODELPACK_TRACKING_URI", url)
    monkeypatch.setenv("MODELPACK_ARTIFACT_ROOT", str(tmp_path / "flip-artifacts"))
    monkeypatch.setenv("MODELPACK_CACHE_DIR", str(tmp_path / "cache"))
    yield modelpack.Client()
    from modelpack.store import engines

    engines.dispose(url)


def test_every_single_byte_flip_in_a_registered_package_is_caught(
    sqlite_env, package, deserializations
):
    """Every byte of modelpack.yaml, and a fixed sample of the other files' bytes, flipped one at
    a time: each load of models:/Flip/1 is refused before any deserializer runs."""
    client = sqlite_env
    mv = client.register_model(str(package), "Flip")
    root = Path(mv.storage_location)
    modelpack.load("models:/Flip/1")
    assert len(deserializations) == 1  # the sentinel sees a real load
    rng = random.Random(1200)
    flips = [("modelpack.yaml", i) for i in range((root / "modelpack.yaml").stat().st_size)]
    others = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    others.remove("modelpack.yaml")
    for rel in others:
        size = (root / rel).stat().st_size
        flips += [(rel, i) for i in sorted(rng.sample(range(size), min(size, 100)))]
    assert len(flips) >= 1200
    missed = []
    for rel, i in flips:
        path = root / rel
        original = path.read_bytes()
        flipped = bytearray(original)
        flipped[i] ^= rng.randrange(1, 256)
        path.write_bytes(bytes(flipped))
        try:
            modelpack.load("models:/Flip/1")
        except ModelpackError:
            pass
        except Exception as exc:  # refused, but not by a check: it got past them
            missed.append((rel, i, type(exc).__name__))
        else:
            missed.append((rel, i, "loaded"))
        finally:
            path.write_bytes(original)
    assert missed == []
    assert len(deserializations) == 1
    modelpack.load("models:/Flip/1")  # and the package, restored, still loads
