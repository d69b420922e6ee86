"""Reliability of the tracking store under real concurrency and real crashes.

Worker processes are fresh interpreters (``python -c`` with a small script, the store URL and
artifact root as arguments) against the real SQLite file and the real PostgreSQL schema of the
``store_url`` fixture; threads and asyncio tasks exercise the fluent API's context-local
active run. Workers meet at file barriers so that their writes really overlap, and every
wait, in the test and in the workers, has a deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

import modelpack
from modelpack import Client

WORKERS = 8
PER_WORKER = 25
STARTUP_S = 60  # the most a worker may take to import modelpack and open the store
RUN_S = 120  # the most a worker may take to do its part once started

# The barrier every worker script starts with: say "ready" with a file, then wait for "go".
_BARRIER = r"""
import os, sys, time

def barrier(ready, go):
    deadline = time.monotonic() + 60
    open(ready, "w").close()
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            sys.exit(f"no {go} within 60 s")
        time.sleep(0.0005)
"""

# Register ``count`` versions of the package at ``uri``, printing each version as it is made.
_REGISTER = (
    _BARRIER
    + r"""
from modelpack import Client

url, root, uri, name, count, ready, go = sys.argv[1:8]
client = Client(url, root)
client.store  # engine and schema before the barrier: the race is in the registrations
barrier(ready, go)
for _ in range(int(count)):
    print(client.register_model(uri, name).version, flush=True)
"""
)

# Log param p<i> = ``value`` to ``run_id`` for i < rounds, every round behind its own barrier,
# printing one JSON line per round: [error class or null, message].
_LOG_PARAMS = (
    _BARRIER
    + r"""
import json
from modelpack import Client

url, root, run_id, value, rounds, sync, me = sys.argv[1:8]
client = Client(url, root)
client.store
for i in range(int(rounds)):
    barrier(os.path.join(sync, f"ready-{i}-{me}"), os.path.join(sync, f"go-{i}"))
    try:
        client.log_param(run_id, f"p{i}", value, synchronous=True)
        result = [None, None]
    except Exception as exc:
        result = [f"{type(exc).__module__}.{type(exc).__qualname__}", str(exc)]
    print(json.dumps(result), flush=True)
"""
)


class Blob(modelpack.PythonModel):
    """A python-flavor model that carries a large artifact, so registering it copies a while."""

    def predict(self, data, params=None):
        return data


# ---------------------------------------------------------------------------- helpers


def _child_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["MODELPACK_CACHE_DIR"] = str(tmp / "cache")
    for key in ("MODELPACK_TRACKING_URI", "MODELPACK_ARTIFACT_ROOT"):
        env.pop(key, None)
    return env


@contextmanager
def _workers(tmp: Path, script: str, argv: Sequence[Sequence[object]]) -> Iterator[list]:
    """Start one worker per argument list; on the way out, kill and reap whatever is left."""
    procs: list[subprocess.Popen[str]] = []
    try:
        for args in argv:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-W", "error", "-c", script, *map(str, args)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    cwd=tmp,
                    env=_child_env(tmp),
                )
            )
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


def _await_files(paths: Sequence[Path], procs: Sequence[subprocess.Popen], timeout: float) -> None:
    """Wait until every path exists; fail early, with its stderr, if a worker died."""
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        for proc in procs:
            if proc.poll() is not None and proc.returncode != 0:
                _, err = proc.communicate()
                pytest.fail(f"worker {proc.pid} exited {proc.returncode} early:\n{err}")
        if time.monotonic() > deadline:
            missing = [p.name for p in paths if not p.exists()]
            pytest.fail(f"workers not ready within {timeout} s: {missing}")
        time.sleep(0.002)


def _finish(procs: Sequence[subprocess.Popen], timeout: float) -> list[str]:
    """Every worker's stdout, once all have exited 0 within ``timeout`` seconds in total."""
    deadline = time.monotonic() + timeout
    outputs = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker {proc.pid} still running after {timeout} s")
        assert proc.returncode == 0, f"worker {proc.pid} exited {proc.returncode}:\n{err}"
        outputs.append(out)
    return outputs


