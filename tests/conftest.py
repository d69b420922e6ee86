"""Shared fixtures: tiny real models, built once per session, saved into tmp_path by tests."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def xy():
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=300, n_features=6, random_state=0)
    return X, y


@pytest.fixture(scope="session")
def forest(xy):
    from sklearn.ensemble import RandomForestClassifier

    X, y = xy
    return RandomForestClassifier(n_estimators=8, max_depth=4, random_state=0).fit(X, y)


@pytest.fixture(scope="session")
def frame(xy):
    import pandas as pd

    X, _ = xy
    return pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])


@pytest.fixture(scope="session")
def frame_forest(xy, frame):
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=8, max_depth=4, random_state=0).fit(frame, xy[1])


@pytest.fixture
def rng():
    return np.random.default_rng(0)
