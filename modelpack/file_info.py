"""``FileInfo``, one entry of an artifact listing, and the name prefix of in-flight writes that
no listing shows; shared by every artifact store (local, S3, a server's proxy) and the server.
Imports nothing of modelpack, so any store module can use it without an import cycle."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TMP_PREFIX", "FileInfo"]

TMP_PREFIX = ".modelpack-tmp-"  # files being written (renamed into place when whole); never listed


@dataclass(frozen=True)
class FileInfo:
    """One entry of a listing: ``path`` is relative to the store root, ``size`` None for dirs."""

    path: str
    is_dir: bool
    size: int | None

    @property
    def file_size(self) -> int | None:  # MLflow's name for size
        return self.size
