"""Tabular files in and out: CSV, JSON and JSONL rows, each with the line where it starts.

Every reader of the package goes through here: datasets (:func:`pytest_llmjudge.load_cases`),
the CLI's inputs and the outputs it resumes, baselines and the results file. A problem raises
:class:`TableError`, which says where (line, column, row) and what; each caller words it for
its own users with :meth:`TableError.message`.

* CSV is parsed by pandas (imported on first use) with every value a string; an empty field is
  ``""``. Blank lines are skipped; the first non-blank record is the header. pandas' own
  errors are turned into located problems in one place, :func:`_pandas_problem`.
* JSON is a list of objects, or an object with one key holding that list; JSONL is one object
  per line (split on ``"\\n"`` only, so U+2028 inside a string is not a line break).
* ``torn_tail`` readers accept a file cut short by a kill: its incomplete last record is dropped.

Writing: :func:`csv_line` is the one CSV record writer (what :func:`cell` makes of a value).
It is the stdlib's writer: outputs and the results file write one record at a time, and a
DataFrame per record would be the cost of pandas there.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "FORMATS", "TableError", "TableRow", "cell", "csv_line", "decode_utf8", "kind_of", "parse_csv",
    "parse_json", "parse_jsonl", "parse_rows", "to_frame",
]

#: the table formats, by file extension
FORMATS: tuple[str, ...] = (".csv", ".json", ".jsonl")

_WS = re.compile(r"[ \t\n\r]*")
#: marks a row pandas found longer than the header (NUL cannot occur in a parsed CSV value)
_LONG = "\x00long-row:"


class TableError(ValueError):
    """A problem in a table, with where it is: ``line`` (and ``column``) of the file, data ``row``."""

    def __init__(self, problem: str, *, line: int | None = None, column: int | None = None,
                 row: int | None = None, hint: str = "", reason: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.line = line
        self.column = column
        self.row = row
        #: how to fix it, when there is one obvious fix
        self.hint = hint
        #: the parser's own words (e.g. ``json``'s "Expecting value"), where the problem wraps them
        self.reason = reason

    def where(self, shown: str) -> str:
        """``FILE, line L, column C (row R)``, with the parts that are known."""
        at = shown
        if self.line is not None:
            at += f", line {self.line}"
            if self.column is not None:
                at += f", column {self.column}"
            if self.row is not None:
                at += f" (row {self.row})"
        elif self.row is not None:
            at += f", row {self.row}"
        return at

    def message(self, shown: str) -> str:
        """The one-line message: where, what, and the fix."""
        hint = f"; {self.hint}" if self.hint else ""
        return f"{self.where(shown)}: {self.problem}{hint}"


@dataclass
class TableRow:
    """One data row: its values, its 1-based data row number and the line where it starts."""

    data: dict[str, Any]
    row: int
    line: int | None


def kind_of(value: Any) -> str:
    """``a string``, ``a list``... for messages about JSON values."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and math.isnan(value) else value


def decode_utf8(data: bytes) -> str:
    """The text of a UTF-8 file; a leading BOM is dropped. TableError locates a bad byte."""
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TableError(
            f"not valid UTF-8 (byte 0x{data[bom + exc.start]:02x} at offset {bom + exc.start})",
            line=data.count(b"\n", 0, bom + exc.start) + 1, hint="save the file as UTF-8",
        ) from None


# --------------------------------------------------------------------------- CSV


def _pandas_records(text: str, *, lenient: bool, nrows: int | None = None) -> tuple[list[list[str]], bool]:
    """Every CSV record pandas reads, blank ones included, and whether one was longer than the header.

    Strict, pandas raises its ParserError for any problem. ``lenient`` keeps a longer record
    whole (pandas hands it to a callable) and skips what its parser cannot read (an unclosed
    quote at the end).
    """
    import pandas as pd  # deferred: keeps `import pytest_llmjudge` fast

    long: list[list[str]] = []

    def keep_long(fields: list[str]) -> list[str]:
        long.append(list(fields))
        return [f"{_LONG}{len(long) - 1}"]

    frame = pd.read_csv(
        io.StringIO(text),
        header=None,  # the header is checked here: pandas would silently turn an extra field
        dtype=str,  # on every row into an index column
        keep_default_na=False,  # "NA" stays a string; a missing field (short row) is NaN, "" is ""
        skip_blank_lines=False,  # blank lines stay records, so the lines of every record add up
        engine="python",  # the C engine pads a short row with "", losing its field count
        on_bad_lines=keep_long if lenient else "error",
        nrows=nrows,
    )
    records = []
    for values in frame.itertuples(index=False, name=None):
        first = values[0]
        if isinstance(first, str) and first.startswith(_LONG):
            records.append(long[int(first[len(_LONG):])])
        else:  # padding of a short record is NaN, and only at its end
            records.append([v for v in values if isinstance(v, str)])
    return records, bool(long)


