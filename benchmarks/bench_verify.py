#!/usr/bin/env python
"""Benchmark what verifying every file on every load costs (issue 9).

``modelpack.load`` checks each file's size and sha256 against the manifest before any
deserializer runs, and, for a registered version, the manifest's own sha256 against the one the
registry recorded. This measures that share of a load of the benchmark forest (the one
bench_format.py builds: RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0) on
make_classification(n_samples=10000, n_features=20, random_state=0), saved with an input
example and ``also=("onnx",)``), each a median:

1. cold: ``import modelpack; modelpack.load(path)`` in a fresh interpreter, imports included,
   and the time its ``verify_files`` call takes, measured inside that same load (a with/without
   comparison across processes drowns in their noise: import time varies by 100s of ms).
2. warm: in process, after a first load: loads with verification and with ``verify_files``
   replaced by a no-op, interleaved, and the ``verify_files`` time inside each verified load.
3. warm, registered: the same for ``modelpack.load("models:/Forest/1")`` (SQLite store, local
   artifact root), and the recorded-manifest check alone (read + sha256 of modelpack.yaml).

Ratios: "with / (with - verify_files)" is a load over the same load minus its verification;
"with / without" compares the interleaved loads.

Usage:
    python benchmarks/bench_verify.py            # full run (about a minute)
    python benchmarks/bench_verify.py --quick    # smoke run, fewer repeats
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import table

# Child prologue: count the time load spends in verify_files (the clock starts after it).
TIMED = (
    "import time\nimport modelpack.package as _p\n_real, _spent = _p.verify_files, []\n"
    "def _timed(root, files):\n    t = time.perf_counter()\n    _real(root, files)\n"
    "    _spent.append(time.perf_counter() - t)\n"
    "_p.verify_files = _timed\n"
)


def median(values):
    return statistics.median(values)


def ms(s: float) -> str:
    return f"{s * 1e3:.2f} ms"


def child(code: str) -> dict[str, float]:
    """Run ``code`` in a fresh interpreter; it prints ``NAME=<seconds>`` lines."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed:\n{code}\n--- stderr ---\n{proc.stderr[-4000:]}")
    return {k: float(v) for k, _, v in (x.partition("=") for x in proc.stdout.split()) if v}


def build_package(work: Path) -> Path:
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    import modelpack

    X, y = make_classification(n_samples=10000, n_features=20, random_state=0)
    rf = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0).fit(X, y)
    path = work / "pkg_sklearn"
    try:
        import skl2onnx  # noqa: F401

        also: tuple[str, ...] = ("onnx",)
    except ImportError:
        also = ()
    modelpack.save(rf, path, input_example=X[:5], also=also)
    return path


def cold(path: Path, runs: int) -> dict:
    """A fresh interpreter per load; the share of verify_files is measured inside the same load
    (a with/without comparison across processes drowns in their noise)."""
    code = (
        "import time\nt0 = time.perf_counter()\n"
        + TIMED
        + f"modelpack = __import__('modelpack')\nmodelpack.load({str(path)!r})\n"
        + "print(f'V={sum(_spent)!r}')\nprint(f'T={time.perf_counter() - t0!r}')\n"
    )
    child(code)  # warm the OS file cache and bytecode
    totals, verifies = [], []
    for _ in range(runs):
        out = child(code)
        totals.append(out["T"])
        verifies.append(out["V"])
    return {"with": median(totals), "verify_files": median(verifies)}


def warm(path: Path, runs: int) -> dict:
    """In process after a first load: with and without verification, interleaved."""
    import modelpack
    import modelpack.package as package

    real = package.verify_files
    spent: list[float] = []

    def timed(root, files):
        t = time.perf_counter()
        real(root, files)
        spent.append(time.perf_counter() - t)

    modelpack.load(path)
    times: dict[str, list[float]] = {"with": [], "without": [], "verify_files": []}
    for i in range(runs):
        for name in ("with", "without") if i % 2 == 0 else ("without", "with"):
            package.verify_files = timed if name == "with" else (lambda root, files: None)
            t0 = time.perf_counter()
            modelpack.load(path)
            times[name].append(time.perf_counter() - t0)
        times["verify_files"].append(spent[-1])
    package.verify_files = real
    return {k: median(v) for k, v in times.items()}