def _save_small(forest, xy, tmp_path: Path) -> Path:
    X, _ = xy
    package = tmp_path / "pkg"
    modelpack.save(forest, package, input_example=X[:2])
    return package


def _check_registry(client: Client, name: str, model_id: str) -> list:
    """The versions of ``name``, checked: numbered 1..N without gaps or duplicates, each with
    its own verified package of ``model_id`` at its storage location, each with one "create"
    record in the history."""
    versions = client.search_model_versions(f"name = '{name}'", max_results=1000)
    assert versions.token is None
    numbers = sorted(int(v.version) for v in versions)
    assert numbers == list(range(1, len(numbers) + 1)), f"gaps or duplicates: {numbers}"
    locations = [v.storage_location for v in versions]
    assert len(set(locations)) == len(locations), "two versions share a storage location"
    for v in versions:
        assert Path(v.storage_location).is_dir(), f"version {v.version}: no package"
        assert modelpack.verify(v.storage_location).model_id == model_id, v.version
    created = sorted(h.version for h in client.get_model_history(name) if h.action == "create")
    assert created == numbers
    return sorted(versions, key=lambda v: int(v.version))


def _registry_dirs(client: Client) -> set[str]:
    registry = Path(client.artifact_root, "registry")
    return {str(p) for p in registry.iterdir() if p.is_dir()} if registry.is_dir() else set()


# ---------------------------------------------------------------------------- 1. versions


@pytest.mark.slow
def test_concurrent_registrations_get_versions_1_to_n(store_url, client, forest, xy, tmp_path):
    """8 processes x 25 registrations of one name: versions 1..200, each exactly once."""
    package = _save_small(forest, xy, tmp_path)
    model_id = modelpack.verify(package).model_id
    assert client.search_registered_models() == []  # the schema exists before the race
    sync = tmp_path / "sync"
    sync.mkdir()
    argv = [
        (store_url, client.artifact_root, package, "Churn", PER_WORKER, sync / f"r{i}", sync / "go")
        for i in range(WORKERS)
    ]
    started = time.monotonic()
    with _workers(tmp_path, _REGISTER, argv) as procs:
        _await_files([sync / f"r{i}" for i in range(WORKERS)], procs, STARTUP_S)
        (sync / "go").touch()
        outputs = _finish(procs, RUN_S)
    elapsed = time.monotonic() - started

    total = WORKERS * PER_WORKER
    reported = [int(v) for out in outputs for v in out.split()]
    assert all(len(out.split()) == PER_WORKER for out in outputs)
    assert sorted(reported) == list(range(1, total + 1)), "a version was handed out twice"
    versions = _check_registry(client, "Churn", model_id)
    assert len(versions) == total
    # One copy per registration, none left behind by a retried allocation.
    assert _registry_dirs(client) == {v.storage_location for v in versions}
    print(f"{total} concurrent registrations on {store_url.split(':')[0]}: {elapsed:.1f} s")


# ---------------------------------------------------------------------------- 2. SIGKILL


@pytest.mark.slow
def test_sigkill_while_registering_leaves_the_store_consistent(
    store_url, client, forest, xy, tmp_path
):
    """Kill a registering process at a random moment: every version it left is whole."""
    package = _save_small(forest, xy, tmp_path)
    model_id = modelpack.verify(package).model_id
    assert client.search_registered_models() == []  # the schema exists before the worker
    seed = random.randrange(2**32)
    delay = random.Random(seed).uniform(0, 0.3)
    go = tmp_path / "go"
    go.touch()
    argv = [(store_url, client.artifact_root, package, "Churn", 100_000, tmp_path / "r", go)]
    with _workers(tmp_path, _REGISTER, argv) as (proc,):
        deadline = time.monotonic() + STARTUP_S
        while len(client.search_model_versions("name = 'Churn'")) < 3:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the worker registered nothing in time"
            time.sleep(0.01)
        time.sleep(delay)
        proc.kill()
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    versions = _check_registry(client, "Churn", model_id)
    n = len(versions)
    reported = [int(v) for v in out.split()]
    assert reported == list(range(1, len(reported) + 1))
    assert n in (len(reported), len(reported) + 1), (
        f"seed {seed}: the worker saw {len(reported)} versions, the store has {n}"
    )
    # At most the one copy the kill interrupted (before its row existed) is left over.
    assert len(_registry_dirs(client) - {v.storage_location for v in versions}) <= 1

    after = client.register_model(str(package), "Churn")
    assert after.version == n + 1, f"seed {seed}"
    assert modelpack.verify(after.storage_location).model_id == model_id