def _readable(text: str, most: int) -> int:
    """How many records pandas reads before its first error (at most ``most``): a bisection
    over ``nrows``, so that an error pandas reports without a place gets one."""
    import pandas as pd

    low, high = 0, most
    while low < high:
        middle = (low + high + 1) // 2
        try:
            _pandas_records(text, lenient=False, nrows=middle)
        except (pd.errors.ParserError, csv.Error):  # with nrows, pandas lets the csv engine's error out
            high = middle - 1
        else:
            low = middle
    return low


def _pandas_problem(message: str) -> tuple[bool, TableError]:
    """The one place that reads pandas' (and its csv engine's) error words: (unclosed quote, error).

    Only for problems pandas reports with a message alone; rows of the wrong length are found
    from the records themselves.
    """
    if "unexpected end of data" in message or "EOF inside string" in message:
        return True, TableError("a quoted value is never closed (unmatched '\"')",
                                hint='close the quote or double a literal quote ("")')
    return False, TableError(f"malformed CSV: {' '.join(message.split())}", reason=message)


def parse_csv(text: str, *, exact_width: bool = True, torn_tail: bool = False,
              ) -> tuple[list[TableRow], list[str]]:
    """The data rows of a CSV text and its header.

    ``exact_width``: a row with more or fewer fields than the header is a TableError; else a
    short row lacks the missing columns and a long row's extra fields are dropped.
    """
    lines = text.split("\n")
    lead = 0
    while lead < len(lines) and not lines[lead].strip():
        lead += 1
    body = "\n".join(lines[lead:])
    if not body.strip():
        return [], []
    import pandas as pd

    problem: TableError | None = None
    unclosed = False
    try:
        raw, _ = _pandas_records(body, lenient=False)
    except pd.errors.ParserError as exc:
        raw, long = _pandas_records(body, lenient=True)
        if not long:  # a longer row is located below, from the records
            unclosed, problem = _pandas_problem(str(exc))
            if not unclosed:  # the lenient parse skipped the bad record: keep what precedes it
                raw = raw[: _readable(body, len(raw))]
    records: list[tuple[int, list[str]]] = []
    line = lead + 1
    for values in raw:
        if len(values) > 1 or (values and values[0].strip()):
            records.append((line, values))
        line += 1 + sum(v.count("\n") for v in values)
    if problem is not None:
        if not (unclosed and torn_tail):
            problem.line = line  # the bad record (an unclosed quote's) starts after the records read
            raise problem
    elif torn_tail and not text.endswith("\n") and records:
        records.pop()  # cut short by a kill
    if not records:
        return [], []
    header_line, header = records[0]
    columns: list[str] = []
    seen: dict[str, int] = {}
    for i, name in enumerate(header):
        col = name if name != "" else f"Unnamed: {i}"
        if col in seen:
            raise TableError(
                f"duplicate column name {col!r} in the header (columns {seen[col] + 1} and {i + 1})",
                line=header_line, hint="rename one of them",
            )
        seen[col] = i
        columns.append(col)
    rows = []
    for n, (start, values) in enumerate(records[1:], start=1):
        if len(values) != len(columns) and exact_width:
            raise TableError(
                f"expected {len(columns)} fields like the header, found {len(values)}",
                line=start, row=n,
                hint='quote values that contain commas ("a, b")' if len(values) > len(columns)
                else "write an empty value as an empty field (a trailing comma)",
            )
        rows.append(TableRow(dict(zip(columns, values)), n, start))
    return rows, columns


def cell(value: Any) -> str:
    """A value as one CSV cell: None is empty, lists and objects are JSON, booleans lowercase."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def csv_line(values: Iterable[Any], *, as_cell: Callable[[Any], Any] = cell) -> str:
    """One CSV record (with its newline) of ``values``, each made a cell by ``as_cell``."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([as_cell(v) for v in values])
    return buffer.getvalue()


# --------------------------------------------------------------------------- JSON


def _skip_ws(text: str, i: int) -> int:
    """Index of the first character at or after ``i`` that is not JSON whitespace."""
    match = _WS.match(text, i)  # always matches (maybe the empty string) up to len(text)
    return match.end() if match else i


def _json_error(exc: json.JSONDecodeError, *, hint: str = "") -> TableError:
    return TableError(f"invalid JSON: {exc.msg}{hint}", line=exc.lineno, column=exc.colno, reason=exc.msg)


