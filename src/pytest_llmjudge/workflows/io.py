"""Reading and writing CSV, JSON and JSONL tables by extension, incrementally, with resume.

Reading uses :func:`pytest_llmjudge.load_cases`, so a dataset the test suite accepts is
accepted here with the same rules (chat form, ``prompt``/``completion`` aliases, UTF-8,
located one-line errors). Each :class:`Row` carries both views of a row: ``data``, the
columns as they are in the file (what the commands copy to their output), and ``case``, the
derived view (``input``, ``expected_output``, ``system_prompt`` filled from chat
``messages`` or the aliases) that the commands read prompts and references from.

Writing (:class:`RowWriter`) keeps the output a valid file after every row: JSONL appends a
line, CSV appends a record under a header written first, and JSON keeps ``[ ... ]`` closed
by writing each new object over the closing bracket. Each row is flushed, so a killed run
keeps every row written before it.

``--resume`` (:func:`plan_resume`): the model commands write rows in input order, so an
interrupted output is a prefix of the work. Its rows are checked against the work units
they stand for (the id column, else the row's unchanged input columns); rows without an
``error`` are kept and not redone, failed rows are redone.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..datasets import Case, load_cases
from . import CLIError

TABLE_FORMATS = (".csv", ".json", ".jsonl")
ERROR_COLUMN = "error"


# --------------------------------------------------------------------------- cells


def cell(value: Any) -> str:
    """A value as one CSV cell: None is empty, lists and objects are JSON, booleans lowercase."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return repr(value)
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


def table_format(path: str | os.PathLike[str], *, what: str = "output",
                 allowed: Sequence[str] = TABLE_FORMATS) -> str:
    """The extension of ``path`` if it is one of ``allowed``; CLIError otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in allowed:
        found = f"'{Path(path).suffix}'" if Path(path).suffix else "no extension"
        raise CLIError(
            f"{os.fspath(path)}: unsupported {what} format ({found}); use {', '.join(allowed)}"
        )
    return suffix


# --------------------------------------------------------------------------- reading


@dataclass
class Row:
    """One input row: its raw columns, its derived case view, and where it is in the file."""

    index: int  #: 1-based data row number
    line: int | None  #: line of the file where the row starts
    data: dict[str, Any]  #: the row's columns as written in the file
    case: Case  #: the derived view (input, expected_output, system_prompt, ...)
    id: str  #: the id column's value, else ``row<index>``

    def get(self, key: str, default: Any = None) -> Any:
        """A derived value (``input``, ``expected_output``...) or a raw column."""
        value = self.case.get(key, None)
        return default if value is None else value


@dataclass
class Table:
    path: Path
    shown: str
    rows: list[Row]
    columns: list[str]  #: raw columns, in order of first appearance
    id_column: str | None = None

    def where(self, row: Row) -> str:
        """``FILE, line N (row K)`` for messages."""
        if row.line is None:
            return f"{self.shown}, row {row.index}"
        return f"{self.shown}, line {row.line} (row {row.index})"

    def has_column(self, name: str) -> bool:
        return name in self.columns or any(name in row.case for row in self.rows)


def read_table(path: str | os.PathLike[str], *, id_column: str | None = None,
               auto_id: bool = True) -> Table:
    """Read a dataset (CSV/JSON/JSONL). DatasetError (one line, located) on bad input.

    ``id_column`` names the column that identifies rows (must be non-empty and unique).
    Without it, a column named ``id`` is used when every row has a distinct one
    (``auto_id``), else rows are identified by position (``row<N>``).
    """
    shown = os.fspath(path)
    cases = load_cases(path, id_column=id_column)
    raw, columns = _raw_rows(Path(shown).expanduser(), shown, cases)
    if id_column is None and auto_id and "id" in columns:
        ids = [cell(data.get("id")).strip() for data in raw]
        if all(ids) and len(set(ids)) == len(ids):
            id_column = "id"
            cases = [Case(dict(c), id=i, row=c.row, line=c.line, source=c.source)
                     for c, i in zip(cases, ids)]
    rows = [
        Row(index=case.row, line=case.line, data=data, case=case, id=case.id)
        for case, data in zip(cases, raw)
    ]
    return Table(path=Path(shown), shown=shown, rows=rows, columns=columns, id_column=id_column)


def _raw_rows(file: Path, shown: str, cases: list[Case]) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows' columns as written in the file (without the derived chat/alias keys).

    ``load_cases`` has validated the file; this re-reads it with the datasets module's own
    parsers, before their chat/alias expansion. Should those internals change, the derived
    rows are used as they are (extra ``input``/``expected_output`` columns, no error).
    """
    try:
        from .. import datasets as ds

        text = ds._read_text(file, shown)  # same package, see docstring
        suffix = file.suffix.lower()
        parse = {".csv": ds._parse_csv, ".json": ds._parse_json, ".jsonl": ds._parse_jsonl}[suffix]
        parsed, columns = parse(text, shown)
        if len(parsed) != len(cases) or any(p.row != c.row for p, c in zip(parsed, cases)):
            raise ValueError("row mismatch")
        seen = dict.fromkeys(columns)
        for p in parsed:
            seen.update(dict.fromkeys(p.data))
        return [dict(p.data) for p in parsed], list(seen)
    except (AttributeError, ImportError, KeyError, ValueError, TypeError):
        rows = [dict(c) for c in cases]
        seen = {}
        for r in rows:
            seen.update(dict.fromkeys(r))
        return rows, list(seen)