def _copy_in_flight(registry: Path, known: set[str]) -> list[Path]:
    """Temporary files of copies being written into new version folders right now."""
    if not registry.is_dir():
        return []
    found = []
    for folder in registry.iterdir():
        if str(folder) in known:
            continue
        for dirpath, _, filenames in os.walk(folder):
            found += [Path(dirpath, f) for f in filenames if f.startswith(".modelpack-tmp-")]
    return found


@pytest.mark.slow
def test_sigkill_during_the_package_copy_creates_no_version(
    store_url, client, forest, xy, tmp_path
):
    """The kill lands, for certain, while the package is being copied into registry storage:
    the version that copy was for never appears, and the next registration takes its number."""
    small = _save_small(forest, xy, tmp_path)
    small_id = modelpack.verify(small).model_id
    weights = tmp_path / "weights.bin"
    weights.write_bytes(os.urandom(50 * 2**20))
    big = tmp_path / "big"
    modelpack.save(Blob(), big, artifacts={"weights": weights})
    big_id = modelpack.verify(big).model_id

    for _ in range(2):
        client.register_model(str(small), "Churn")
    known = _registry_dirs(client)
    registry = Path(client.artifact_root, "registry")
    go = tmp_path / "go"
    go.touch()
    argv = [(store_url, client.artifact_root, big, "Churn", 100_000, tmp_path / "r", go)]
    with _workers(tmp_path, _REGISTER, argv) as (proc,):
        deadline = time.monotonic() + STARTUP_S + RUN_S
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "never caught the worker copying a package"
            if _copy_in_flight(registry, known):
                # Freeze the worker, then look again: a temporary file still there means it
                # stopped inside the copy, which register_model finishes before the insert.
                os.kill(proc.pid, signal.SIGSTOP)
                _, status = os.waitpid(proc.pid, os.WUNTRACED)
                assert os.WIFSTOPPED(status)
                caught = _copy_in_flight(registry, known)
                if caught:
                    break
                os.kill(proc.pid, signal.SIGCONT)
            time.sleep(0.0005)
        proc.kill()
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    interrupted = {str(registry / p.relative_to(registry).parts[0]) for p in caught}
    versions = client.search_model_versions("name = 'Churn'")
    assert not interrupted & {v.storage_location for v in versions}, "a half-copied version"
    n = len(versions)
    assert [int(v) for v in out.split()] == list(range(3, n + 1))
    for v in sorted(versions, key=lambda v: int(v.version)):
        want = small_id if int(v.version) <= 2 else big_id
        assert modelpack.verify(v.storage_location).model_id == want
    numbers = sorted(int(v.version) for v in versions)
    assert numbers == list(range(1, n + 1))

    after = client.register_model(str(small), "Churn")
    assert after.version == n + 1
    assert modelpack.verify(after.storage_location).model_id == small_id
    created = [h.version for h in client.get_model_history("Churn") if h.action == "create"]
    assert sorted(created) == list(range(1, n + 2))


# ---------------------------------------------------------------------------- 3. fluent API

POINTS = 200
RUNS = 4


def _check_runs(run_ids: dict[int, str], url: str) -> None:
    """Run i holds exactly metric m<i>: POINTS points, step s valued 1000 i + s; FINISHED."""
    assert sorted(run_ids) == list(range(RUNS))
    assert len(set(run_ids.values())) == RUNS
    client = Client(url)
    for i, run_id in run_ids.items():
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert set(run.data.metrics) == {f"m{i}"}
        history = client.get_metric_history(run_id, f"m{i}")
        assert [(p.step, p.value) for p in history] == [
            (s, float(1000 * i + s)) for s in range(POINTS)
        ]
        for j in range(RUNS):
            if j != i:
                assert client.get_metric_history(run_id, f"m{j}") == []


