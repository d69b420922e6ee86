#!/usr/bin/env python
"""Benchmark the package format (issue 2): import, save, load and predict overhead.

Every number is a median, printed beside the raw framework call it wraps and the ratio:

1. ``import modelpack`` (fresh interpreter, minus ``python -c pass``); MLflow too if importable.
2. ``modelpack.save`` with an input example (signature inferred) and inferred requirements, in
   a fresh process (first save: lazy imports and framework warm-up included) and warm in
   process, beside the raw framework save.
3. ``modelpack.load`` in a fresh process, imports included, beside the raw framework load.
4. ``Package.predict`` overhead over the native call on ``pack.unwrap()``, 1 and 10,000 rows.

Fixtures: RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0) on
make_classification(n_samples=10000, n_features=20, random_state=0); a torch MLP 20-64-64-2
(float32 input); the forest converted to ONNX by ``modelpack.save(..., also=("onnx",))``.

Usage:
    python benchmarks/bench_format.py            # full run (a few minutes)
    python benchmarks/bench_format.py --quick    # smoke run, fewer repeats
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from functools import partial
from pathlib import Path

from _report import table, verdict

# ----------------------------------------------------------------------------- targets

IMPORT_TARGET_S = 0.1
SAVE_TARGET_S = 0.5
PREDICT_1ROW_TARGET_US = 20.0  # onnx and torch
PREDICT_BIG_TARGET_PCT = 5.0  # every flavor, 10,000 rows

# ----------------------------------------------------------------------------- helpers


def median(values):
    return statistics.median(values)


def run_child(code: str, env: dict | None = None) -> str:
    """Run ``code`` in a fresh interpreter; return its stdout (raise with stderr on failure)."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(
            f"child failed ({proc.returncode}):\n{code}\n--- stderr ---\n{proc.stderr[-4000:]}"
        )
    return proc.stdout


def child_seconds(code: str) -> float:
    """Run ``code`` in a fresh interpreter; it prints ``T=<seconds>`` on its last line."""
    out = run_child(code).strip().splitlines()
    line = [x for x in out if x.startswith("T=")][-1]
    return float(line[2:])


def wall_seconds(code: str, env: dict | None = None) -> float:
    t0 = time.perf_counter()
    run_child(code, env)
    return time.perf_counter() - t0


def ms(s: float) -> str:
    return f"{s * 1e3:.1f} ms"


def us(s: float) -> str:
    return f"{s * 1e6:.1f}"


# ----------------------------------------------------------------------------- fixtures


def build_fixtures(work: Path) -> dict:
    import cloudpickle
    import numpy as np
    import torch
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    import modelpack

    X, y = make_classification(n_samples=10000, n_features=20, random_state=0)
    rf = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0).fit(X, y)
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(20, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 64), torch.nn.ReLU(),
        torch.nn.Linear(64, 2),
    ).eval()  # fmt: skip
    X32 = X.astype(np.float32)

    np.save(work / "X.npy", X)
    with open(work / "rf.pkl", "wb") as f:
        cloudpickle.dump(rf, f)
    torch.save(mlp.state_dict(), work / "mlp_state.pt")

    # Packages to load and predict with.
    sk_pack = work / "pkg_sklearn"
    modelpack.save(rf, sk_pack, input_example=X[:5], also=("onnx",))
    torch_pack = work / "pkg_torch"
    modelpack.save(mlp, torch_pack, input_example=X32[:5])

    # The raw files for the raw-framework baselines: the very same model files.
    import onnx

    cfg = modelpack.load(sk_pack, flavor="onnx").manifest.flavors["onnx"]
    onnx_file = sk_pack / cfg["path"]
    proto = onnx.load(str(onnx_file))
    onnx.save(proto, str(work / "rf.onnx"))
    onnx_input = proto.graph.input[0]
    elem = onnx_input.type.tensor_type.elem_type
    onnx_dtype = str(onnx.helper.tensor_dtype_to_np_dtype(elem))
    torch_cfg = modelpack.load(torch_pack).manifest.flavors["torch"]
    return {
        "X": X, "X32": X32, "rf": rf, "mlp": mlp, "proto": proto,
        "sk_pack": sk_pack, "torch_pack": torch_pack,
        "onnx_file": onnx_file, "onnx_input": onnx_input.name, "onnx_dtype": onnx_dtype,
        "onnx_output": cfg["output_names"][0], "torch_file": torch_pack / torch_cfg["path"],
        "torch_format": torch_cfg["format"],
    }  # fmt: skip


