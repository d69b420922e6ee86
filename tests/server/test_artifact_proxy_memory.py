"""A 2 GiB artifact through the proxy with bounded memory (issue 12): uploaded and downloaded
by ``ProxyArtifactStore`` in a child process, to a server in a subprocess of its own; each
process's peak RSS stays under 300 MiB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from live_server import start_server

SIZE = 2 * 1024**3
BLOCK = 1024**2
LIMIT_KIB = 300 * 1024
CLEAN_ENV = {
    key: os.environ[key]
    for key in ("PATH", "HOME", "LANG", "TMPDIR", "PYTHONDONTWRITEBYTECODE")
    if key in os.environ
}
# Offsets of the marked blocks: the file is otherwise sparse (holes read as zeros), so it is
# made in an instant and every marked block must come back where it was.
MARKS = (0, SIZE // 3, SIZE // 2 + 12345, SIZE - BLOCK)

_CLIENT = """
import json, sys
from pathlib import Path
from modelpack.artifacts import artifact_store

def peak_kib():
    # VmHWM, not getrusage's ru_maxrss: that one carries the parent's peak over fork and exec
    # (a pytest worker's hundreds of MiB), VmHWM is this program's own.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

store = artifact_store(sys.argv[1])
before = peak_kib()
store.put_file(Path(sys.argv[2]), "big.bin")
store.get_file("big.bin", Path(sys.argv[3]))
print(json.dumps({"maxrss_kib": peak_kib(), "before_kib": before}))
"""


def mark(offset: int) -> bytes:
    return (f"block at {offset:>12} ".encode() * (BLOCK // 22 + 1))[:BLOCK]


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"/proc/{pid}/status has no VmHWM line")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux's /proc")
def test_a_2gib_artifact_streams_both_ways_in_bounded_memory(tmp_path):
    source = tmp_path / "big.bin"
    with open(source, "wb") as f:
        f.truncate(SIZE)
        for offset in MARKS:
            f.seek(offset)
            f.write(mark(offset))
    server = start_server(tmp_path / "server", process=True)
    try:
        uri = f"{server.url}/api/2.0/mlflow-artifacts/artifacts/e/r/artifacts"
        copy = tmp_path / "download" / "big.bin"
        child = subprocess.run(
            [sys.executable, "-c", _CLIENT, uri, str(source), str(copy)],
            capture_output=True,
            text=True,
            timeout=180,
            env=CLEAN_ENV,  # a fresh client: nothing the test session set leaks into it
        )
        assert child.returncode == 0, child.stderr[-3000:] + server.logs()
        measured = json.loads(child.stdout.strip().splitlines()[-1])
        client_kib, client_before_kib = measured["maxrss_kib"], measured["before_kib"]
        server_kib = peak_rss_kib(server.pid)
    finally:
        server.stop()

    stored = tmp_path / "server" / "artifacts" / "e" / "r" / "artifacts" / "big.bin"
    assert stored.stat().st_size == SIZE
    assert [p.name for p in stored.parent.iterdir()] == ["big.bin"]  # the upload's temp is gone
    assert copy.stat().st_size == SIZE
    with open(copy, "rb") as got:
        for offset in MARKS:
            got.seek(offset)
            assert got.read(BLOCK) == mark(offset), offset
        got.seek(SIZE // 4)
        assert got.read(BLOCK) == bytes(BLOCK)  # a hole stays zeros
    assert sorted(p.name for p in copy.parent.iterdir()) == ["big.bin"]  # no temp file left
    assert client_kib < LIMIT_KIB, (
        f"client peak RSS {client_kib / 1024:.0f} MiB ({client_before_kib / 1024:.0f} MiB "
        f"before the upload)"
    )
    assert server_kib < LIMIT_KIB, f"server peak RSS {server_kib / 1024:.0f} MiB"
