"""Markdown tables and verdicts shared by the benchmark scripts (run them from the repo root:
``python benchmarks/bench_x.py`` puts this folder on the import path)."""

from __future__ import annotations

import sys


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """Print a markdown table under a ``###`` title, columns padded to line up."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n### {title}\n")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    sys.stdout.flush()