# Child-process prologue: load the fixture objects (not timed).
SETUP = {
    "sklearn": (
        "import cloudpickle, numpy as np\n"
        "X = np.load(W + '/X.npy')\n"
        "with open(W + '/rf.pkl', 'rb') as f:\n    model = cloudpickle.load(f)\n"
        "ex = X[:5]\n"
    ),
    "torch": (
        "import numpy as np, torch\n"
        "X = np.load(W + '/X.npy').astype(np.float32)\n"
        "model = torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(),\n"
        "    torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2)).eval()\n"
        "model.load_state_dict(torch.load(W + '/mlp_state.pt'))\n"
        "ex = X[:5]\n"
    ),
    "onnx": (
        "import numpy as np, onnx\n"
        "X = np.load(W + '/X.npy').astype(ONNX_DTYPE)\n"
        "model = onnx.load(W + '/rf.onnx')\n"
        "ex = X[:5]\n"
    ),
}
SETUP["sklearn+onnx"] = SETUP["sklearn"]

SAVE_MP = {
    "sklearn": "modelpack.save(model, out, input_example=ex)",
    "torch": "modelpack.save(model, out, input_example=ex)",
    "onnx": "modelpack.save(model, out, input_example=ex)",
    "sklearn+onnx": "modelpack.save(model, out, input_example=ex, also=('onnx',))",
}

# Raw framework saves. torch: the same export modelpack does (dynamic batch dim).
RAW_SAVE_IMPORTS = {
    "sklearn": "",
    "torch": "",
    "onnx": "",
    "sklearn+onnx": "import skl2onnx\nfrom skl2onnx.common.data_types import DoubleTensorType\n",
}
RAW_SAVE = {
    "sklearn": "with open(out + '.pkl', 'wb') as f:\n    cloudpickle.dump(model, f)",
    "torch": (
        "prog = torch.export.export(model, (torch.from_numpy(ex),),\n"
        "    dynamic_shapes=({0: torch.export.Dim('batch')},))\n"
        "torch.export.save(prog, out + '.pt2')"
    ),
    "onnx": "onnx.save(model, out + '.onnx')",
    "sklearn+onnx": (
        "with open(out + '.pkl', 'wb') as f:\n    cloudpickle.dump(model, f)\n"
        "p = skl2onnx.to_onnx(model, initial_types=[('input', DoubleTensorType([None, 20]))],\n"
        "    target_opset={'': 17, 'ai.onnx.ml': 3},\n"
        "    options={id(model): {'zipmap': False}})\n"
        "import onnx\nonnx.save(p, out + '.onnx')"
    ),
}


def child_save_code(kind: str, which: str, work: Path, onnx_dtype: str) -> str:
    out = str(work / "saves" / f"{which}-{kind}-{uuid.uuid4().hex}")
    head = f"W = {str(work)!r}\nONNX_DTYPE = {onnx_dtype!r}\nout = {out!r}\n"
    if which == "modelpack":
        body = ("import modelpack\n" + SETUP[kind] + "import time\nt0 = time.perf_counter()\n"
                + SAVE_MP[kind] + "\n")  # fmt: skip
    else:
        body = (SETUP[kind] + RAW_SAVE_IMPORTS[kind] + "import time\nt0 = time.perf_counter()\n"
                + RAW_SAVE[kind] + "\n")  # fmt: skip
    return head + body + "print(f'T={time.perf_counter() - t0!r}')\n"


