"""Reading the files ``modelpack predict`` scores: Parquet, CSV and JSON lines, streamed.

Every reader streams: it yields ``Chunk``\\ s of about ``batch_size`` rows and never holds the
whole input. Parquet is read a row group at a time with pyarrow (reading every row group in one
``iter_batches`` call buffers far ahead of the consumer). CSV and JSON lines are read in blocks of
whole lines that pyarrow parses with the signature's column types; the block is kept until it is
parsed, so an error names the exact row, line and byte offset, which pyarrow's own streaming
readers (``open_csv``, ``open_json``) cannot do. Values may not contain newlines, as for
pyarrow's multi-threaded readers, and a line may be at most ``max_line_bytes`` long: a longer
one is refused as it is read, before the rest of it is.

Writing is in ``modelpack.batch._writers``; the formats and how one is guessed in
``modelpack.batch._formats``.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import sys
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from modelpack.batch._formats import STDIO, pyarrow
from modelpack.errors import (
    InvalidArgument,
    NotFound,
    SchemaError,
)

# pyarrow's CSV defaults, for locating a failed row in Python.
CSV_NULLS = frozenset(
    (
        "",
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "n/a",
        "nan",
        "null",
    )
)
CSV_BOOLS = frozenset(("1", "0", "true", "false", "True", "False", "TRUE", "FALSE"))
_FIRST_BLOCK = 1 << 20  # bytes read at a time until the line length is known
_PIECE = 1 << 22  # the most bytes read at once
_TYPE_NAMES = {"int64": "long", "int32": "integer", "bool": "boolean"}  # arrow -> signature


def arrow_type(name: str) -> Any:
    """The arrow type a signature type or tensor dtype is read as from CSV and JSON text.

    Datetimes are read as text: the signature's cast understands ISO-8601 with any zone.
    """
    pa = pyarrow()
    table = {
        "boolean": pa.bool_(),
        "integer": pa.int32(),
        "long": pa.int64(),
        "float": pa.float32(),
        "double": pa.float64(),
        "string": pa.string(),
        "binary": pa.binary(),
        "datetime": pa.string(),
        "str": pa.string(),
        "bool": pa.bool_(),
        "float16": pa.float32(),
    }
    return table[name] if name in table else pa.from_numpy_dtype(name)


# ---------------------------------------------------------------------------- reading


@dataclass
class Chunk:
    """Rows read from the input: ``start`` is the 0-based row of the first one."""

    table: Any  # pyarrow.Table
    start: int
    first_line: int | None = None  # 1-based line of the first row, where rows are lines

    def line(self, row: int) -> int | None:
        """The line of the chunk's ``row`` (0-based within the chunk), where rows are lines."""
        return None if self.first_line is None else self.first_line + row


class Reader:
    """An open input. ``columns`` are the columns it has; ``batches`` streams them."""

    name: str
    columns: list[str]
    total_rows: int | None = None
    total_bytes: int | None = None
    bytes_read: int = 0

    def batches(self, wanted: Sequence[str], types: Mapping[str, Any]) -> Iterator[Chunk]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_input(path: str, fmt: str, batch_size: int, max_line_bytes: int) -> Reader:
    """Open ``path`` (``-`` for stdin) and read what columns it has.

    ``max_line_bytes`` bounds a line of CSV or JSON lines (its newline not counted).

    Raises:
        NotFound: no such file.
        SchemaError: a file that cannot be read as ``fmt``.
    """
    if path != STDIO:
        p = Path(path)
        if not p.exists():
            raise NotFound(f"Input file {path!r} does not exist.")
        if p.is_dir():
            raise InvalidArgument(f"Input {path!r} is a folder; give a file.")
    if fmt == "parquet":
        return _ParquetReader(path, batch_size)
    stream: BinaryIO
    if path == STDIO:
        stream, name, size = sys.stdin.buffer, "stdin", None
    else:
        try:
            stream = open(path, "rb", buffering=0)  # noqa: SIM115 - the reader closes it
        except OSError as exc:
            raise NotFound(f"Cannot open input file {path!r}: {exc.strerror}.") from None
        name, size = path, os.fstat(stream.fileno()).st_size
    try:
        cls = _CsvReader if fmt == "csv" else _JsonReader
        return cls(stream, name, size, batch_size, max_line_bytes, close=path != STDIO)
    except BaseException:
        if path != STDIO:
            stream.close()
        raise


