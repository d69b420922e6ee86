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
def deserializations(monkeypatch):
    """Each call of the sklearn flavor's loader (the only way to its unpickler), recorded."""
    from modelpack.flavors import sklearn

    calls: list[str] = []
    real = sklearn.load

    def load(src, config, **options):
        calls.append(str(src))
        return real(src, config, **options)

    monkeypatch.setattr(sklearn, "load", load)
    return calls


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# ---------------------------------------------------------------------------- tracking stores

PG_BASE = "postgresql://postgres@127.0.0.1:5432/test"


def _postgres_available() -> str | None:
    """None if the PostgreSQL server answers, else why not."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install -e '.[dev]')"
    try:
        psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=3
        ).close()
    except psycopg.Error as exc:
        return f"no PostgreSQL at 127.0.0.1:5432 ({str(exc).strip().splitlines()[0]})"
    return None


@pytest.fixture(scope="session")
def postgres_server():
    """The base URL of the test PostgreSQL; skipped (a failure when CI=true) if it is down."""
    import os

    problem = _postgres_available()
    if problem:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL tests must run in CI: {problem}")
        pytest.skip(problem)
    return PG_BASE


@pytest.fixture
def postgres_url(postgres_server):
    """A URL whose tables live in a fresh, private schema (dropped afterwards)."""
    import uuid

    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    conninfo = "host=127.0.0.1 port=5432 user=postgres dbname=test"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = f"{postgres_server}?options=-csearch_path%3D{schema}"
    yield url
    from modelpack.store import engines

    engines.dispose(url)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """Each store test runs on the embedded SQLite file and on the real PostgreSQL."""
    if request.param == "postgresql":
        yield request.getfixturevalue("postgres_url")
        return
    url = f"sqlite:///{tmp_path / 'store' / 'modelpack.db'}"
    yield url
    from modelpack.store import engines

    engines.dispose(url)


@pytest.fixture
def client(store_url, tmp_path):
    import modelpack

    return modelpack.Client(store_url, artifact_root=str(tmp_path / "artifacts"))


@pytest.fixture
def tracking_env(monkeypatch, store_url, tmp_path):
    """The fluent API pointed at this test's store, artifacts and cache (nothing in cwd)."""
    monkeypatch.setenv("MODELPACK_TRACKING_URI", store_url)
    monkeypatch.setenv("MODELPACK_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    monkeypatch.setenv("MODELPACK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("MODELPACK_EXPERIMENT_NAME", raising=False)
    yield store_url
    import modelpack

    while modelpack.active_run() is not None:  # a test that left a run open ends it here
        modelpack.end_run()


# ---------------------------------------------------------------------------- the real MLflow


@pytest.fixture(scope="session")
def mlflow_env():
    """The real ``mlflow==3.17.2`` in a virtualenv of its own (tests/mlflow_env.py): built
    once per machine; a test runs scripts there with ``mlflow_env.run/json``."""
    import os

    from mlflow_env import MlflowEnv, MlflowUnavailable, build

    try:
        return MlflowEnv(build())
    except MlflowUnavailable as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"the MLflow virtualenv could not be built: {exc}")


@pytest.fixture(scope="session")
def mlflow2_env():
    """The real 2.x client, ``mlflow-skinny==2.22.5``, in a virtualenv of its own beside
    ``mlflow_env``'s (tests/mlflow_env.py), built and used the same way (a failed build skips,
    and fails in CI)."""
    from mlflow_env import fixture_env

    return fixture_env("2.22.5")