def child_load_code(kind: str, which: str, fx: dict) -> str:
    """Fresh-process load; the clock starts before any import."""
    if which == "modelpack":
        path = fx["torch_pack"] if kind == "torch" else fx["sk_pack"]
        flavor = {"sklearn": None, "torch": None, "onnx": "onnx"}[kind]
        body = f"import modelpack\npack = modelpack.load({str(path)!r}, flavor={flavor!r})\n"
    elif kind == "sklearn":
        pkl = fx["sk_pack"] / "model" / "model.pkl"
        body = (f"import cloudpickle, sklearn\nwith open({str(pkl)!r}, 'rb') as f:\n"
                f"    model = cloudpickle.load(f)\n")  # fmt: skip
    elif kind == "torch":
        body = f"import torch\nmodel = torch.export.load({str(fx['torch_file'])!r}).module()\n"
    else:
        body = (f"import onnxruntime as ort\nsess = ort.InferenceSession("
                f"{str(fx['onnx_file'])!r}, providers=['CPUExecutionProvider'])\n")  # fmt: skip
    return (
        "import time\nt0 = time.perf_counter()\n"
        + body
        + ("print(f'T={time.perf_counter() - t0!r}')\n")
    )


# ----------------------------------------------------------------------------- 1. import


def bench_import(runs: int, work: Path) -> dict:
    # This checkout is an editable install and PYTHONDONTWRITEBYTECODE may be set, so a fresh
    # interpreter may compile modelpack from source on every import, unlike an installed wheel
    # (whose .pyc files pip writes). The "bytecode cached" rows show the difference.
    cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cached["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    candidates = {
        "pass": ("pass", None),
        "import modelpack": ("import modelpack", None),
        "pass, bytecode cached": ("pass", cached),
        "import modelpack, bytecode cached": ("import modelpack", cached),
    }
    if importlib.util.find_spec("mlflow") is not None:
        try:
            run_child("import mlflow")
            candidates["import mlflow"] = ("import mlflow", None)
        except RuntimeError:
            pass
    times: dict[str, list[float]] = {k: [] for k in candidates}
    for code, env in candidates.values():  # warm the OS file cache and the bytecode cache
        wall_seconds(code, env)
    for _ in range(runs):
        for name, (code, env) in candidates.items():
            times[name].append(wall_seconds(code, env))
    res = {name: median(t) for name, t in times.items()}
    rows = []
    for name, (_, env) in candidates.items():
        shown = f'python -c "{name.split(",")[0]}"' + (" (bytecode cached)" if env else "")
        if name.startswith("pass"):
            rows.append([shown, ms(res[name]), "-", "-", "-"])
            continue
        net = res[name] - res["pass, bytecode cached" if env else "pass"]
        res[name + " (net)"] = net
        main = name == "import modelpack"
        target = f"<= {IMPORT_TARGET_S * 1e3:.0f} ms" if main else "-"
        ok = verdict(net <= IMPORT_TARGET_S) if main else "-"
        rows.append([shown, ms(res[name]), ms(net), target, ok])
    table(
        f"1. Import time (fresh interpreter, median of {runs})",
        ["command", "wall", "minus `pass`", "target", "result"],
        rows,
    )
    return {"runs": runs, **res}


# ----------------------------------------------------------------------------- 2. save


