"""modelpack runs / models / db through main(argv), on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from modelpack.cli import main
from modelpack.uris import redact

SECRET_URL = "postgresql://postgres:SECRET@127.0.0.1:1/x"


@pytest.fixture
def world(client, forest, xy, monkeypatch, tmp_path):
    """Two experiments, four runs (one deleted, one holding a model) and 'Churn' v1, v2."""
    monkeypatch.setenv("MODELPACK_USER", "alice")
    monkeypatch.setenv("MODELPACK_CACHE_DIR", str(tmp_path / "cache"))
    X, _ = xy
    a = client.create_experiment("exp-a")
    b = client.create_experiment("exp-b")
    runs = {}
    for experiment, name, acc, x in (
        (a, "best", 0.95, "1"),
        (a, "worse", 0.5, "2"),
        (b, "other", 0.7, "3"),
        (a, "gone", 0.99, "4"),
    ):
        run = client.create_run(experiment, run_name=name, tags={"team": "risk"})
        run_id = run.info.run_id
        client.log_batch(run_id, metrics=[("acc", acc, None, 0)], params={"x": x})
        if name == "best":
            client.log_metric(run_id, "loss", 0.25, step=1)
            client.log_model(run_id, forest, "model", input_example=X[:3])
        client.set_terminated(run_id)
        runs[name] = run_id
        time.sleep(0.003)  # distinct start times, so "newest first" is one order
    client.delete_run(runs["gone"])
    uri = f"runs:/{runs['best']}/model"
    client.register_model(uri, "Churn", description="first cut", tags={"team": "risk"})
    client.register_model(uri, "Churn")
    return SimpleNamespace(client=client, runs=runs, uri=uri)


@pytest.fixture
def cli(client, capsys):
    """``cli(*argv)`` -> (exit code, stdout, stderr), pointed at the test's store."""

    def run(*argv: str, store: bool = True) -> tuple[int, str, str]:
        options = ["--tracking-uri", client.tracking_uri, "--artifact-root", client.artifact_root]
        code = main([*argv, *(options if store else [])])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _names(out: str, names: tuple[str, ...]) -> list[str]:
    """The run names in the order the table printed them."""
    return [w for line in out.splitlines() for w in line.split()[1:2] if w in names]


# ---------------------------------------------------------------------------- runs


def test_runs_list_newest_first_with_views_and_json(world, cli):
    code, out, _ = cli("runs", "list")
    assert code == 0
    header = out.splitlines()[0].split()
    assert header[:3] == ["run_id", "name", "experiment"] and "acc" in header
    assert _names(out, ("best", "worse", "other", "gone")) == ["other", "worse", "best"]
    best = next(line for line in out.splitlines() if world.runs["best"] in line)
    assert "exp-a" in best and "FINISHED" in best and "0.95" in best and "0.25" in best

    code, out, _ = cli("runs", "list", "--experiment", "exp-b")
    assert code == 0 and _names(out, ("best", "worse", "other")) == ["other"]
    assert "experiment" not in out.splitlines()[0]  # one experiment: no column for it
    code, out, _ = cli("runs", "list", "--deleted")
    assert "gone" in out and "FINISHED (deleted)" in out and "best" not in out
    code, out, _ = cli("runs", "list", "--all", "--max-results", "2")
    assert _names(out, ("gone", "other")) == ["gone", "other"]
    assert "first 2 runs" in out

    code, out, _ = cli("runs", "list", "--experiment", "exp-a", "--json")
    data = json.loads(out)
    assert [r["info"]["run_name"] for r in data] == ["worse", "best"]
    assert data[1]["data"]["metrics"] == {"acc": 0.95, "loss": 0.25}
    assert data[1]["data"]["params"] == {"x": "1"} and data[1]["info"]["user_id"] == "alice"

    code, _, err = cli("runs", "list", "--experiment", "nope")
    assert code == 1 and err == "error: No experiment named 'nope'.\n"


