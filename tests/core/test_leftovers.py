"""What killed saves leave is named after its process and removed by the next save."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import modelpack
from modelpack import gc


def test_a_killed_save_leaves_a_folder_named_after_it_that_the_next_save_removes(
    tmp_path, slow_save
):
    script, marker = slow_save, tmp_path / "marker"
    folder = tmp_path / "models"
    proc = subprocess.Popen([sys.executable, str(script), str(folder / "a"), str(marker)])
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), "the save never started pickling"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    [left] = os.listdir(folder)
    m = re.fullmatch(r"\.a\.modelpack-staging-[0-9a-f]{6}-(\d+)-(\d+)-[0-9a-f]{6}", left)
    assert m is not None and int(m[1]) == proc.pid, left
    modelpack.save(lambda x: x, folder / "b", flavor="python")
    assert sorted(os.listdir(folder)) == ["b"]


def test_only_leftovers_of_processes_that_are_gone_are_removed(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    live = folder / gc.staging_name("a")  # this process: still running
    live.mkdir()
    # This pid with another start time: the pid was reused, the owner is gone.
    host, pid, start = re.search(r"([0-9a-f]{6})-(\d+)-(\d+)-[0-9a-f]{6}$", live.name).groups()
    reused = folder / f".a.modelpack-staging-{host}-{pid}-{int(start) - 1000}-abcdef"
    reused.mkdir()
    other_host = folder / f".a.modelpack-staging-{'0' * 6}-{pid}-{start}-abcdef"
    other_host.mkdir()  # unknown owner: only `modelpack gc` removes it, once old
    legacy = folder / ".a.modelpack-staging-0123abcd"  # an older modelpack's name
    legacy.mkdir()
    modelpack.save(lambda x: x, folder / "b", flavor="python")
    assert sorted(os.listdir(folder)) == sorted(["b", live.name, other_host.name, legacy.name])