def bench_save(fx: dict, work: Path, fresh_runs: int, warm_runs: int) -> dict:
    import cloudpickle
    import onnx
    import skl2onnx
    import torch
    from skl2onnx.common.data_types import DoubleTensorType

    import modelpack

    (work / "saves").mkdir(exist_ok=True)
    kinds = ["sklearn", "torch", "onnx", "sklearn+onnx"]
    fresh: dict[tuple[str, str], list[float]] = {}
    for _ in range(fresh_runs):
        for kind in kinds:
            for which in ("modelpack", "raw"):
                code = child_save_code(kind, which, work, fx["onnx_dtype"])
                fresh.setdefault((kind, which), []).append(child_seconds(code))

    X, X32 = fx["X"], fx["X32"]
    Xo = X.astype(fx["onnx_dtype"])
    models = {"sklearn": (fx["rf"], X[:5]), "torch": (fx["mlp"], X32[:5]),
              "onnx": (fx["proto"], Xo[:5]), "sklearn+onnx": (fx["rf"], X[:5])}  # fmt: skip

    def mp_save(kind):
        model, ex = models[kind]
        out = work / "saves" / f"warm-{uuid.uuid4().hex}"
        also = ("onnx",) if kind == "sklearn+onnx" else ()
        modelpack.save(model, out, input_example=ex, also=also)

    def raw_save(kind):
        model, ex = models[kind]
        out = str(work / "saves" / f"rawwarm-{uuid.uuid4().hex}")
        if kind in ("sklearn", "sklearn+onnx"):
            with open(out + ".pkl", "wb") as f:
                cloudpickle.dump(model, f)
        if kind == "torch":
            prog = torch.export.export(
                model, (torch.from_numpy(ex),), dynamic_shapes=({0: torch.export.Dim("batch")},)
            )
            torch.export.save(prog, out + ".pt2")
        elif kind == "onnx":
            onnx.save(model, out + ".onnx")
        elif kind == "sklearn+onnx":
            p = skl2onnx.to_onnx(model, initial_types=[("input", DoubleTensorType([None, 20]))],
                                 target_opset={"": 17, "ai.onnx.ml": 3},
                                 options={id(model): {"zipmap": False}})  # fmt: skip
            onnx.save(p, out + ".onnx")

    warm: dict[tuple[str, str], list[float]] = {}
    for kind in kinds:
        mp_save(kind)
        raw_save(kind)  # warm-up
    for i in range(warm_runs):
        for kind in kinds:
            pair = [("modelpack", mp_save), ("raw", raw_save)]
            for which, fn in pair if i % 2 == 0 else pair[::-1]:
                t0 = time.perf_counter()
                fn(kind)
                warm.setdefault((kind, which), []).append(time.perf_counter() - t0)

    raw_names = {"sklearn": "cloudpickle.dump", "torch": "torch.export.export + save",
                 "onnx": "onnx.save",
                 "sklearn+onnx": "cloudpickle.dump + skl2onnx.to_onnx + onnx.save"}  # fmt: skip
    labels = {"sklearn": "sklearn (forest)", "torch": "torch (MLP, export)",
              "onnx": "onnx (ModelProto)",
              "sklearn+onnx": "sklearn + also=('onnx',)"}  # fmt: skip
    result: dict = {"fresh_runs": fresh_runs, "warm_runs": warm_runs}
    for mode, data in (("fresh process (first save)", fresh), ("warm, in process", warm)):
        rows = []
        for kind in kinds:
            m = median(data[(kind, "modelpack")])
            r = median(data[(kind, "raw")])
            target = "-" if kind == "sklearn+onnx" else f"<= {SAVE_TARGET_S * 1e3:.0f} ms"
            ok = "-" if kind == "sklearn+onnx" else verdict(m <= SAVE_TARGET_S)
            rows.append([labels[kind], ms(m), raw_names[kind], ms(r), f"{m / r:.1f}x",
                         ms(m - r), target, ok])  # fmt: skip
            result[f"{mode}/{kind}"] = {"modelpack": m, "raw": r}
        n = fresh_runs if data is fresh else warm_runs
        table(f"2. save with input_example + inferred requirements, {mode} (median of {n})",
              ["fixture", "modelpack.save", "raw save", "raw", "ratio", "overhead", "target",
               "result"], rows)  # fmt: skip
    return result


