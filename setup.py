"""The package list is computed: every folder under modelpack/, flavors/, serving/ and server/ is a
package of the one ``modelpack`` namespace (the mapping itself is in pyproject.toml)."""

from pathlib import Path

from setuptools import setup

FOLDERS = {
    "modelpack": "modelpack",
    "flavors": "modelpack.flavors",
    "serving": "modelpack.serving",
    "server": "modelpack.server",
}


def packages(folder: str, name: str) -> list[str]:
    root = Path(__file__).parent / folder
    subdirs = sorted(p for p in root.rglob("*") if p.is_dir() and p.name != "__pycache__")
    return [name] + [".".join([name, *d.relative_to(root).parts]) for d in subdirs]


setup(packages=[pkg for folder, name in FOLDERS.items() for pkg in packages(folder, name)])
