"""A manifest swapped in after resolution checked it is still caught: load and verify parse
the very bytes they check against the registry's record."""

from __future__ import annotations

import hashlib

import pytest
import yaml

import modelpack
import modelpack.package
from modelpack.errors import IntegrityError


def _swap_manifest(root):
    """What a writer of the package does between resolution and loading: new requirements,
    and a manifest that vouches for them."""
    data = b"evil==1\n"
    (root / "requirements.txt").write_bytes(data)
    manifest = yaml.safe_load((root / "modelpack.yaml").read_text())
    manifest["files"]["requirements.txt"] = hashlib.sha256(data).hexdigest()
    manifest["sizes"]["requirements.txt"] = len(data)
    (root / "modelpack.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))


@pytest.mark.parametrize("read", [modelpack.load, modelpack.verify], ids=["load", "verify"])
def test_a_manifest_swapped_after_resolution_is_refused(
    tracking_env, forest, xy, tmp_path, monkeypatch, read
):
    package = tmp_path / "churn"
    modelpack.save(forest, package, input_example=xy[0][:3])
    modelpack.Client().register_model(str(package), "Churn")
    real = modelpack.package.resolve_recorded

    def resolve_then_swap(uri, source=None):
        root, recorded = real(uri, source)
        _swap_manifest(root)
        return root, recorded

    monkeypatch.setattr(modelpack.package, "resolve_recorded", resolve_then_swap)
    with pytest.raises(IntegrityError, match="differs from what the registry recorded"):
        read("models:/Churn/1")
