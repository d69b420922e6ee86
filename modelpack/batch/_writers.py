"""Writing what ``modelpack predict`` scores: Parquet, CSV or JSON lines, atomically.

The output goes to a temporary file beside the target, renamed into place at the end
(``Target``): nothing is left behind after a failure or an interrupt, and what a killed run
left is removed by the next run that writes into the same folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modelpack import atomic
from modelpack.batch._formats import STDIO, pyarrow
from modelpack.errors import AlreadyExists, InvalidArgument, NotFound


class Target:
    """Where the output goes: a file written atomically, or stdout (``-``).

    The checks run when it is made, before any scoring; the file appears only when ``open``'s
    block ends without an error.
    """

    def __init__(self, output: str, overwrite: bool) -> None:
        self.output = output
        self.tmp: Path | None = None
        if output == STDIO:
            return
        path = Path(output)
        folder = path.parent
        if not folder.is_dir():
            raise NotFound(
                f"The output folder {str(folder)!r} does not exist; create it first, or choose "
                f"another output path."
            )
        if path.is_dir():
            raise InvalidArgument(f"Output {output!r} is a folder; give a file path.")
        if path.exists() and not overwrite:
            raise AlreadyExists(
                f"Output {output!r} already exists. Pass --overwrite (overwrite=True) to "
                f"replace it, or choose another path."
            )
        self.path = path

    @contextlib.contextmanager
    def open(self) -> Iterator[Any]:
        """Yield a path (files) or a binary stream (stdout); publish the file on success."""
        if self.output == STDIO:
            yield sys.stdout.buffer
            sys.stdout.buffer.flush()
            return
        from modelpack import gc

        # Named after this process, so the next predict into this folder can tell an output
        # a killed run left (and remove it) from one being written now.
        gc.collect(self.path.parent, ("predict",))
        self.tmp = self.path.parent / gc.tmp_name(self.path.name)
        try:
            yield self.tmp
            atomic.publish(self.tmp, self.path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)


class Sink:
    """Writes record batches in one format; the first batch fixes the schema."""

    def __init__(self, where: Any, fmt: str) -> None:
        self.where, self.fmt = where, fmt
        self.writer: Any = None
        self.schema: Any = None
        self._file: Any = None

    def write(self, batch: Any) -> None:
        pa = pyarrow()
        if self.schema is None:
            self.schema = batch.schema
            self._open(batch.schema)
        elif batch.schema != self.schema:
            batch = pa.RecordBatch.from_arrays(
                [c.cast(f.type) for c, f in zip(batch.columns, self.schema, strict=True)],
                schema=self.schema,
            )
        if self.fmt == "jsonl":
            self._write_jsonl(batch)
        else:
            self.writer.write_batch(batch)

    def _open(self, schema: Any) -> None:
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            self.writer = pq.ParquetWriter(str(self.where), schema)
        elif self.fmt == "csv":
            import pyarrow.csv as pacsv

            where = str(self.where) if isinstance(self.where, Path) else self.where
            self.writer = pacsv.CSVWriter(where, schema)
        else:
            self._file = (
                open(self.where, "wb")  # noqa: SIM115 - closed in close()
                if isinstance(self.where, Path)
                else self.where
            )
            self._dumps = _json_dumps()

    def _write_jsonl(self, batch: Any) -> None:
        dumps = self._dumps
        self._file.write(b"".join(dumps(row) for row in batch.to_pylist()))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self._file is not None:
            if isinstance(self.where, Path):
                self._file.close()
            else:
                self._file.flush()


def _json_dumps() -> Any:
    """A fast ``row -> b'{...}\\n'``: orjson where installed, else the json module."""
    try:
        import orjson
    except ImportError:
        encoder = json.JSONEncoder(default=_json_default, ensure_ascii=False)
        return lambda row: (encoder.encode(row) + "\n").encode("utf-8")
    option = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NAIVE_UTC | orjson.OPT_SERIALIZE_NUMPY
    return lambda row: orjson.dumps(row, default=_json_default, option=option)


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        import base64

        return base64.b64encode(value).decode("ascii")
    if hasattr(value, "item"):
        return value.item()
    return str(value)