def registered(path: Path, work: Path, runs: int) -> dict:
    """``models:/Forest/1`` in process: file verification and the recorded-manifest check."""
    import modelpack
    import modelpack.package as package
    from modelpack import resolution

    client = modelpack.Client(
        f"sqlite:///{work / 'store' / 'modelpack.db'}", artifact_root=str(work / "artifacts")
    )
    os.environ["MODELPACK_TRACKING_URI"] = client.tracking_uri
    os.environ["MODELPACK_ARTIFACT_ROOT"] = client.artifact_root
    client.register_model(str(path), "Forest")
    uri = "models:/Forest/1"
    modelpack.load(uri)
    root, recorded = resolution.resolve_recorded(uri, client)
    assert recorded is not None
    real = package.verify_files
    spent: list[float] = []

    def timed(root, files):
        t = time.perf_counter()
        real(root, files)
        spent.append(time.perf_counter() - t)

    times: dict[str, list[float]] = {
        "with": [],
        "without": [],
        "verify_files": [],
        "manifest check": [],
    }
    for i in range(runs):
        for name in ("with", "without") if i % 2 == 0 else ("without", "with"):
            package.verify_files = timed if name == "with" else (lambda root, files: None)
            t0 = time.perf_counter()
            modelpack.load(uri)
            times[name].append(time.perf_counter() - t0)
        package.verify_files = real
        times["verify_files"].append(spent[-1])
        t0 = time.perf_counter()
        resolution.check_recorded_manifest(root, recorded)
        times["manifest check"].append(time.perf_counter() - t0)
    return {k: median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: fewer repeats")
    ap.add_argument("--json", help="also write the medians to this JSON file")
    args = ap.parse_args()
    n_cold, n_warm = (3, 20) if args.quick else (11, 200)

    import sklearn

    import modelpack

    print("modelpack verification-on-load benchmark (issue 9)" + (" [quick]" if args.quick else ""))
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(
        f"versions: python {platform.python_version()}, scikit-learn {sklearn.__version__}, "
        f"modelpack {modelpack.__version__}, cpus {os.cpu_count()}, {platform.platform()}"
    )
    results: dict = {"quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="bench_verify_") as tmp:
        work = Path(tmp)
        path = build_package(work)
        manifest = modelpack.verify(path)
        total = sum((manifest.sizes or {}).values())
        files = ", ".join(f"{rel} {n / 1024:.0f} KiB" for rel, n in (manifest.sizes or {}).items())
        print(f"\npackage: {len(manifest.files)} files, {total / 1024:.0f} KiB ({files})")
        sections = [
            (f"cold: fresh interpreter, imports included (median of {n_cold})", cold(path, n_cold)),
            (f"warm: in process, after a first load (median of {n_warm})", warm(path, n_warm)),
            (
                f"warm, registered: models:/Forest/1, SQLite store (median of {n_warm})",
                registered(path, work, n_warm),
            ),
        ]
    rows = []
    for title, r in sections:
        verify = r.get("verify_files")
        paired = f"{r['with'] / (r['with'] - verify):.3f}x" if verify is not None else "-"
        ab = f"{r['with'] / r['without']:.3f}x" if "without" in r else "-"
        rows.append([
            title,
            ms(r["with"]),
            ms(verify) if verify is not None else "-",
            ms(r["without"]) if "without" in r else "-",
            paired,
            ab,
            ms(r["manifest check"]) if "manifest check" in r else "-",
        ])  # fmt: skip
        results[title.split(":")[0]] = r
    table(
        "Verifying every file on every load: the benchmark forest",
        ["load", "with verification", "of which verify_files", "without (verify_files no-op)",
         "ratio: with / (with - verify_files)", "ratio: with / without",
         "recorded-manifest check"],
        rows,
    )  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