def test_runs_search_filter_order_and_pages(world, cli):
    query = "metrics.acc > 0.9 OR params.x = '3'"
    code, out, _ = cli("runs", "search", "--filter", query, "--order-by", "metrics.acc DESC")
    assert code == 0 and _names(out, ("best", "worse", "other")) == ["best", "other"]
    assert "next page" not in out

    code, out, _ = cli(
        "runs",
        "search",
        "--filter",
        "metrics.acc >= 0.5",
        "--order-by",
        "metrics.acc",
        "--max-results",
        "2",
    )
    assert _names(out, ("best", "worse", "other")) == ["worse", "other"]
    assert out.splitlines()[0].split()[-1] == "acc"  # the ranked metric gets a column
    token = out.rsplit("next page: --page-token ", 1)[1].strip()
    code, out, _ = cli(
        "runs", "search", "--filter", "metrics.acc >= 0.5", "--order-by", "metrics.acc",
        "--max-results", "2", "--page-token", token, "--json",
    )  # fmt: skip
    data = json.loads(out)
    assert [r["info"]["run_name"] for r in data["runs"]] == ["best"]
    assert data["next_page_token"] is None

    code, out, _ = cli("runs", "search", "--filter", "tags.team = 'nobody'")
    assert code == 0 and out == "No runs match.\n"

    code, out, err = cli("runs", "search", "--filter", "metrics.acc >> 1")
    assert code == 1 and out == ""
    assert err.startswith("error: Malformed filter at position 13")
    assert err.endswith("  metrics.acc >> 1\n               ^\n")
    code, _, err = cli("runs", "search", "--page-token", "garbage")
    assert code == 1 and "Invalid page_token 'garbage'" in err


def test_runs_show_text_json_and_unknown(world, cli, tracking_env, monkeypatch, tmp_path):
    monkeypatch.setenv("MODELPACK_ARTIFACT_ROOT", world.client.artifact_root)
    best = world.runs["best"]
    # No --tracking-uri: MODELPACK_TRACKING_URI (tracking_env) names the store.
    code, out, _ = cli("runs", "show", best, store=False)
    assert code == 0
    assert f"run_id:      {best}" in out and "name:        best" in out
    assert "experiment:  exp-a (" in out and "status:      FINISHED" in out
    assert "params:\n  x  1\n" in out and "  acc   0.95\n  loss  0.25\n" in out
    assert "tags:\n  team  risk\n" in out
    assert "  model/\n" in out and "model/modelpack.yaml" in out and "model/model/" in out

    code, out, _ = cli("runs", "show", best, "--json")
    data = json.loads(out)
    assert data["info"]["run_id"] == best and data["data"]["tags"] == {"team": "risk"}
    files = {f["path"]: f for f in data["artifacts"]}
    assert files["model"]["is_dir"] and files["model/modelpack.yaml"]["size"] > 0
    assert data["artifacts_truncated"] is False
    monkeypatch.setattr("modelpack.cli.runs.ARTIFACT_LIMIT", 2)
    code, out, _ = cli("runs", "show", best)
    assert out.endswith(
        "artifact files:\n  model/\n  model/MLmodel  "
        + str(files["model/MLmodel"]["size"])
        + "\n  ... (the first 2 entries)\n"
    )

    code, out, err = cli("runs", "show", "0" * 32)
    assert code == 1 and out == "" and err == f"error: No run with id '{'0' * 32}'.\n"


# ---------------------------------------------------------------------------- models


def test_models_list_show_versions(world, cli):
    world.client.transition_model_version_stage("Churn", 1, "Staging")
    world.client.set_registered_model_alias("Churn", "champion", 1)
    world.client.register_model(world.uri, "Fraud")

    code, out, _ = cli("models", "list")
    assert code == 0
    assert out.splitlines()[0].split() == [
        "name", "latest", "staging", "production", "aliases", "updated", "(UTC)"
    ]  # fmt: skip
    churn = out.splitlines()[1].split()
    assert churn[:5] == ["Churn", "2", "1", "-", "champion@1"]
    code, out, _ = cli("models", "list", "--filter", "name LIKE 'Fr%'", "--json")
    assert [m["name"] for m in json.loads(out)] == ["Fraud"]

    code, out, _ = cli("models", "show", "Churn")
    assert code == 0 and "name:         Churn" in out
    assert "aliases:\n  champion  version 1\n" in out
    stages = out.split("latest version per stage:\n", 1)[1].splitlines()
    assert stages[0].split()[:3] == ["stage", "version", "aliases"]
    assert [line.split()[:2] for line in stages[1:]] == [["None", "2"], ["Staging", "1"]]
    code, out, _ = cli("models", "show", "Churn", "--json")
    data = json.loads(out)
    assert data["aliases"] == {"champion": 1}
    assert [(v["stage"], v["version"]) for v in data["latest_versions"]] == [
        ("None", 2), ("Staging", 1)
    ]  # fmt: skip

    code, out, _ = cli("models", "versions", "Churn")
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [r[:3] for r in rows] == [["2", "None", "-"], ["1", "Staging", "champion"]]
    assert out.splitlines()[2].endswith("first cut") and "alice" in out
    code, out, _ = cli("models", "versions", "--filter", "stage = 'None'", "--json")
    assert [(v["name"], v["version"]) for v in json.loads(out)] == [("Churn", 2), ("Fraud", 1)]
    code, out, _ = cli("models", "versions", "Churn", "--filter", "tags.team = 'risk'", "--json")
    data = json.loads(out)
    assert [v["version"] for v in data] == [1] and data[0]["description"] == "first cut"

    for argv in (("show", "Nope"), ("versions", "Nope"), ("history", "Nope")):
        code, out, err = cli("models", *argv)
        assert code == 1 and out == "" and err.startswith("error: Registered model 'Nope' does not")
    code, out, _ = cli("models", "list", "--max-results", "1")
    assert out.splitlines()[-1] == "(first 1 models; raise --max-results for more)"
    code, out, _ = cli("models", "versions", "--filter", "name != 'x'", "--max-results", "2")
    assert out.splitlines()[-1] == "(first 2 versions; raise --max-results for more)"
    code, out, _ = cli("models", "versions", "Churn", "--filter", "stage = 'Archived'")
    assert code == 0 and out == "No versions match.\n"
    world.client.create_registered_model("Empty")
    code, out, _ = cli("models", "versions", "Empty")
    assert code == 0 and out == "'Empty' has no versions.\n"

    code, _, err = cli("models", "versions")
    assert code == 1 and "Give a model NAME, or --filter" in err
    code, _, err = cli("models", "list", "--filter", "name = ")
    assert code == 1 and "^" in err and "position 7" in err