# ----------------------------------------------------------------------------- 3. load


def bench_load(fx: dict, runs: int) -> dict:
    kinds = ["sklearn", "torch", "onnx"]
    times: dict[tuple[str, str], list[float]] = {}
    for kind in kinds:  # warm the OS file cache
        for which in ("modelpack", "raw"):
            child_seconds(child_load_code(kind, which, fx))
    for i in range(runs):
        for kind in kinds:
            pair = ["modelpack", "raw"] if i % 2 == 0 else ["raw", "modelpack"]
            for which in pair:
                times.setdefault((kind, which), []).append(
                    child_seconds(child_load_code(kind, which, fx))
                )
    raw_names = {"sklearn": "import sklearn; cloudpickle.load",
                 "torch": "torch.export.load(p).module()",
                 "onnx": "ort.InferenceSession(p)"}  # fmt: skip
    rows, result = [], {"runs": runs}
    for kind in kinds:
        m = median(times[(kind, "modelpack")])
        r = median(times[(kind, "raw")])
        label = "onnx (flavor='onnx')" if kind == "onnx" else kind
        rows.append([label, ms(m), raw_names[kind], ms(r), f"{m / r:.2f}x", ms(m - r)])
        result[kind] = {"modelpack": m, "raw": r}
    table(f"3. load in a fresh process, imports included (median of {runs})",
          ["fixture", "import modelpack; load", "raw load", "raw", "ratio", "overhead"],
          rows)  # fmt: skip
    return result


# ----------------------------------------------------------------------------- 4. predict


EAGER = "torch vs eager nn.Module"


def interleaved(fa, fb, rounds: int, min_batch_s: float) -> tuple[float, float]:
    """Median over ``rounds`` of the per-call mean of a batch of calls, for each of two
    functions, alternating which runs first each round."""
    fa(), fb()
    t0 = time.perf_counter()
    fa()
    one = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, int(min_batch_s / one))
    ta, tb = [], []
    for i in range(rounds):
        order = ((fa, ta), (fb, tb)) if i % 2 == 0 else ((fb, tb), (fa, ta))
        for fn, out in order:
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            out.append((time.perf_counter() - t0) / inner)
    return median(ta), median(tb)