def union_columns(*groups: Iterable[str]) -> list[str]:
    """Column names in order of first appearance."""
    out: dict[str, None] = {}
    for group in groups:
        out.update(dict.fromkeys(group))
    return list(out)


# --------------------------------------------------------------------------- writing


def write_table(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]],
                columns: Sequence[str]) -> int:
    """Write all ``rows`` at once (atomically: a temporary file renamed over ``path``)."""
    writer = RowWriter(path, columns)
    count = 0
    try:
        for row in rows:
            writer.write(row)
            count += 1
    finally:
        writer.close()
    return count


class RowWriter:
    """Write rows to CSV/JSON/JSONL one at a time; the file is valid after every row.

    ``keep`` rows are written first, and the file replaces any existing one atomically, so a
    resumed run never leaves a half-rewritten output. CSV writes ``columns`` as the header and
    ignores keys outside it; JSON and JSONL write every key of each row.
    """

    def __init__(self, path: str | os.PathLike[str], columns: Sequence[str],
                 keep: Sequence[Mapping[str, Any]] = ()) -> None:
        self.path = Path(path)
        self.format = table_format(path)
        self.columns = list(columns)
        self.count = 0
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: Any = None
        self._json_end = 0
        # build the starting content in a temporary file, then rename it into place
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                   dir=str(self.path.parent or Path(".")))
        try:
            with os.fdopen(fd, "wb") as handle:
                self._file = handle
                self._start()
                for row in keep:
                    self._write(row)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            self._file = None
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        self._file = open(self.path, "r+b")  # closed in close()
        self._file.seek(0, os.SEEK_END)

    # -- formats
    def _start(self) -> None:
        if self.format == ".csv":
            self._emit(self._csv_line(self.columns))
        elif self.format == ".json":
            self._file.write(b"[\n]\n")
            self._json_end = 4

    def _csv_line(self, values: Sequence[Any]) -> bytes:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow([cell(v) for v in values])
        return buffer.getvalue().encode("utf-8")

    def _emit(self, data: bytes) -> None:
        self._file.write(data)

    def _write(self, row: Mapping[str, Any]) -> None:
        if self.format == ".csv":
            self._emit(self._csv_line([row.get(c) for c in self.columns]))
        else:
            ordered = {c: _json_safe(row[c]) for c in self.columns if c in row}
            ordered.update({k: _json_safe(v) for k, v in row.items() if k not in ordered})
            text = json.dumps(ordered, ensure_ascii=False, default=str).encode("utf-8")
            if self.format == ".jsonl":
                self._emit(text + b"\n")
            else:
                # "[\n" + items joined by ",\n" + "\n]\n": write over the closing "\n]\n"
                if self.count == 0:
                    self._file.seek(2)
                    chunk = text + b"\n]\n"
                else:
                    self._file.seek(self._json_end - 3)
                    chunk = b",\n" + text + b"\n]\n"
                self._file.write(chunk)
                self._json_end = self._file.tell()
                self._file.truncate()
        self.count += 1

    def write(self, row: Mapping[str, Any]) -> None:
        """Append one row and flush it to the operating system."""
        if self._file is None:
            raise ValueError("writer is closed")
        self._write(row)
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError:
                pass
            self._file.close()
            self._file = None

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- resume


