"""Requirement inference: module walk and the module -> distribution mapping."""

from __future__ import annotations

import attr
from dateutil.relativedelta import relativedelta

from modelpack.environment import infer_requirements, modules_of


def test_import_names_map_to_their_distributions():
    reqs = infer_requirements({"a": attr.Factory(list), "b": relativedelta(days=1)}, [])
    names = [r.split("==")[0] for r in reqs]
    assert names == ["attrs", "python-dateutil"]  # attr -> attrs found by the full scan


def test_walk_finds_modules_in_closures_and_globals():
    import numpy as np

    factor = np.float64(2.0)

    def model(data):
        return np.asarray(data) * factor

    assert {"numpy"} <= modules_of(model)
    assert "modelpack" not in modules_of(model) and "builtins" not in modules_of([1, "x"])
