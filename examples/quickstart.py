"""The whole flow on the embedded store: train, track, log and register the model, promote it
to Production, then load it back by name and predict.

Run: python examples/quickstart.py [--out DIR]   (default DIR: ./modelpack-store)
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

import modelpack


def main(out: Path) -> None:
    # The embedded store: SQLite + a folder of artifacts (a PostgreSQL URL and s3:// work too).
    os.environ.setdefault(
        "MODELPACK_TRACKING_URI", f"sqlite:///{(out / 'modelpack.db').absolute()}"
    )
    os.environ.setdefault("MODELPACK_ARTIFACT_ROOT", str((out / "artifacts").absolute()))

    X, y = make_classification(n_samples=2_000, n_features=8, random_state=0)
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    X_train, X_test, y_train, y_test = train_test_split(df, y, random_state=0)

    modelpack.set_experiment("quickstart")
    params = {"n_estimators": 50, "max_depth": 6}
    with modelpack.start_run(run_name="forest") as run:
        model = RandomForestClassifier(**params, random_state=0).fit(X_train, y_train)
        modelpack.log_params(params)
        accuracy = accuracy_score(y_test, model.predict(X_test))
        modelpack.log_metric("accuracy", accuracy)
        info = modelpack.log_model(
            model, "model", input_example=X_train.head(5), registered_model_name="Churn"
        )
    version = info.registered_model_version
    print(f"run       {run.info.run_id} accuracy={accuracy:.3f}")
    print(f"logged    {info.model_uri} (model_id {info.model_id})")
    print(f"version   Churn v{version.version}")

    client = modelpack.Client()
    client.transition_model_version_stage(
        "Churn", version.version, "Production", archive_existing_versions=True, comment="quickstart"
    )
    pack = modelpack.load("models:/Churn/Production")
    predictions = pack.predict(X_test.head(10))
    assert (predictions == model.predict(X_test.head(10))).all()
    inputs = pack.signature.inputs
    print(f"loaded    models:/Churn/Production -> v{version.version}, flavor {pack.flavor}")
    print(
        f"inputs    {len(inputs.columns)} columns: "
        + ", ".join(f"{c.name}:{c.type}" for c in inputs.columns)
    )
    print(f"predict   {predictions.tolist()}")
    try:
        pack.predict(X_test.drop(columns=["f3"]).head(2))
    except modelpack.SchemaError as exc:
        print(f"refused   {exc}"[:100] + "...")
    best = modelpack.search_runs(
        filter_string="metrics.accuracy > 0.8", order_by=["metrics.accuracy DESC"]
    )
    print(f"search    {len(best)} run(s) with accuracy > 0.8")
    print(
        "history   "
        + "; ".join(
            f"v{h.version} {h.action} {h.from_value}->{h.to_value}"
            for h in client.get_model_history("Churn")[-2:]
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("modelpack-store"),
        help="store folder (default: ./modelpack-store)",
    )
    main(parser.parse_args().out)
