"""Train a scikit-learn model, save it as a package, load it back, predict, and look inside.

Run: python examples/quickstart.py [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

import modelpack


def main(out: Path) -> None:
    X, y = make_classification(n_samples=2_000, n_features=8, random_state=0)
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    model = RandomForestClassifier(n_estimators=50, max_depth=6, random_state=0).fit(df, y)

    path = out / "churn"
    manifest = modelpack.save(
        model, path, input_example=df.head(5), overwrite=True, metadata={"owner": "quickstart"}
    )

    pack = modelpack.load(path)
    predictions = pack.predict(df.head(10))
    assert (predictions == model.predict(df.head(10))).all()

    print(f"saved     {path}")
    print(f"model_id  {manifest.model_id}")
    print(f"flavor    {manifest.flavor} (sklearn {manifest.flavors['sklearn']['sklearn_version']})")
    inputs = pack.signature.inputs
    print(
        f"inputs    {len(inputs.columns)} columns: "
        + ", ".join(f"{c.name}:{c.type}" for c in inputs.columns)
    )
    print(f"outputs   {pack.signature.outputs.to_dict()}")
    print(f"files     {len(manifest.files)} hashed with sha256, verified on load")
    print(f"predict   {predictions.tolist()}")
    # Records work too, and bad input is refused before the model sees it.
    print(f"records   {pack.predict(df.head(2).to_dict('records')).tolist()}")
    try:
        pack.predict(df.drop(columns=["f3"]).head(2))
    except modelpack.SchemaError as exc:
        print(f"refused   {exc}"[:100] + "...")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, help="where to write the package (default: a temp dir)")
    args = parser.parse_args()
    if args.out:
        main(args.out)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