def test_threads_log_metrics_into_their_own_runs(tracking_env):
    run_ids: dict[int, str] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(RUNS, timeout=60)

    def train(i: int) -> None:
        try:
            with modelpack.start_run(run_name=f"thread-{i}") as run:
                run_ids[i] = run.info.run_id
                barrier.wait()  # all four runs are active before anyone logs
                for step in range(POINTS):
                    assert modelpack.active_run() is run
                    modelpack.log_metric(f"m{i}", 1000 * i + step, step=step)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=train, args=(i,)) for i in range(RUNS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=RUN_S)
    assert not any(thread.is_alive() for thread in threads), "a logging thread hangs"
    assert not errors, errors
    assert modelpack.active_run() is None
    _check_runs(run_ids, tracking_env)


def test_asyncio_tasks_log_metrics_into_their_own_runs(tracking_env):
    run_ids: dict[int, str] = {}

    async def train(i: int, started: list[int], all_started: asyncio.Event) -> None:
        with modelpack.start_run(run_name=f"task-{i}") as run:
            run_ids[i] = run.info.run_id
            started.append(i)
            if len(started) == RUNS:
                all_started.set()
            await all_started.wait()  # all four runs are active before anyone logs
            for step in range(POINTS):
                assert modelpack.active_run() is run
                modelpack.log_metric(f"m{i}", 1000 * i + step, step=step)
                await asyncio.sleep(0)  # let the other tasks log in between

    async def main() -> None:
        started: list[int] = []
        all_started = asyncio.Event()
        await asyncio.wait_for(
            asyncio.gather(*(train(i, started, all_started) for i in range(RUNS))), RUN_S
        )

    asyncio.run(main())
    assert modelpack.active_run() is None
    _check_runs(run_ids, tracking_env)


# ---------------------------------------------------------------------------- 4. params

ROUNDS = 20


def test_concurrent_param_writes_one_wins_the_other_is_told(store_url, client, tmp_path):
    """Two processes log p<i> with different values at once, 20 times: each time exactly one
    wins, and the other gets InvalidArgument naming the value kept and the one refused."""
    run_id = client.create_run(client.create_experiment("params")).info.run_id
    sync = tmp_path / "sync"
    sync.mkdir()
    values = ("alpha", "beta")
    argv = [(store_url, client.artifact_root, run_id, v, ROUNDS, sync, v) for v in values]
    with _workers(tmp_path, _LOG_PARAMS, argv) as procs:
        for i in range(ROUNDS):
            _await_files([sync / f"ready-{i}-{v}" for v in values], procs, STARTUP_S)
            (sync / f"go-{i}").touch()
        outputs = _finish(procs, RUN_S)

    results = [[json.loads(line) for line in out.splitlines()] for out in outputs]
    params = client.get_run(run_id).data.params
    for i in range(ROUNDS):
        outcomes = {v: results[w][i] for w, v in enumerate(values)}
        winners = [v for v, (error, _) in outcomes.items() if error is None]
        assert len(winners) == 1, f"p{i}: {outcomes}"
        winner = winners[0]
        (loser,) = set(values) - {winner}
        error, message = outcomes[loser]
        assert error == "modelpack.errors.InvalidArgument", f"p{i}: {outcomes}"
        assert repr(winner) in message and repr(loser) in message, message
        assert message.index(repr(winner)) < message.index(repr(loser)), message
        assert params[f"p{i}"] == winner


# ---------------------------------------------------------------------------- 5. registry moves

PROMOTERS = 8
PROMOTE_ROUNDS = 6
MOVERS = 4
MOVE_S = 4.0  # how long each mover moves stages and aliases at random
MOVE_STAGES = ("None", "Staging", "Production", "Archived")
MOVE_ALIASES = ("champion", "challenger")