def test_models_register_transition_alias_history(world, cli):
    code, out, _ = cli(
        "models", "register", world.uri, "Churn", "--description", "third", "--tag", "a=1",
        "--tag", "b=x=y",
    )  # fmt: skip
    assert code == 0 and out == "Registered 'Churn' version 3 (models:/Churn/3).\n"
    version = world.client.get_model_version("Churn", 3)
    assert version.tags == {"a": "1", "b": "x=y"} and version.description == "third"
    code, out, _ = cli("models", "register", world.uri, "Fresh", "--json")
    assert json.loads(out)["name"] == "Fresh" and json.loads(out)["version"] == 1
    code, _, err = cli("models", "register", world.uri, "Churn", "--tag", "novalue")
    assert code == 1 and "--tag 'novalue': expected KEY=VALUE" in err
    code, _, err = cli("models", "register", "runs:/" + "0" * 32 + "/model", "Churn")
    assert code == 1 and err.startswith("error: No run with id")

    code, out, _ = cli("models", "transition", "Churn", "1", "production", "--comment", "ship")
    assert out == "'Churn' version 1: None -> Production\n"
    code, out, _ = cli("models", "transition", "Churn", "2", "Production", "--archive-existing")
    assert out == "'Churn' version 2: None -> Production\narchived: version 1 (was Production)\n"
    assert world.client.get_model_version("Churn", 1).stage == "Archived"
    code, out, _ = cli("models", "transition", "Churn", "3", "staging", "--json")
    assert json.loads(out)["stage"] == "Staging"
    code, out, err = cli("models", "transition", "Churn", "3", "Prod")
    assert code == 1 and out == ""
    assert err == "error: Unknown stage 'Prod'. Stages: None, Staging, Production, Archived.\n"
    code, _, err = cli("models", "transition", "Churn", "9", "Staging")
    assert code == 1 and "has no version 9. Versions: 1 (Archived), 2 (Production)" in err

    code, out, _ = cli("models", "alias", "Churn", "champion", "2")
    assert code == 0 and out == "Churn@champion -> version 2 (Production)\n"
    code, out, _ = cli("models", "alias", "Churn", "champion", "3", "--json")
    assert json.loads(out)["version"] == 3 and json.loads(out)["aliases"] == ["champion"]
    code, out, _ = cli("models", "alias", "Churn", "champion", "--delete")
    assert out == "Deleted alias 'champion' of 'Churn' (was version 3).\n"
    code, _, err = cli("models", "alias", "Churn", "champion", "--delete")
    assert code == 1 and "has no alias 'champion'" in err
    code, _, err = cli("models", "alias", "Churn", "champion")
    assert code == 1 and "Give the VERSION to point alias 'champion' at, or --delete" in err
    code, _, err = cli("models", "alias", "Churn", "latest", "1")
    assert code == 1 and "Alias 'latest' is reserved" in err

    code, out, _ = cli("models", "history", "Churn")
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["when", "(UTC)", "who", "version"]
    assert all(" alice " in line for line in lines[1:])
    moves = [line.split("alice", 1)[1].split() for line in lines[1:]]
    assert moves[3] == ["1", "stage", "None", "->", "Production", "ship"]
    assert moves[4][:6] == ["1", "stage", "Production", "->", "Archived", "archived:"]
    assert moves[-1] == ["3", "delete_alias", "champion@3", "->", "-"]
    code, out, _ = cli("models", "history", "Churn", "--json")
    data = json.loads(out)
    assert [r["action"] for r in data][:3] == ["create", "create", "create"]
    assert data[3]["comment"] == "ship" and data[3]["to_value"] == "Production"