def read_partial(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The complete rows of an output that may have been cut short by a kill.

    A torn last record (no final newline, an unclosed JSON list) is dropped; damage anywhere
    else is a CLIError naming the line.
    """
    file = Path(path)
    shown = os.fspath(path)
    fmt = table_format(path)
    try:
        text = file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CLIError(f"{shown}: cannot resume: the file is not valid UTF-8 ({exc.reason})") from None
    except OSError as exc:
        raise CLIError(f"{shown}: cannot resume: {exc.strerror or exc}") from None
    if not text.strip():
        return []
    if fmt == ".jsonl":
        return _partial_jsonl(text, shown)
    if fmt == ".csv":
        return _partial_csv(text, shown)
    return _partial_json(text, shown)


def _partial_jsonl(text: str, shown: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):  # the last line, without its newline: torn by a kill
                break
            raise CLIError(
                f"{shown}, line {number}: cannot resume: invalid JSON ({exc.msg}); "
                "fix the line or start over with --force"
            ) from None
        if not isinstance(item, dict):
            raise CLIError(f"{shown}, line {number}: cannot resume: expected a JSON object")
        rows.append(item)
    return rows


def _partial_csv(text: str, shown: str) -> list[dict[str, Any]]:
    torn = not text.endswith("\n")
    reader = csv.reader(io.StringIO(text, newline=""))
    records: list[tuple[int, list[str]]] = []
    prev = 0
    try:
        for record in reader:
            start, prev = prev + 1, reader.line_num
            if record and any(v.strip() for v in record):
                records.append((start, record))
    except csv.Error as exc:
        if not torn:
            raise CLIError(f"{shown}, line {prev + 1}: cannot resume: malformed CSV ({exc})") from None
    if torn and records:
        records.pop()
    if not records:
        return []
    header = records[0][1]
    rows = []
    for line, record in records[1:]:
        if len(record) != len(header):
            raise CLIError(
                f"{shown}, line {line}: cannot resume: expected {len(header)} fields like the "
                f"header, found {len(record)}"
            )
        rows.append(dict(zip(header, record)))
    return rows


def _partial_json(text: str, shown: str) -> list[dict[str, Any]]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = None
    if isinstance(doc, list):
        items = doc
    else:
        items = []
        decoder = json.JSONDecoder()
        start = text.find("[")
        if start < 0:
            raise CLIError(f"{shown}: cannot resume: not a JSON list of rows")
        i = start + 1
        while True:
            while i < len(text) and text[i] in " \t\r\n,":
                i += 1
            if i >= len(text) or text[i] == "]":
                break
            try:
                value, i = decoder.raw_decode(text, i)
            except json.JSONDecodeError:
                break  # the torn end of a killed run
            items.append(value)
    rows = []
    for n, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise CLIError(f"{shown}: cannot resume: element {n} of the list is not an object")
        rows.append(item)
    return rows


@dataclass
class Unit:
    """One piece of work that becomes one output row."""

    index: int  #: position in the output, from 0
    row: Row
    #: columns the output row of this unit must carry with these values (resume matching)
    expect: dict[str, Any] = field(default_factory=dict)
    payload: Any = None

    @property
    def label(self) -> str:
        default = f"row{self.row.index}"
        who = f"row {self.row.index}" if self.row.id == default else f"row {self.row.index} (id {self.row.id})"
        return who


@dataclass
class ResumePlan:
    keep: list[dict[str, Any]]  #: the output's leading finished rows, rewritten as they are
    done: dict[int, dict[str, Any]]  #: finished rows after the first failed one, by unit index
    redo: int  #: failed rows that will be redone
    found: int  #: complete rows found in the output

    @property
    def skipped(self) -> int:
        return len(self.keep) + len(self.done)


def plan_resume(path: str | os.PathLike[str], units: Sequence[Unit]) -> ResumePlan:
    """Match an interrupted output to ``units``: which rows are finished, which to redo."""
    shown = os.fspath(path)
    existing = read_partial(path)
    if len(existing) > len(units):
        raise CLIError(
            f"{shown}: cannot resume: it has {len(existing)} rows but the input makes only "
            f"{len(units)}; the input changed since it was written (use --force to start over)"
        )
    keep: list[dict[str, Any]] = []
    done: dict[int, dict[str, Any]] = {}
    redo = 0
    for k, (row, unit) in enumerate(zip(existing, units)):
        for column, value in unit.expect.items():
            if cell(row.get(column)) != cell(value):
                raise CLIError(
                    f"{shown}: cannot resume: its row {k + 1} does not match {unit.label} of the "
                    f"input (column {column!r} is {cell(row.get(column))[:60]!r}, expected "
                    f"{cell(value)[:60]!r}); the input changed since it was written "
                    "(use --force to start over)"
                )
        failed = bool(cell(row.get(ERROR_COLUMN)).strip())
        if failed:
            redo += 1
        elif redo == 0:
            keep.append(row)
        else:
            done[unit.index] = row
    return ResumePlan(keep=keep, done=done, redo=redo, found=len(existing))


def check_output_path(out: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]], *,
                      resume: bool = False, force: bool = False, guard: bool = True) -> None:
    """Refuse to overwrite an input, or (``guard``) an existing output without --force/--resume."""
    target = Path(out).expanduser()
    for source in inputs:
        try:
            same = target.exists() and Path(source).expanduser().resolve() == target.resolve()
        except OSError:
            same = False
        if same:
            raise CLIError(f"{os.fspath(out)}: the output would overwrite the input; write to another file")
    if target.is_dir():
        raise CLIError(f"{os.fspath(out)}: is a directory; give a file name with .csv, .json or .jsonl")
    if guard and target.exists() and not (resume or force):
        raise CLIError(
            f"{os.fspath(out)}: already exists; pass --resume to continue it (finished rows are "
            "not redone) or --force to overwrite it"
        )