# Promote ``version`` to Production, archiving the others, once per round; every round behind
# its own barrier, then a "done" file. One JSON line per round: [error class or null, message].
_PROMOTE = (
    _BARRIER
    + r"""
import json
from modelpack import Client

url, root, name, version, rounds, sync, me = sys.argv[1:8]
client = Client(url, root)
client.store
for i in range(int(rounds)):
    barrier(os.path.join(sync, f"ready-{i}-{me}"), os.path.join(sync, f"go-{i}"))
    try:
        client.transition_model_version_stage(
            name, version, "Production", archive_existing_versions=True, comment=f"{me}/{i}"
        )
        result = [None, None]
    except Exception as exc:
        result = [f"{type(exc).__module__}.{type(exc).__qualname__}", str(exc)]
    print(json.dumps(result), flush=True)
    open(os.path.join(sync, f"done-{i}-{me}"), "w").close()
"""
)

# Move stages and aliases of ``name``'s versions 1..``versions`` at random for ``seconds``;
# prints one JSON list of [kind, comment, version, stage or alias, archive, error or null].
_MOVE = (
    _BARRIER
    + r"""
import json, random
from modelpack import Client

url, root, name, versions, seconds, seed, ready, go, me = sys.argv[1:10]
stages, aliases = ("None", "Staging", "Production", "Archived"), ("champion", "challenger")
client = Client(url, root)
client.store
rng = random.Random(int(seed))
barrier(ready, go)
ops = []
deadline = time.monotonic() + float(seconds)
while time.monotonic() < deadline:
    comment = f"{me}/{len(ops)}"
    version = rng.randint(1, int(versions))
    try:
        if rng.random() < 0.6:
            stage, archive = rng.choice(stages), rng.random() < 0.5
            op = ["stage", comment, version, stage, archive]
            client.transition_model_version_stage(
                name, version, stage, archive_existing_versions=archive, comment=comment
            )
        else:
            alias = rng.choice(aliases)
            op = ["alias", comment, version, alias, False]
            client.set_registered_model_alias(name, alias, version, comment=comment)
        ops.append(op + [None])
    except Exception as exc:
        ops.append(op + [f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"])
print(json.dumps(ops), flush=True)
"""
)


def _register_versions(client: Client, package: Path, name: str, count: int) -> None:
    for _ in range(count):
        client.register_model(str(package), name)


def _stages(client: Client, name: str) -> dict[int, str]:
    return {int(v.version): v.stage for v in client.search_model_versions(f"name = '{name}'")}


def _replay(history: list, stages: dict[int, str], archiving: set[str]) -> tuple[dict, dict]:
    """Apply the history in order to versions that all start in None: every record must start
    from the state the records before it left, and a move that archived the others must leave
    its version alone in its stage. Returns the stages and aliases it ends with."""
    state = dict.fromkeys(stages, "None")
    aliases: dict[str, int] = {}
    for h in history:
        if h.action == "stage":
            assert h.from_value == state[h.version], f"{h}: version {h.version} was {state}"
            state[h.version] = h.to_value
            if h.comment in archiving:
                alone = [v for v, s in state.items() if s == h.to_value]
                assert alone == [h.version], f"{h}: {state}"
        elif h.action == "alias":
            alias, _, version = h.to_value.partition("@")
            before = aliases.get(alias)
            assert h.from_value == (None if before is None else f"{alias}@{before}"), h
            aliases[alias] = int(version)
    return state, aliases