def parse_json(text: str) -> tuple[list[TableRow], list[str]]:
    """The rows of a JSON list of objects, or of an object with one key holding that list."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _json_error(exc) from None
    items = doc
    top = text.count("\n", 0, _skip_ws(text, 0)) + 1
    if isinstance(doc, dict):
        lists = [k for k, v in doc.items() if isinstance(v, list)]
        if len(doc) == 1 and lists:
            items = doc[lists[0]]
        else:
            keys = ", ".join(list(doc)[:8]) or "(none)"
            raise TableError(
                "top-level JSON must be a list of objects or an object with a single key holding "
                f'that list (like {{"cases": [...]}}); got an object with keys {keys} (wrap a single '
                "case in [ ])", line=top,
            )
    elif not isinstance(doc, list):
        raise TableError(f"top-level JSON must be a list of objects, got {kind_of(doc)}", line=top)
    lines = _json_item_lines(text, len(items))
    rows = []
    columns: dict[str, None] = {}
    for i, item in enumerate(items):
        line = lines[i] if lines else None
        if not isinstance(item, dict):
            raise TableError(f"list element {i} (row {i + 1}) must be an object, got {kind_of(item)}",
                             line=line)
        columns.update(dict.fromkeys(item))
        rows.append(TableRow({k: _clean(v) for k, v in item.items()}, i + 1, line))
    return rows, list(columns)


def _json_item_lines(text: str, count: int) -> list[int]:
    """Start line of each element of the file's list (empty if it cannot be located)."""
    decoder = json.JSONDecoder()
    try:
        i = _skip_ws(text, 0)
        if text[i] == "{":  # {"key": [...]}
            i = _skip_ws(text, i + 1)
            _, i = decoder.raw_decode(text, i)  # the key
            i = _skip_ws(text, i)
            if text[i] != ":":
                return []
            i = _skip_ws(text, i + 1)
        if text[i] != "[":
            return []
        offsets: list[int] = []
        i = _skip_ws(text, i + 1)
        while len(offsets) < count:
            offsets.append(i)
            _, i = decoder.raw_decode(text, i)
            i = _skip_ws(text, i)
            if text[i] == ",":
                i = _skip_ws(text, i + 1)
    except (ValueError, IndexError):
        return []
    lines, line, prev = [], 1, 0
    for off in offsets:
        line += text.count("\n", prev, off)
        prev = off
        lines.append(line)
    return lines


def _json_prefix(text: str) -> list[Any]:
    """The complete elements of a JSON list whose end was cut off by a kill."""
    start = text.find("[")
    if start < 0:
        raise TableError("not a JSON list of rows")
    items: list[Any] = []
    decoder = json.JSONDecoder()
    i = start + 1
    while True:
        while i < len(text) and text[i] in " \t\r\n,":
            i += 1
        if i >= len(text) or text[i] == "]":
            return items
        try:
            value, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            return items  # the torn end
        items.append(value)


def parse_jsonl(text: str, *, torn_tail: bool = False) -> tuple[list[TableRow], list[str]]:
    """The rows of a JSONL text: one object per line; blank lines are skipped."""
    rows: list[TableRow] = []
    columns: dict[str, None] = {}
    # split on "\n" only: str.splitlines() would also split on U+2028 inside strings
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            if torn_tail and number == len(lines):  # the last line, without its newline
                break
            truncated = exc.pos >= len(line.rstrip())  # e.g. a pretty-printed object
            hint = "; JSONL needs one complete object per line" if truncated else ""
            raise TableError(f"invalid JSON: {exc.msg}{hint}", line=number, column=exc.colno,
                             reason=exc.msg) from None
        if not isinstance(item, dict):
            raise TableError(f"expected a JSON object, got {kind_of(item)}", line=number)
        columns.update(dict.fromkeys(item))
        rows.append(TableRow({k: _clean(v) for k, v in item.items()}, len(rows) + 1, number))
    return rows, list(columns)


def parse_rows(text: str, suffix: str, *, torn_tail: bool = False, exact_width: bool = True,
               ) -> tuple[list[TableRow], list[str]]:
    """The rows of a table's text by its extension (``.csv``, ``.json`` or ``.jsonl``).

    ``torn_tail``: the file may have been cut short by a kill (an output being resumed); its
    incomplete last record is dropped, and a JSON list may be unclosed.
    """
    if suffix == ".csv":
        return parse_csv(text, exact_width=exact_width, torn_tail=torn_tail)
    if suffix == ".jsonl":
        return parse_jsonl(text, torn_tail=torn_tail)
    if not torn_tail:
        return parse_json(text)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        doc = None
    items = doc if isinstance(doc, list) else _json_prefix(text)
    rows = []
    for n, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise TableError(f"element {n} of the list is not an object")
        rows.append(TableRow(item, n, None))
    return rows, list(dict.fromkeys(k for r in rows for k in r.data))


def to_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """A DataFrame of ``rows``; a ``case`` or ``run`` object becomes ``case.<key>`` / ``run.<key>``
    columns (as a CSV results file names them)."""
    import pandas as pd

    flat = []
    for row in rows:
        out = {}
        for key, value in row.items():
            if key in ("case", "run") and isinstance(value, Mapping):
                out.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                out[key] = value
        flat.append(out)
    return pd.DataFrame.from_records(flat)
