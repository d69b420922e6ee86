"""What the MLflow bridge costs (issue 11): the MLflow files in every save, and loading an MLflow
model folder (converted once into the cache, then verified like any package).

    python benchmarks/bench_mlflow.py [--repeats 40]

Prints medians and ratios. MLflow itself is not needed: the MLflow folder is made from a saved
package's own MLmodel files (the folder MLflow loads), with the modelpack manifest removed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=40)
    args = parser.parse_args()

    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    import modelpack

    X, y = make_classification(n_samples=2000, n_features=20, random_state=0)
    models = {
        "LogisticRegression": LogisticRegression(max_iter=500).fit(X, y),
        "RandomForest(100, depth 8)": RandomForestClassifier(
            n_estimators=100, max_depth=8, random_state=0
        ).fit(X, y),
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["MODELPACK_CACHE_DIR"] = str(root / "cache")
        print(f"## save with and without the MLflow files (median of {args.repeats}, interleaved)")
        print("| model | mlflow=False | mlflow=True | ratio |")
        print("|---|---|---|---|")
        for name, model in models.items():
            times: dict[bool, list[float]] = {False: [], True: []}
            for i in range(args.repeats):
                for flag in (False, True):
                    target = root / f"s-{flag}-{i}"
                    start = time.perf_counter()
                    modelpack.save(model, target, input_example=X[:5], mlflow=flag)
                    times[flag].append(time.perf_counter() - start)
                    shutil.rmtree(target)
            off, on = median_ms(times[False]), median_ms(times[True])
            print(f"| {name} | {off:.1f} ms | {on:.1f} ms | {on / off:.2f}x |")

        print()
        print(f"## load: a package vs an MLflow folder (median of {args.repeats})")
        print("| model | package | MLflow folder, first load | warm load | warm/package |")
        print("|---|---|---|---|---|")
        for name, model in models.items():
            package = root / f"p-{name[:5]}"
            modelpack.save(model, package, input_example=X[:5])
            first, warm, plain = [], [], []
            for i in range(args.repeats):
                folder = root / f"m-{name[:5]}-{i}"
                shutil.copytree(package, folder)
                (folder / "modelpack.yaml").unlink()
                # A changed file: a new source each round, so the first load converts.
                (folder / "conda.yaml").write_text((folder / "conda.yaml").read_text() + f"# {i}\n")
                start = time.perf_counter()
                modelpack.load(folder)
                first.append(time.perf_counter() - start)
                start = time.perf_counter()
                modelpack.load(folder)
                warm.append(time.perf_counter() - start)
                start = time.perf_counter()
                modelpack.load(package)
                plain.append(time.perf_counter() - start)
            p, f, w = median_ms(plain), median_ms(first), median_ms(warm)
            print(f"| {name} | {p:.1f} ms | {f:.1f} ms | {w:.1f} ms | {w / p:.2f}x |")


if __name__ == "__main__":
    main()