@pytest.mark.slow
def test_simultaneous_promotions_leave_exactly_one_in_production(
    store_url, client, forest, xy, tmp_path
):
    """8 processes promote 8 different versions to Production with archive_existing_versions
    at the same instant, 6 times: after every round exactly one version is in Production, the
    other seven are Archived, and no promotion failed."""
    package = _save_small(forest, xy, tmp_path)
    _register_versions(client, package, "Churn", PROMOTERS)
    sync = tmp_path / "sync"
    sync.mkdir()
    argv = [
        (store_url, client.artifact_root, "Churn", w + 1, PROMOTE_ROUNDS, sync, w)
        for w in range(PROMOTERS)
    ]
    in_production = []
    with _workers(tmp_path, _PROMOTE, argv) as procs:
        for i in range(PROMOTE_ROUNDS):
            _await_files([sync / f"ready-{i}-{w}" for w in range(PROMOTERS)], procs, STARTUP_S)
            (sync / f"go-{i}").touch()
            _await_files([sync / f"done-{i}-{w}" for w in range(PROMOTERS)], procs, RUN_S)
            stages = _stages(client, "Churn")
            production = [v for v, stage in stages.items() if stage == "Production"]
            in_production.append(len(production))
            assert len(production) == 1, f"round {i}: {stages}"
            assert sorted(stage for stage in stages.values()) == ["Archived"] * 7 + ["Production"]
        outputs = _finish(procs, RUN_S)

    results = [json.loads(line) for out in outputs for line in out.splitlines()]
    assert len(results) == PROMOTERS * PROMOTE_ROUNDS
    assert [r for r in results if r != [None, None]] == []
    history = client.get_model_history("Churn")
    moves = [h for h in history if h.action == "stage"]
    promotions = {f"{w}/{i}" for w in range(PROMOTERS) for i in range(PROMOTE_ROUNDS)}
    promoted = [h.comment for h in moves if h.to_value == "Production"]
    assert sorted(promoted) == sorted(promotions)
    # In commit order, each promotion found at most the one version before it in Production.
    replayed, _ = _replay(history, stages, promotions)
    assert replayed == stages
    archived = [h for h in moves if h.to_value == "Archived"]
    assert all(h.from_value == "Production" for h in archived)
    print(
        f"{PROMOTE_ROUNDS} rounds x {PROMOTERS} promotions on {store_url.split(':')[0]}: "
        f"Production counts {in_production}, {len(promoted)} promotions, {len(archived)} "
        f"versions archived by them, 0 failed"
    )


@pytest.mark.slow
def test_random_concurrent_moves_never_fail_and_are_all_audited(
    store_url, client, forest, xy, tmp_path
):
    """4 processes move stages (with and without archive_existing_versions) and aliases of 5
    versions at random for 4 s each: no move fails, the history holds every one of them once,
    and replaying the history reproduces the registry's final stages and aliases."""
    package = _save_small(forest, xy, tmp_path)
    versions = 5
    _register_versions(client, package, "Churn", versions)
    seed = random.randrange(2**32)
    sync = tmp_path / "sync"
    sync.mkdir()
    common = (store_url, client.artifact_root, "Churn", versions, MOVE_S)
    argv = [(*common, seed + w, sync / f"r{w}", sync / "go", w) for w in range(MOVERS)]
    with _workers(tmp_path, _MOVE, argv) as procs:
        _await_files([sync / f"r{w}" for w in range(MOVERS)], procs, STARTUP_S)
        (sync / "go").touch()
        outputs = _finish(procs, RUN_S + MOVE_S)

    ops = [op for out in outputs for op in json.loads(out)]
    failed = [op for op in ops if op[5] is not None]
    transitions = [op for op in ops if op[0] == "stage"]
    alias_moves = [op for op in ops if op[0] == "alias"]
    summary = (
        f"seed {seed}, {store_url.split(':')[0]}: {len(transitions)} transitions, "
        f"{len(alias_moves)} alias moves, {len(failed)} failed"
    )
    print(summary)
    assert transitions and alias_moves, summary
    assert failed == [], f"{summary}: {failed[:5]}"

    history = client.get_model_history("Churn")
    stage_comments = sorted(h.comment for h in history if h.action == "stage"
                            and not h.comment.startswith("archived: "))  # fmt: skip
    assert stage_comments == sorted(op[1] for op in transitions), summary
    alias_comments = [h.comment for h in history if h.action == "alias"]
    # Setting an alias to the version it already names changes nothing and records nothing.
    assert len(set(alias_comments)) == len(alias_comments)
    assert set(alias_comments) <= {op[1] for op in alias_moves}
    archiving = {op[1] for op in transitions if op[4] and op[3] in ("Staging", "Production")}
    stages = _stages(client, "Churn")
    replayed, aliases = _replay(history, stages, archiving)
    assert replayed == stages, summary
    assert aliases == client.get_registered_model("Churn").aliases, summary
    archived = [h for h in history if (h.comment or "").startswith("archived: ")]
    print(f"{summary}; history: {len(stage_comments)} moves, {len(archived)} archived by them, "
          f"{len(alias_comments)} alias moves")  # fmt: skip
