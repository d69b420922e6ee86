"""The fluent API (start_run, log_*, log_model, register_model) against each store backend."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import modelpack
from modelpack.errors import InvalidArgument


def test_run_context_manager_logs_everything(tracking_env, forest, xy, tmp_path):
    modelpack.set_experiment("churn")
    with modelpack.start_run(run_name="baseline", tags={"team": "risk"}) as run:
        assert modelpack.active_run() is run
        modelpack.log_params({"n_estimators": 8, "max_depth": 4})
        modelpack.log_param("criterion", "gini")
        modelpack.log_metric("accuracy", 0.91, step=0)
        modelpack.log_metrics({"accuracy": 0.93, "f1": 0.9}, step=1)
        modelpack.set_tags({"stage": "dev"})
        (tmp_path / "cm.txt").write_text("confusion")
        modelpack.log_artifact(tmp_path / "cm.txt", "reports")
        info = modelpack.log_model(forest, "model", input_example=xy[0][:3],
                                   registered_model_name="Churn")  # fmt: skip
    assert modelpack.active_run() is None
    client = modelpack.Client()
    got = client.get_run(run.info.run_id)
    assert got.info.status == "FINISHED" and got.info.end_time is not None
    assert got.data.params == {"n_estimators": "8", "max_depth": "4", "criterion": "gini"}
    assert got.data.metrics == {"accuracy": 0.93, "f1": 0.9}
    tags = got.data.tags
    assert tags["team"] == "risk" and tags["stage"] == "dev"
    assert tags["modelpack.user"]
    # pytest is __main__ here, wherever it is installed: the source is the caller, this file.
    assert tags["modelpack.source.name"] == str(Path(__file__).resolve())
    assert tags.get("modelpack.source.git.commit") == _git_head(Path(__file__).parent)
    assert client.get_experiment(got.info.experiment_id).name == "churn"
    assert info.model_uri == f"runs:/{run.info.run_id}/model"
    assert info.registered_model_version.version == 1 and info.model_id
    pack = modelpack.load(info.model_uri)
    np.testing.assert_array_equal(pack.predict(xy[0]), forest.predict(xy[0]))
    assert [f.path for f in client.list_artifacts(run.info.run_id, "reports")] == [
        "reports/cm.txt"]  # fmt: skip


def _git_head(folder: Path) -> str | None:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


TRAIN = """
import modelpack
with modelpack.start_run() as run:
    pass
