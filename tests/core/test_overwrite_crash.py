"""save(overwrite=True) killed at any file-system call, and read while it runs: the path
always holds the whole old package or the whole new one (DESIGN.md §9 rule 7)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import modelpack

KILL_EVERY_CALL = textwrap.dedent("""
    import builtins, io, json, os, shutil, signal, sys
    from pathlib import Path

    import numpy as np

    import modelpack
    from modelpack import atomic

    mode, work = sys.argv[1], Path(sys.argv[2])
    if mode == "rename":  # a system or file system without an atomic exchange
        atomic.exchange = lambda a, b: False
    pristine, target = work / "pristine" / "pkg", work / "out" / "pkg"
    old_id = modelpack.save(lambda x: x + 1, pristine, flavor="python").model_id
    new = lambda x: x * 2
    modelpack.save(new, work / "warm" / "pkg", flavor="python")  # imports done before counting

    calls, die_at = [0], [0]

    def traced(fn):
        def wrapper(*args, **kwargs):
            if die_at[0]:
                calls[0] += 1
                if calls[0] == die_at[0]:
                    os.kill(os.getpid(), signal.SIGKILL)
            return fn(*args, **kwargs)
        return wrapper

    for mod, names in [
        (os, ["rename", "replace", "mkdir", "rmdir", "unlink", "open", "fsync", "scandir"]),
        (builtins, ["open"]), (io, ["open"]),
        (shutil, ["rmtree", "copy2", "copyfile", "copytree"]),
        (atomic, ["rename_exchange"]),
    ]:
        for name in names:
            setattr(mod, name, traced(getattr(mod, name)))

    def state():
        try:
            pack = modelpack.load(target)
            modelpack.verify(target)
            y = pack.predict(np.array([3.0])).tolist()
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        if pack.model_id == old_id and y == [4.0]:
            return "old"
        return "new" if pack.model_id != old_id and y == [6.0] else f"wrong: {y}"

    results = []
    for n in range(1, 10_000):
        shutil.rmtree(work / "out", ignore_errors=True)
        shutil.copytree(pristine, target)
        pid = os.fork()
        if pid == 0:
            die_at[0] = n
            try:
                modelpack.save(new, target, flavor="python", overwrite=True)
            except BaseException:
                os._exit(3)
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status)
        left = sorted(os.listdir(work / "out"))
        seen = state()
        modelpack.save(new, target, flavor="python", overwrite=True)  # the next save cleans up
        results.append({"n": n, "killed": killed, "status": status, "state": seen,
                        "left": left, "after": sorted(os.listdir(work / "out"))})
        if not killed:
            break
    print(json.dumps(results))
""")


@pytest.mark.parametrize("mode", ["exchange", "rename"])
def test_overwrite_killed_at_every_file_system_call_leaves_old_or_new(tmp_path, mode):
    script = tmp_path / "kill.py"
    script.write_text(KILL_EVERY_CALL)
    out = subprocess.run(
        [sys.executable, str(script), mode, str(tmp_path / "work")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)
    *killed, finished = results
    assert len(killed) > 20, "the tracer saw too few calls to mean anything"
    assert all(r["killed"] for r in killed) and finished["status"] == 0
    states = [r["state"] for r in results]
    assert set(states) == {"old", "new"}, [r for r in results if r["state"] not in ("old", "new")]
    # Old until the one call that swaps the new package in, new from then on.
    first_new = states.index("new")
    assert states == ["old"] * first_new + ["new"] * (len(states) - first_new)
    # Whatever a kill left beside the package, the next save removed.
    assert [r for r in results if r["after"] != ["pkg"]] == []
    assert any(len(r["left"]) > 1 for r in killed)


WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path

    import modelpack

    target, stop = Path(sys.argv[1]), Path(sys.argv[2])
    models = [lambda x: x + 1, lambda x: x * 2]
    deadline, i = time.monotonic() + 30, 0
    while not stop.exists() and time.monotonic() < deadline:
        modelpack.save(models[i % 2], target, flavor="python", overwrite=True)
        i += 1
    print(i)
""")


def test_readers_see_the_old_or_the_new_package_while_it_is_overwritten(tmp_path):
    target, stop = tmp_path / "pkg", tmp_path / "stop"
    modelpack.save(lambda x: x + 1, target, flavor="python")
    (tmp_path / "writer.py").write_text(WRITER)
    writer = subprocess.Popen(
        [sys.executable, str(tmp_path / "writer.py"), str(target), str(stop)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    failures, ids, reads = [], set(), 0
    try:
        time.sleep(0.5)  # the writer is importing; let it start saving
        deadline = time.monotonic() + 5
        while reads < 200 and time.monotonic() < deadline:
            reads += 1
            try:
                pack = modelpack.load(target)
                y = pack.predict(np.array([3.0])).tolist()
                assert y in ([4.0], [6.0]), y
                ids.add(pack.model_id)
            except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
                failures.append(f"{type(exc).__name__}: {exc}")
    finally:
        stop.touch()
        saves, err = writer.communicate(timeout=60)
    assert writer.returncode == 0, err
    assert failures == []
    assert reads >= 50 and len(ids) >= 3, (reads, ids, saves)