class _ParquetReader(Reader):
    def __init__(self, path: str, batch_size: int) -> None:
        pa = pyarrow()
        import pyarrow.parquet as pq

        self.name, self.batch_size = path, batch_size
        try:
            # A buffered stream reads pages as they are decoded, not whole column chunks.
            self.file = pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)
        except (pa.ArrowException, OSError) as exc:
            raise SchemaError(f"{path}: cannot be read as Parquet ({exc}).") from None
        self.schema = self.file.schema_arrow
        self.columns = list(self.schema.names)
        self.total_rows = self.file.metadata.num_rows

    def batches(self, wanted: Sequence[str], types: Mapping[str, Any]) -> Iterator[Chunk]:
        pa = pyarrow()
        start, held, rows = 0, [], 0  # small row groups are joined up to batch_size rows
        for group in range(self.file.num_row_groups):
            pieces = self.file.iter_batches(
                batch_size=self.batch_size, row_groups=[group], columns=list(wanted)
            )
            while True:
                try:
                    batch = next(pieces)
                except StopIteration:
                    break
                except (pa.ArrowException, OSError) as exc:
                    raise SchemaError(
                        f"{self.name}: cannot read row group {group} (from row "
                        f"{start + rows}): {exc}"
                    ) from None
                held.append(batch)
                rows += batch.num_rows
                if rows >= self.batch_size:
                    yield Chunk(pa.Table.from_batches(held), start)
                    start, held, rows = start + rows, [], 0
            # Drop this row group's reader and hand its buffers back before the next one, or
            # the pool keeps both: peak memory would grow with the number of row groups.
            del pieces
            pa.default_memory_pool().release_unused()
        if held:
            yield Chunk(pa.Table.from_batches(held), start)
        elif start == 0:
            yield Chunk(self.schema.empty_table().select(list(wanted)), 0)

    def close(self) -> None:
        self.file.close()


