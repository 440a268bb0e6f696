"""Reading and writing CSV, JSON and JSONL tables by extension, incrementally, with resume.

Reading uses :func:`pytest_llmjudge.load_cases`' steps, so a dataset the test suite accepts is
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

import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..datasets import Case, build_cases, read_rows
from ..datasets.tables import FORMATS as TABLE_FORMATS, TableError, cell, csv_line, parse_rows
from . import CLIError

__all__ = [
    "ERROR_COLUMN", "TABLE_FORMATS", "ResumePlan", "Row", "RowWriter", "Table", "Unit", "cell",
    "check_output_path", "plan_resume", "read_partial", "read_table", "table_format", "union_columns",
    "write_table",
]

ERROR_COLUMN = "error"


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
        return TableError("", line=row.line, row=row.index).where(self.shown)

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
    rows_read, file_columns, file = read_rows(path)
    raw = [dict(r.data) for r in rows_read]  # as written, before the expansion below
    columns = union_columns(file_columns, *raw)
    cases = build_cases(rows_read, file_columns, file, shown, id_column=id_column)
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
            self._emit(csv_line(self.columns).encode("utf-8"))
        elif self.format == ".json":
            self._file.write(b"[\n]\n")
            self._json_end = 4

    def _emit(self, data: bytes) -> None:
        self._file.write(data)

    def _write(self, row: Mapping[str, Any]) -> None:
        if self.format == ".csv":
            self._emit(csv_line([row.get(c) for c in self.columns]).encode("utf-8"))
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
    try:
        rows, _ = parse_rows(text, fmt, torn_tail=True)
    except TableError as exc:
        problem = exc.problem
        if exc.reason:  # the parser's words, e.g. "invalid JSON (Expecting value)"
            problem = f"{problem.partition(':')[0]} ({exc.reason})"
        fix = "; fix the line or start over with --force" if exc.line is not None else ""
        raise CLIError(f"{TableError('', line=exc.line).where(shown)}: cannot resume: {problem}{fix}") from None
    return [row.data for row in rows]


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