tags = modelpack.Client().get_run(run.info.run_id).data.tags
print(tags["modelpack.source.name"], tags.get("modelpack.source.git.commit"))
"""


@pytest.mark.parametrize("how", ["script", "exec"])
def test_source_and_commit_come_from_the_users_script(tmp_path, how):
    repo = tmp_path / "project"
    repo.mkdir()
    (repo / "train.py").write_text(TRAIN)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run(["git", "add", "train.py"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "train"], cwd=repo, check=True)
    elsewhere = tmp_path / "elsewhere"  # the working directory is not the repository
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELPACK_")}
    env["MODELPACK_TRACKING_URI"] = f"sqlite:///{tmp_path / 'store' / 'modelpack.db'}"
    script = str(repo / "train.py")
    # "exec": a runner is __main__ and runs the script's code, as a notebook or an IDE does.
    run = f"p = {script!r}; exec(compile(open(p).read(), p, 'exec'))"
    argv = [script] if how == "script" else ["-c", run]
    out = subprocess.run([sys.executable, *argv], cwd=elsewhere, env=env,
                         capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    name, commit = out.stdout.split()
    assert name == str((repo / "train.py").resolve())
    assert commit == _git_head(repo) and len(commit) == 40


def test_failed_block_marks_the_run_failed(tracking_env):
    with pytest.raises(ZeroDivisionError):
        with modelpack.start_run() as run:
            1 / 0  # noqa: B018
    assert modelpack.Client().get_run(run.info.run_id).info.status == "FAILED"
    assert modelpack.active_run() is None


def test_nested_runs(tracking_env):
    with modelpack.start_run(run_name="parent") as parent:
        with pytest.raises(InvalidArgument, match="is already active.*nested=True"):
            modelpack.start_run()
        with modelpack.start_run(run_name="child", nested=True) as child:
            modelpack.log_metric("x", 1.0)
        assert modelpack.active_run() is parent
    got = modelpack.Client().get_run(child.info.run_id)
    assert got.info.parent_run_id == parent.info.run_id
    assert got.data.tags["modelpack.parentRunId"] == parent.info.run_id
    assert got.data.metrics == {"x": 1.0}


def test_logging_without_a_run_starts_one_and_end_run_ends_it(tracking_env):
    modelpack.log_metric("x", 1.0)
    run = modelpack.active_run()
    assert run is not None and run.data.metrics == {"x": 1.0}
    modelpack.end_run()
    assert modelpack.active_run() is None
    assert modelpack.get_run(run.info.run_id).info.status == "FINISHED"


def test_end_run_then_logging_to_it_through_the_client_is_refused(tracking_env):
    run = modelpack.start_run()
    modelpack.end_run()
    with pytest.raises(InvalidArgument, match="has ended"):
        modelpack.Client().log_metric(run.info.run_id, "x", 1.0)


def test_search_runs_fluent_and_register_model(tracking_env, forest, xy):
    modelpack.set_experiment("search")
    for acc in (0.5, 0.95):
        with modelpack.start_run():
            modelpack.log_metric("acc", acc)
            info = modelpack.log_model(forest, "model", input_example=xy[0][:2])
    runs = modelpack.search_runs(filter_string="metrics.acc > 0.9", output_format="list")
    assert [r.data.metrics["acc"] for r in runs] == [0.95]
    mv = modelpack.register_model(info.model_uri, "Search")
    assert mv.version == 1 and mv.run_id == info.run_id


def test_threads_log_into_their_own_runs(tracking_env):
    results = {}

    def work(i):
        with modelpack.start_run(run_name=f"t{i}") as run:
            for step in range(20):
                modelpack.log_metric(f"m{i}", i * 100 + step, step=step)
        results[i] = run.info.run_id

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    client = modelpack.Client()
    for i, run_id in results.items():
        run = client.get_run(run_id)
        assert list(run.data.metrics) == [f"m{i}"]
        assert [m.value for m in client.get_metric_history(run_id, f"m{i}")] == [
            i * 100 + s for s in range(20)]  # fmt: skip


def test_asyncio_tasks_have_their_own_active_run(tracking_env):
    async def task(i):
        with modelpack.start_run(run_name=f"a{i}") as run:
            for step in range(5):
                modelpack.log_metric("v", i, step=step)
                await asyncio.sleep(0)
        return run.info.run_id

    async def main():
        return await asyncio.gather(*(task(i) for i in range(3)))

    ids = asyncio.run(main())
    client = modelpack.Client()
    for i, run_id in enumerate(ids):
        assert [m.value for m in client.get_metric_history(run_id, "v")] == [i] * 5


def test_set_tracking_uri(monkeypatch, tmp_path):
    monkeypatch.delenv("MODELPACK_TRACKING_URI", raising=False)
    monkeypatch.setenv("MODELPACK_ARTIFACT_ROOT", str(tmp_path / "a"))
    url = f"sqlite:///{tmp_path / 'other.db'}"
    modelpack.set_tracking_uri(url)
    try:
        assert modelpack.get_tracking_uri() == url
        with modelpack.start_run() as run:
            pass
        assert modelpack.Client(url).get_run(run.info.run_id).info.status == "FINISHED"
        with pytest.raises(InvalidArgument, match="Expected a tracking URI"):
            modelpack.set_tracking_uri("")
    finally:
        os.environ.pop("MODELPACK_TRACKING_URI", None)
        from modelpack.store import engines

        engines.dispose(url)