def test_models_delete_refuses_production_without_force(world, cli):
    client = world.client
    client.transition_model_version_stage("Churn", 2, "Production")
    storage = client.get_model_version("Churn", 2).storage_location
    code, out, err = cli("models", "delete", "Churn", "--version", "2")
    assert code == 1 and out == ""
    assert err == (
        "error: Refusing to delete version 2 of 'Churn': it is in stage 'Production'. "
        "Move the stage or alias first, or pass --force.\n"
    )
    code, _, err = cli("models", "delete", "Churn")
    assert code == 1 and "it is in stage 'Production'" in err
    assert [v.version for v in client.search_model_versions("name = 'Churn'")] == [2, 1]

    code, out, _ = cli("models", "delete", "Churn", "--version", "2", "--force")
    assert code == 0 and out == "Deleted version 2 of 'Churn'.\n"
    assert not Path(storage).exists()
    code, _, err = cli("models", "delete", "Churn", "--version", "2")
    assert code == 1 and "has no version 2. Versions: 1 (None)" in err
    code, out, _ = cli("models", "delete", "Churn", "--json")
    assert json.loads(out) == {"name": "Churn", "version": None, "deleted": True}
    code, _, err = cli("models", "show", "Churn")
    assert code == 1 and "does not exist" in err
    code, out, _ = cli("models", "history", "Churn")
    assert code == 0 and "delete" in out.splitlines()[-1]
    code, _, err = cli("models", "delete", "Churn")
    assert code == 1 and err == "error: Registered model 'Churn' does not exist.\n"


# ---------------------------------------------------------------------------- db


def test_db_upgrade_and_current(store_url, cli, tmp_path):
    from modelpack.store import engines

    head = engines.head_revision()
    shown = redact(store_url)
    if store_url.startswith("sqlite:"):
        code, out, err = cli("db", "current", store_url, store=False)
        assert code == 1 and err.startswith("error: No database at ")
        assert "modelpack db upgrade" in err
    else:  # a fresh schema: the database is there, the tables are not
        code, out, _ = cli("db", "current", store_url, store=False)
        assert code == 0 and out.startswith(f"{shown}: no schema yet (head is {head})")
    code, out, _ = cli("db", "upgrade", "--tracking-uri", store_url, store=False)
    assert code == 0 and out == f"{shown}: upgraded (empty) -> {head} (head)\n"
    code, out, _ = cli("db", "upgrade", store_url, store=False)
    assert out == f"{shown}: already at revision {head} (head)\n"
    code, out, _ = cli("db", "current", store_url, store=False)
    assert code == 0 and out == f"{shown}: {head} (head)\n"
    code, out, _ = cli("db", "current", store_url, "--json", store=False)
    assert json.loads(out) == {"url": shown, "revision": head, "head": head, "up_to_date": True}
    assert cli("runs", "list")[1] == "No runs.\n"
    assert cli("models", "list")[1] == "No registered models.\n"

    engine = engines.make_engine(store_url)
    with engine.begin() as conn:  # pretend an older modelpack made this database
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0000'")
    engine.dispose()
    code, out, _ = cli("db", "current", store_url, store=False)
    assert out == f"{shown}: 0000, behind head {head}; migrate with `modelpack db upgrade`\n"


def test_broken_database_is_an_error_not_a_traceback(tmp_path, capsys):
    path = tmp_path / "broken.db"
    path.write_bytes(b"this is not an SQLite file" * 100)
    assert main(["runs", "list", "--tracking-uri", f"sqlite:///{path}"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: Cannot open the tracking store at sqlite:///{path}: ")
    assert "file is not a database" in err


@pytest.mark.parametrize(
    "argv",
    [
        ("runs", "list", "--tracking-uri", SECRET_URL),
        ("runs", "show", "abc", "--tracking-uri", SECRET_URL),
        ("models", "list", "--tracking-uri", SECRET_URL),
        ("db", "current", SECRET_URL),
        ("db", "upgrade", SECRET_URL),
    ],
)
def test_password_never_printed(argv, capsys):
    assert main(list(argv)) == 1
    out, err = capsys.readouterr()
    assert "SECRET" not in out + err
    assert err.startswith("error: Cannot open the tracking store at ")
    assert "postgres:***@127.0.0.1:1/x" in err


def test_group_without_command_prints_usage(capsys):
    for group in ("runs", "models", "db"):
        assert main([group]) == 2
        assert f"usage: modelpack {group}" in capsys.readouterr().out
    assert main(["db", "current", "mysql://u:SECRET@h/db"]) == 1
    err = capsys.readouterr().err
    assert "Unsupported store URL" in err and "SECRET" not in err
