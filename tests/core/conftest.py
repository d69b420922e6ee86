"""Fixtures the core tests share."""

from __future__ import annotations

import textwrap

import pytest

SLOW_SAVE = textwrap.dedent("""
    import sys, time, pathlib
    import modelpack

    class Slow(modelpack.PythonModel):
        def __reduce__(self):
            pathlib.Path(sys.argv[2]).write_text("pickling")
            time.sleep(60)
            return (Slow, ())

    modelpack.save(Slow(), sys.argv[1], flavor="python")
""")


@pytest.fixture
def slow_save(tmp_path):
    """A script that saves a python model whose pickling writes ``argv[2]`` and then hangs,
    so a test can kill the save mid-way: ``python slow.py TARGET MARKER``."""
    script = tmp_path / "slow.py"
    script.write_text(SLOW_SAVE)
    return script