class _TextReader(Reader):
    """Blocks of whole lines, parsed by pyarrow; the first block fixes every column's type.

    The stream is read in pieces of at most ``_PIECE`` bytes, each scanned once for its newlines
    as it arrives: every line is checked against ``max_line_bytes`` then, so a line that never
    ends is refused within one piece of the limit, and a block is joined from its pieces once.
    The cost is linear in the file whatever the shape of its lines.
    """

    header_lines = 0

    def __init__(
        self,
        stream: BinaryIO,
        name: str,
        size: int | None,
        batch_size: int,
        max_line_bytes: int,
        close: bool,
    ) -> None:
        self.stream, self.name, self.total_bytes = stream, name, size
        self.batch_size, self.max_line_bytes, self._close = batch_size, max_line_bytes, close
        self.line_bytes = 0.0  # average bytes per line, for sizing the reads of a block
        self.lines_read = 0  # newlines in the blocks handed out so far
        self.eof = False
        # Read and not yet handed out: (stream offset, bytes, offsets of its newlines not yet
        # handed out); the first piece is handed out up to self.taken.
        self.pieces: deque[tuple[int, bytes, Any]] = deque()
        self.taken = 0  # stream offset of the first byte not handed out
        self.held_lines = 0  # whole lines held
        self.stream_at = 0  # bytes read from the stream
        self.stream_lines = 0  # newlines read from the stream
        self.line_start = 0  # stream offset of the line not yet ended
        self.longest = 0  # the longest line so far, in bytes without its newline

    def close(self) -> None:
        if self._close:
            self.stream.close()

    def _read(self, n: int) -> bytes:
        try:
            data = self.stream.read(n)
        except OSError as exc:
            raise SchemaError(f"{self.name}: read failed at byte {self.stream_at}: {exc}") from None
        return data or b""

    def _fill(self, want: int) -> None:
        """Read one more piece (about ``want`` bytes), checking the length of every line in it."""
        import numpy as np

        piece = self._read(min(max(want, 1 << 16), _PIECE))
        if not piece:
            self.eof = True
            return
        at, limit = self.stream_at, self.max_line_bytes
        ends = np.flatnonzero(np.frombuffer(piece, np.uint8) == 10) + at
        if len(ends):
            lengths = np.diff(ends, prepend=self.line_start - 1) - 1  # without the newline
            longest = int(lengths.max())
            if longest > limit:
                i = int(np.argmax(lengths > limit))
                start = self.line_start if i == 0 else int(ends[i - 1]) + 1
                raise self._too_long(self.stream_lines + i + 1, start)
            self.longest = max(self.longest, longest)
            self.line_start = int(ends[-1]) + 1
        self.stream_at += len(piece)
        self.stream_lines += len(ends)
        if self.stream_at - self.line_start > limit:
            raise self._too_long(self.stream_lines + 1, self.line_start)
        self.longest = max(self.longest, self.stream_at - self.line_start)
        self.pieces.append((at, piece, ends))
        self.held_lines += len(ends)

    def _too_long(self, line: int, start: int) -> SchemaError:
        return SchemaError(
            f"{self.name}: line {line} (from byte {start}) is longer than the limit of "
            f"{self.max_line_bytes:,} bytes. Each line is one record and ends with a newline; "
            f"if the records really are this long, raise --max-line-bytes."
        )

    def _take(self, lines: int | None) -> tuple[bytes, int]:
        """Hand out the next ``lines`` whole lines held (all that is held for ``None``)."""
        parts: list[memoryview] = []
        taken = 0
        while self.pieces and (lines is None or taken < lines):
            at, piece, ends = self.pieces[0]
            skip = self.taken - at
            if lines is None or len(ends) < lines - taken:  # its last line goes on after it
                cut = at + len(piece)
                taken += len(ends)
            else:
                cut = int(ends[lines - taken - 1]) + 1
                self.pieces[0] = (at, piece, ends[lines - taken :])
                taken = lines
            parts.append(memoryview(piece)[skip : cut - at])
            self.taken = cut
            if cut == at + len(piece):
                self.pieces.popleft()
        self.held_lines -= taken
        return b"".join(parts), taken

    def _block(self) -> tuple[bytes, int, int, int]:
        """The next ``batch_size`` lines: (bytes, their byte offset, lines before, lines)."""
        while not self.eof and self.held_lines < self.batch_size:
            missing = self.batch_size - self.held_lines
            self._fill(int(missing * self.line_bytes) if self.line_bytes else _FIRST_BLOCK)
        # Short of batch_size lines only at the end of the input: then take all there is.
        block, newlines = self._take(
            self.batch_size if self.held_lines >= self.batch_size else None
        )
        offset, before = self.bytes_read, self.lines_read
        self.bytes_read += len(block)
        self.lines_read += newlines
        if newlines:
            self.line_bytes = self.bytes_read / max(self.lines_read, 1)
        return block, offset, before, newlines + (0 if block.endswith(b"\n") or not block else 1)

    def batches(self, wanted: Sequence[str], types: Mapping[str, Any]) -> Iterator[Chunk]:
        pa = pyarrow()
        rows, fixed = 0, dict(types)
        first = True
        while True:
            block, offset, before, lines = self._block()
            if not block and not first:
                return
            first_line = self.header_lines + before + 1
            try:
                table = self._parse(block, wanted, fixed)
            except pa.ArrowInvalid as exc:
                raise self._locate(block, offset, first_line, rows, wanted, fixed, exc) from None
            if block and not table.num_rows:  # blank lines: no rows to score or to type by
                continue
            if first:
                # Types inferred from the first block hold for the rest, as in pyarrow's
                # streaming readers; a column of nulls so far is read as text.
                for field in table.schema:
                    if field.name not in fixed:
                        fixed[field.name] = (
                            pa.string() if pa.types.is_null(field.type) else (field.type)
                        )
                table = table.cast(pa.schema([(c, fixed[c]) for c in table.column_names]))
                first = False
            yield Chunk(table, rows, first_line if lines == table.num_rows else None)
            rows += table.num_rows
            if not block:
                return

    def _parse(self, block: bytes, wanted: Sequence[str], types: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    def _locate(
        self,
        block: bytes,
        offset: int,
        first_line: int,
        start: int,
        wanted: Sequence[str],
        types: Mapping[str, Any],
        exc: Exception,
    ) -> SchemaError:
        """The error for the first bad row of a block pyarrow could not parse."""
        row, at = start, offset
        for i, raw in enumerate(block.splitlines(keepends=True)):
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            if text.strip():
                problem = self._check_line(text, wanted, types)
                if problem is not None:
                    where = f"{self.name}: row {row} (line {first_line + i}, byte {at})"
                    return SchemaError(f"{where}: {problem[1]}", problem[0])
                row += 1
            at += len(raw)
        return SchemaError(
            f"{self.name}: cannot parse the rows from row {start} (line {first_line}, byte "
            f"{offset}) on: {exc}"
        )

    def _check_line(
        self, text: str, wanted: Sequence[str], types: Mapping[str, Any]
    ) -> tuple[str | None, str] | None:
        raise NotImplementedError


def _value_problem(column: str, value: Any, arrow: Any, from_text: bool) -> str | None:
    """Why ``value`` cannot be read as the arrow type ``arrow`` (``None``: it can)."""
    pa = pyarrow()
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    bad = f"column {column!r}: cannot cast {shown} to {_TYPE_NAMES.get(str(arrow), arrow)}."
    if value is None or (from_text and value in CSV_NULLS):
        return None
    if pa.types.is_floating(arrow) or pa.types.is_integer(arrow):
        if from_text:
            try:
                (float if pa.types.is_floating(arrow) else int)(value)
            except ValueError:
                return bad
            return None
        ok = (
            isinstance(value, int | float)
            if pa.types.is_floating(arrow)
            else isinstance(value, int)
        )
        return None if ok and not isinstance(value, bool) else bad
    if pa.types.is_boolean(arrow):
        return None if (value in CSV_BOOLS if from_text else isinstance(value, bool)) else bad
    if pa.types.is_string(arrow) and not from_text:
        return None if isinstance(value, str) else bad
    return None


class _CsvReader(_TextReader):
    header_lines = 1

    def __init__(
        self,
        stream: BinaryIO,
        name: str,
        size: int | None,
        batch_size: int,
        max_line_bytes: int,
        close: bool,
    ) -> None:
        super().__init__(stream, name, size, batch_size, max_line_bytes, close)
        while not self.eof and not self.held_lines:
            self._fill(_FIRST_BLOCK)
        line, _ = self._take(1 if self.held_lines else None)
        self.bytes_read = len(line)
        if not line.strip():
            raise SchemaError(f"{name}: the file is empty; expected a header line of column names.")
        text = line.decode("utf-8-sig", errors="replace").rstrip("\r\n")
        try:
            self.columns = next(csv.reader([text]))
        except csv.Error as exc:
            raise SchemaError(f"{name}: cannot read the header line ({exc}).") from None
        if len(set(self.columns)) < len(self.columns):
            dupes = sorted(c for c, n in Counter(self.columns).items() if n > 1)
            raise SchemaError(f"{name}: the header names column {dupes[0]!r} more than once.")

    @functools.cached_property
    def index(self) -> dict[str, int]:
        """Column name -> position, for locating a bad value (built once, if ever)."""
        return {c: i for i, c in enumerate(self.columns)}

    def _parse(self, block: bytes, wanted: Sequence[str], types: Mapping[str, Any]) -> Any:
        pa = pyarrow()
        import pyarrow.csv as pacsv

        if not block.strip():
            return pa.table({c: pa.array([], types.get(c, pa.string())) for c in wanted})
        return pacsv.read_csv(
            pa.py_buffer(block),
            # pyarrow needs a whole row in each block it parses in parallel.
            read_options=pacsv.ReadOptions(
                column_names=self.columns, block_size=max(1 << 20, self.longest + 64)
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict(types), include_columns=list(wanted)
            ),
        )

    def _check_line(
        self, text: str, wanted: Sequence[str], types: Mapping[str, Any]
    ) -> tuple[str | None, str] | None:
        try:
            values = next(csv.reader([text]))
        except csv.Error as exc:
            return None, f"malformed line ({exc})."
        if len(values) != len(self.columns):
            return None, (
                f"expected {len(self.columns)} values (one per header column), got {len(values)}."
            )
        for column in wanted:
            if column in types:
                problem = _value_problem(column, values[self.index[column]], types[column], True)
                if problem:
                    return column, problem
        return None


class _JsonReader(_TextReader):
    def __init__(
        self,
        stream: BinaryIO,
        name: str,
        size: int | None,
        batch_size: int,
        max_line_bytes: int,
        close: bool,
    ) -> None:
        import numpy as np

        super().__init__(stream, name, size, batch_size, max_line_bytes, close)
        # The first record names the columns: read up to it now, hand the lines out later.
        first, scanned = None, 0  # the stream offset of its first byte; pieces looked at
        while first is None and not (self.eof and scanned == len(self.pieces)):
            if scanned == len(self.pieces):
                self._fill(_FIRST_BLOCK)
                continue
            at, piece, _ = self.pieces[scanned]
            scanned += 1
            rest = len(piece.lstrip())
            if rest:
                first = at + len(piece) - rest
        if first is None:
            self.columns = []
            return
        while not self.eof and self.line_start <= first:  # until the record's line ends
            self._fill(_FIRST_BLOCK)
        ends = np.concatenate([e for _, _, e in self.pieces])
        blank = int(np.searchsorted(ends, first))  # the blank lines before it
        stop = int(ends[blank]) if blank < len(ends) else self.stream_at
        head = b"".join(
            memoryview(p)[max(first - at, 0) : max(stop - at, 0)] for at, p, _ in self.pieces
        )
        start = int(ends[blank - 1]) + 1 if blank else 0
        where = f"{name}: row 0 (line {blank + 1}, byte {start})"
        try:
            record = json.loads(head)
        except ValueError as exc:
            raise SchemaError(f"{where}: not valid JSON ({exc}).") from None
        if not isinstance(record, dict):
            raise SchemaError(
                f"{where}: expected a JSON object per line, got {type(record).__name__}."
            )
        self.columns = list(record)

    def _parse(self, block: bytes, wanted: Sequence[str], types: Mapping[str, Any]) -> Any:
        pa = pyarrow()
        import pyarrow.json as pajson

        if not block.strip():
            return pa.table({c: pa.array([], types.get(c, pa.string())) for c in wanted})
        known = [c for c in wanted if c in types]
        table = pajson.read_json(
            pa.py_buffer(block),
            read_options=pajson.ReadOptions(
                block_size=max(1 << 22, len(block) // 8, self.longest + 64)
            ),
            parse_options=pajson.ParseOptions(
                explicit_schema=pa.schema([(c, types[c]) for c in known]),
                unexpected_field_behavior="ignore" if len(known) == len(wanted) else "infer",
            ),
        )
        present = set(table.column_names)
        missing = [c for c in wanted if c not in present]
        for c in missing:  # a keep column absent from every record of the first block
            table = table.append_column(c, pa.nulls(table.num_rows, pa.string()))
        return table.select(list(wanted))

    def _check_line(
        self, text: str, wanted: Sequence[str], types: Mapping[str, Any]
    ) -> tuple[str | None, str] | None:
        try:
            record = json.loads(text)
        except ValueError as exc:
            return None, f"not valid JSON ({exc})."
        if not isinstance(record, dict):
            return None, f"expected a JSON object, got {type(record).__name__}."
        for column in wanted:
            if column in types:
                problem = _value_problem(column, record.get(column), types[column], False)
                if problem:
                    return column, problem
        return None