def bench_predict(fx: dict, rounds: int, min_batch_s: float) -> dict:
    import numpy as np
    import torch

    import modelpack

    X, X32 = fx["X"], fx["X32"]
    sk = modelpack.load(fx["sk_pack"])
    th = modelpack.load(fx["torch_pack"])
    ox = modelpack.load(fx["sk_pack"], flavor="onnx")
    rf, mod, sess = sk.unwrap(), th.unwrap(), ox.unwrap()
    in_name = sess.get_inputs()[0].name
    label = fx["onnx_output"]
    Xo = X.astype(fx["onnx_dtype"])

    def torch_native(x):
        with torch.inference_mode():
            return mod(torch.from_numpy(x)).numpy()

    eager = fx["mlp"]

    def torch_eager(x):
        with torch.inference_mode():
            return eager(torch.from_numpy(x)).numpy()

    cases = {
        # flavor: (pack, input to predict, native call on the same native object)
        "sklearn": (sk, X, lambda x: rf.predict(x)),
        "torch": (th, X32, torch_native),
        "onnx": (ox, X, lambda x: sess.run([label], {in_name: x})[0]),
        # Informational: against the original eager nn.Module instead of the loaded one.
        EAGER: (th, X32, torch_eager),
    }
    native_input = {"sklearn": X, "torch": X32, "onnx": Xo, EAGER: X32}
    # The outputs agree (checked once, not timed).
    for flavor, (pack, data, native) in cases.items():
        a = np.asarray(pack.predict(data[:50]))
        b = np.asarray(native(native_input[flavor][:50]))
        assert a.shape == b.shape and np.allclose(a, b), flavor

    rows, result = [], {"rounds": rounds}
    for flavor, (pack, data, native) in cases.items():
        for n in (1, 10000):
            x, xn = np.ascontiguousarray(data[:n]), np.ascontiguousarray(native_input[flavor][:n])
            t_pack, t_nat = interleaved(partial(pack.predict, x), partial(native, xn),
                                        rounds, min_batch_s)  # fmt: skip
            over = t_pack - t_nat
            pct = 100 * over / t_nat
            if flavor == EAGER:
                target, ok = "- (info)", "-"
            elif n == 1 and flavor in ("onnx", "torch"):
                target, ok = (
                    f"<= {PREDICT_1ROW_TARGET_US:.0f} us",
                    verdict(over * 1e6 <= PREDICT_1ROW_TARGET_US),
                )
            elif n == 10000:
                target, ok = (
                    f"<= {PREDICT_BIG_TARGET_PCT:.0f}%",
                    verdict(pct <= PREDICT_BIG_TARGET_PCT),
                )
            else:
                target, ok = "- (noise: ~ms native)", "-"
            rows.append([flavor, f"{n:,}", us(t_nat), us(t_pack), f"{over * 1e6:+.1f}",
                         f"{t_pack / t_nat:.3f}x", f"{pct:+.1f}%", target, ok])  # fmt: skip
            result[f"{flavor}/{n}"] = {"native": t_nat, "modelpack": t_pack}
    table(f"4. predict overhead over the native call (median of {rounds} interleaved batches)",
          ["flavor", "rows", "native us/call", "pack.predict us/call", "overhead us", "ratio",
           "overhead %", "target", "result"], rows)  # fmt: skip
    return result


# ----------------------------------------------------------------------------- main


def versions() -> dict:
    import numpy
    import onnx
    import onnxruntime
    import sklearn
    import torch

    import modelpack

    return {"python": platform.python_version(), "numpy": numpy.__version__,
            "scikit-learn": sklearn.__version__, "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__,
            "modelpack": modelpack.__version__, "cpus": os.cpu_count(),
            "machine": platform.machine(), "platform": platform.platform()}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: fewer repeats")
    ap.add_argument("--json", help="also write the medians to this JSON file")
    ap.add_argument(
        "--only",
        nargs="+",
        choices=["import", "save", "load", "predict"],
        help="run only these sections",
    )
    args = ap.parse_args()
    if args.quick:
        n_import, n_save_fresh, n_save_warm, n_load, rounds, batch = 5, 1, 3, 2, 7, 0.01
    else:
        n_import, n_save_fresh, n_save_warm, n_load, rounds, batch = 21, 7, 15, 7, 41, 0.03
    sections = set(args.only or ["import", "save", "load", "predict"])
    start = time.perf_counter()
    info = versions()
    print("modelpack package-format benchmark (issue 2)" + (" [quick]" if args.quick else ""))
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    results: dict = {"versions": info, "quick": args.quick}
    with tempfile.TemporaryDirectory(prefix="bench_format_") as tmp:
        work = Path(tmp)
        if "import" in sections:
            results["import"] = bench_import(n_import, work)
        if sections - {"import"}:
            t0 = time.perf_counter()
            fx = build_fixtures(work)
            print(f"\n(fixtures built in {time.perf_counter() - t0:.1f} s; torch format "
                  f"{fx['torch_format']!r}, ONNX input {fx['onnx_input']!r} {fx['onnx_dtype']}, "
                  f"output {fx['onnx_output']!r})")  # fmt: skip
            if "save" in sections:
                results["save"] = bench_save(fx, work, n_save_fresh, n_save_warm)
            if "load" in sections:
                results["load"] = bench_load(fx, n_load)
            if "predict" in sections:
                results["predict"] = bench_predict(fx, rounds, batch)
    print(f"\ntotal benchmark time: {time.perf_counter() - start:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
