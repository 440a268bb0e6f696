"""Load test cases from dataset files: CSV, JSON and JSONL.

Rules, for every format:

* ``.csv``: read with pandas (imported only here), every value a string; an empty cell is
  ``""``. The first non-blank line is the header; blank lines are skipped. Every row has as
  many fields as the header: a missing or an extra field is an error. A ``messages``
  column holding a JSON string is decoded (see chat form below).
* ``.json``: a list of objects, or an object with exactly one key holding that list
  (``{"cases": [...]}``); other keys would be silently ignored, so they are an error.
* ``.jsonl``: one object per line; blank lines are skipped.
* The file must be UTF-8; a leading UTF-8 BOM is accepted.
* Chat form: a row with ``messages`` (a list of ``{"role", "content"}`` objects) also gets
  ``input`` (the last user turn), ``expected_output`` (the first assistant turn after the
  last user turn, else the last assistant turn, else None) and ``system_prompt`` (the first
  system or developer turn, else None). ``content`` may be a string, null, or a list of
  ``{"type": "text", "text": ...}`` parts (their texts are joined with newlines).
* Aliases: ``prompt`` is also exposed as ``input`` and ``completion`` as ``expected_output``.

Derived keys (chat form and aliases) never replace a value the row already has: they are
set only where the key is missing, None or ``""``. The original keys are kept.

Row numbers (``Case.row`` and the default id ``row<N>``) count data rows from 1 in file
order, so they are stable when sampling. ``Case.line`` is the line of the file where the
row starts. Every problem raises :class:`DatasetError` with a one-line message naming the
file, the line or row, and what is wrong.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import math
import operator
import os
import random
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from .errors import DatasetError

__all__ = ["DEFAULT_SEED", "SUPPORTED_EXTENSIONS", "Case", "case_id", "load_cases"]

StrPath = str | os.PathLike[str]

#: File extensions :func:`load_cases` understands (matched case-insensitively).
SUPPORTED_EXTENSIONS: tuple[str, ...] = (".csv", ".json", ".jsonl")

#: Default seed for ``sample`` so that every run (and every xdist worker) draws the same rows.
DEFAULT_SEED = 0

_CHAT_ROLES_SYSTEM = ("system", "developer")
_ALIASES = (("prompt", "input"), ("completion", "expected_output"))
_WS = re.compile(r"[ \t\n\r]*")


# --------------------------------------------------------------------------- Case


class Case(Mapping[str, Any]):
    """One dataset row: a read-only mapping of column name to value.

    ``case["input"]`` and ``case.input`` both work. The attributes ``id``, ``row``,
    ``line`` and ``source`` (and the mapping methods) shadow columns of the same name;
    use ``case["id"]`` for those.
    """

    __slots__ = ("_data", "_id", "_row", "_line", "_source")

    _data: dict[str, Any]
    _id: str
    _row: int
    _line: int | None
    _source: Path | None

    def __init__(
        self,
        data: Mapping[str, Any],
        *,
        id: str,  # noqa: A002 - the public name of the field
        row: int = 0,
        line: int | None = None,
        source: StrPath | None = None,
    ) -> None:
        object.__setattr__(self, "_data", dict(data))
        object.__setattr__(self, "_id", str(id))
        object.__setattr__(self, "_row", row)
        object.__setattr__(self, "_line", line)
        object.__setattr__(self, "_source", None if source is None else Path(source))

    # identity ---------------------------------------------------------------
    @property
    def id(self) -> str:
        """The test id: the ``id_column`` value, else ``row<N>``."""
        return self._id

    @property
    def row(self) -> int:
        """1-based data row number in the file (the header is not a row)."""
        return self._row

    @property
    def line(self) -> int | None:
        """Line of the file where the row starts (None when unknown)."""
        return self._line

    @property
    def source(self) -> Path | None:
        """The dataset file the row came from."""
        return self._source

    # mapping ----------------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        try:
            data = object.__getattribute__(self, "_data")
        except AttributeError:  # half-built instance
            raise AttributeError(name) from None
        try:
            return data[name]
        except KeyError:
            cols = ", ".join(data) or "(none)"
            raise AttributeError(
                f"case {self._id!r} has no column {name!r}; columns: {cols}",
                name=name,
                obj=self,
            ) from None

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError(f"Case is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"Case is immutable: cannot delete {name!r}")

    def __dir__(self) -> Iterable[str]:
        return [*super().__dir__(), *(k for k in self._data if k.isidentifier())]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Case):
            return (
                self._id == other._id
                and self._row == other._row
                and self._source == other._source
                and self._data == other._data
            )
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self._id, self._row, self._source))

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_case, (self._data, self._id, self._row, self._line, self._source))

    def __repr__(self) -> str:
        value = self._data.get("input")
        if value is None:
            return f"Case(id={self._id!r}, columns={list(self._data)!r})"
        text = value if isinstance(value, str) else repr(value)
        if len(text) > 40:
            text = text[:39] + "…"
        return f"Case(id={self._id!r}, input={text!r})"


def _rebuild_case(
    data: dict[str, Any], id_: str, row: int, line: int | None, source: Path | None
) -> Case:
    return Case(data, id=id_, row=row, line=line, source=source)


def case_id(case: object) -> str | None:
    """The id of a :class:`Case`; usable as ``ids=case_id`` in ``pytest.mark.parametrize``.

    Returns None for any other value, so pytest falls back to its default id.
    """
    return case.id if isinstance(case, Case) else None


# --------------------------------------------------------------------------- loading


class _Raw:
    """A parsed row before validation: its values, data row number and start line."""

    __slots__ = ("data", "row", "line")

    def __init__(self, data: dict[str, Any], row: int, line: int | None) -> None:
        self.data = data
        self.row = row
        self.line = line


def load_cases(
    path: StrPath,
    *,
    id_column: str | None = None,
    sample: int | None = None,
    seed: int | str | None = None,
    required: Sequence[str] | None = None,
    base_dir: StrPath | None = None,
) -> list[Case]:
    """Load the rows of a CSV, JSON or JSONL file as :class:`Case` objects, in file order.

    ``path`` is relative to ``base_dir`` when that is given and ``path`` is relative.
    ``sample=N`` keeps N rows drawn with ``random.Random(seed)`` (``seed`` None means
    :data:`DEFAULT_SEED`, so the draw is the same on every run), in file order; N larger
    than the dataset keeps every row. ``required`` columns must be present and non-empty
    (not None, not blank, not an empty list or object) in every row. Ids come from
    ``id_column`` (stringified, non-empty, unique) or are ``row<N>``.
    """
    shown = os.fspath(path)
    orig_sample = sample
    file = Path(shown).expanduser()
    if base_dir is not None and not file.is_absolute():
        file = Path(base_dir).expanduser() / file

    if sample is not None:
        try:
            sample = -1 if isinstance(sample, bool) else operator.index(sample)
        except TypeError:
            sample = -1
        if sample <= 0:
            raise DatasetError(f"{shown}: sample must be a positive integer, got {orig_sample!r}")
    if isinstance(required, str):
        required = [required]

    text = _read_text(file, shown)
    suffix = file.suffix.lower()
    if not text.strip():
        raise DatasetError(f"{shown}: the file is empty; a dataset needs at least one row")
    if suffix == ".csv":
        rows, columns = _parse_csv(text, shown)
    elif suffix == ".json":
        rows, columns = _parse_json(text, shown)
    else:
        rows, columns = _parse_jsonl(text, shown)
    if not rows:
        what = "a header but no data rows" if suffix == ".csv" else "no rows"
        raise DatasetError(f"{shown}: the dataset has {what}")

    for raw in rows:
        _normalize(raw, shown, from_csv=suffix == ".csv")
    present = _columns(rows, columns)
    for name in required or ():
        _check_required(rows, name, shown, present)
    ids = _make_ids(rows, id_column, shown, present)

    if sample is not None and sample < len(rows):
        rng = random.Random(DEFAULT_SEED if seed is None else seed)
        picked = sorted(rng.sample(range(len(rows)), sample))
    else:
        picked = list(range(len(rows)))
    return [
        Case(rows[i].data, id=ids[i], row=rows[i].row, line=rows[i].line, source=file)
        for i in picked
    ]


def _where(shown: str, raw: _Raw) -> str:
    if raw.line is None:
        return f"{shown}, row {raw.row}"
    return f"{shown}, line {raw.line} (row {raw.row})"


def _kind(value: Any) -> str:
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


def _read_text(file: Path, shown: str) -> str:
    if not file.exists():
        extra = "" if str(file) == shown and file.is_absolute() else f" (looked for {file.absolute()})"
        raise DatasetError(f"{shown}: dataset file not found{extra}")
    if file.is_dir():
        raise DatasetError(f"{shown}: is a directory, not a dataset file")
    if file.suffix.lower() not in SUPPORTED_EXTENSIONS:
        found = f"'{file.suffix}'" if file.suffix else "no extension"
        raise DatasetError(
            f"{shown}: unsupported dataset format ({found}); "
            f"supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{shown}: cannot read the file: {exc.strerror or exc}") from None
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, bom + exc.start) + 1
        byte = data[bom + exc.start]
        raise DatasetError(
            f"{shown}, line {line}: not valid UTF-8 (byte 0x{byte:02x} at offset "
            f"{bom + exc.start}); save the file as UTF-8"
        ) from None


# --------------------------------------------------------------------------- CSV


def _csv_record_lines(text: str) -> list[tuple[int, int]]:
    """(start line, field count) of every non-blank CSV record, as pandas sees them."""
    out: list[tuple[int, int]] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    prev = 0
    try:
        for record in reader:
            start, prev = prev + 1, reader.line_num
            if not record or (len(record) == 1 and not record[0].strip()):
                continue
            out.append((start, len(record)))
    except csv.Error:
        pass
    return out


def _parse_csv(text: str, shown: str) -> tuple[list[_Raw], list[str]]:
    import pandas as pd  # deferred: keeps `import pytest_llmjudge` fast

    try:
        frame = pd.read_csv(
            io.StringIO(text),
            header=None,  # the header is checked here: pandas would silently turn an
            dtype=str,  # extra field on every row into an index column
            keep_default_na=False,
            encoding="utf-8",
        )
    except pd.errors.EmptyDataError:
        raise DatasetError(f"{shown}: the file is empty; a dataset needs at least one row") from None
    except pd.errors.ParserError as exc:
        raise _csv_parser_error(str(exc), text, shown) from None

    records: list[list[Any]] = frame.values.tolist()
    header, body = records[0], records[1:]
    columns: list[str] = []
    seen: dict[str, int] = {}
    for i, name in enumerate(header):
        col = name if isinstance(name, str) and name != "" else f"Unnamed: {i}"
        if col in seen:
            raise DatasetError(
                f"{shown}, line 1: duplicate column name {col!r} in the header "
                f"(columns {seen[col] + 1} and {i + 1}); rename one of them"
            )
        seen[col] = i
        columns.append(col)

    lines = _csv_record_lines(text)
    if len(lines) != len(records):
        lines = []
    for n, (line, count) in enumerate(lines[1:], start=1):
        if count < len(columns):  # pandas pads a short row with empty values: never silently
            raise DatasetError(
                f"{shown}, line {line} (row {n}): expected {len(columns)} fields like the header, "
                f"found {count}; write an empty value as an empty field (a trailing comma)"
            )
    rows = []
    for n, values in enumerate(body, start=1):
        data = {c: _clean(v) for c, v in zip(columns, values)}
        rows.append(_Raw(data, n, lines[n][0] if lines else None))
    return rows, columns


def _csv_parser_error(message: str, text: str, shown: str) -> DatasetError:
    """A DatasetError for pandas' ParserError, located on the physical line of the file."""
    message = " ".join(message.replace("Error tokenizing data. C error: ", "").split())
    ragged = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message)
    if ragged:
        expected, line, saw = (int(g) for g in ragged.groups())
        records = _csv_record_lines(text)
        row = ""
        if records:
            expected = records[0][1]
            found = next(((i, ln, n) for i, (ln, n) in enumerate(records[1:], start=1) if n > expected), None)
            if found is not None:
                row, line, saw = f" (row {found[0]})", found[1], found[2]
        return DatasetError(
            f"{shown}, line {line}{row}: expected {expected} fields like the header, found {saw}; "
            f'quote values that contain commas ("a, b")'
        )
    if "EOF inside string" in message:
        # the unclosed quote swallows the rest of the file: it opens in the last record
        # (pandas' "row N" counts blank lines but not the lines inside quoted values)
        records = _csv_record_lines(text)
        where = f"line {records[-1][0]}" if records else "near the end"
        return DatasetError(
            f'{shown}, {where}: a quoted value is never closed (unmatched \'"\'); '
            f'close the quote or double a literal quote ("")'
        )
    return DatasetError(f"{shown}: malformed CSV: {message}")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


# --------------------------------------------------------------------------- JSON


def _parse_json(text: str, shown: str) -> tuple[list[_Raw], list[str]]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"{shown}, line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}"
        ) from None
    items = doc
    top = text.count("\n", 0, _skip_ws(text, 0)) + 1
    if isinstance(doc, dict):
        lists = [k for k, v in doc.items() if isinstance(v, list)]
        if len(doc) == 1 and lists:
            items = doc[lists[0]]
        else:
            keys = ", ".join(list(doc)[:8]) or "(none)"
            raise DatasetError(
                f"{shown}, line {top}: top-level JSON must be a list of objects or an object "
                f'with a single key holding that list (like {{"cases": [...]}}); '
                f"got an object with keys {keys} (wrap a single case in [ ])"
            )
    elif not isinstance(doc, list):
        raise DatasetError(
            f"{shown}, line {top}: top-level JSON must be a list of objects, got {_kind(doc)}"
        )

    lines = _json_item_lines(text, len(items))
    rows = []
    columns: dict[str, None] = {}
    for i, item in enumerate(items):
        line = lines[i] if lines else None
        if not isinstance(item, dict):
            at = f", line {line}" if line else ""
            raise DatasetError(
                f"{shown}{at}: list element {i} (row {i + 1}) must be an object, "
                f"got {_kind(item)}"
            )
        columns.update(dict.fromkeys(item))
        rows.append(_Raw({k: _clean(v) for k, v in item.items()}, i + 1, line))
    return rows, list(columns)


def _skip_ws(text: str, i: int) -> int:
    """Index of the first character at or after ``i`` that is not JSON whitespace."""
    match = _WS.match(text, i)  # always matches (maybe the empty string) up to len(text)
    return match.end() if match else i


def _json_item_lines(text: str, count: int) -> list[int]:
    """Start line of each element of the dataset's list (empty if it cannot be located)."""
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


def _parse_jsonl(text: str, shown: str) -> tuple[list[_Raw], list[str]]:
    rows: list[_Raw] = []
    columns: dict[str, None] = {}
    # split on "\n" only: str.splitlines() would also split on U+2028 inside strings
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            truncated = exc.pos >= len(line.rstrip())  # e.g. a pretty-printed object
            hint = "; JSONL needs one complete object per line" if truncated else ""
            raise DatasetError(
                f"{shown}, line {number}, column {exc.colno}: invalid JSON: {exc.msg}{hint}"
            ) from None
        if not isinstance(item, dict):
            raise DatasetError(
                f"{shown}, line {number}: expected a JSON object, got {_kind(item)}"
            )
        columns.update(dict.fromkeys(item))
        rows.append(_Raw({k: _clean(v) for k, v in item.items()}, len(rows) + 1, number))
    return rows, list(columns)


# --------------------------------------------------------------------------- rows


def _missing(data: Mapping[str, Any], key: str) -> bool:
    value = data.get(key)
    return value is None or value == ""


def _is_empty(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, dict)):
        return not value
    return False


def _normalize(raw: _Raw, shown: str, *, from_csv: bool) -> None:
    """Expand the chat form and the aliases of one row, in place."""
    data = raw.data
    messages = data.get("messages")
    if messages is not None and messages != "":
        if from_csv and isinstance(messages, str):
            try:
                messages = json.loads(messages)
            except json.JSONDecodeError as exc:
                raise DatasetError(
                    f"{_where(shown, raw)}: column 'messages' is not valid JSON "
                    f"(column {exc.colno}: {exc.msg}); it must hold a JSON list of "
                    f"{{role, content}} objects"
                ) from None
            data["messages"] = messages
        for key, value in _chat_fields(messages, raw, shown).items():
            if _missing(data, key):
                data[key] = value
    for alias, target in _ALIASES:
        if alias in data and _missing(data, target) and not _missing(data, alias):
            data[target] = data[alias]


def _chat_fields(messages: Any, raw: _Raw, shown: str) -> dict[str, Any]:
    """input, expected_output and system_prompt of a chat transcript."""
    fix = 'each message must be an object like {"role": "user", "content": "..."}'
    if not isinstance(messages, list):
        raise DatasetError(
            f"{_where(shown, raw)}: 'messages' must be a list of {{role, content}} "
            f"objects, got {_kind(messages)}"
        )
    turns: list[tuple[str, str | None]] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str) or "content" not in msg:
            got = (
                f"keys {', '.join(msg) or '(none)'}" if isinstance(msg, dict) else _kind(msg)
            )
            raise DatasetError(f"{_where(shown, raw)}: messages[{i}] is {got}; {fix}")
        turns.append((msg["role"].lower(), _content_text(msg["content"], i, raw, shown)))

    users = [i for i, (role, _) in enumerate(turns) if role == "user"]
    if not users:
        raise DatasetError(f"{_where(shown, raw)}: 'messages' has no user turn")
    last_user = users[-1]
    after = [c for role, c in turns[last_user + 1 :] if role == "assistant"]
    assistant = [c for role, c in turns if role == "assistant"]
    system = [c for role, c in turns if role in _CHAT_ROLES_SYSTEM]
    return {
        "input": turns[last_user][1],
        "expected_output": after[0] if after else (assistant[-1] if assistant else None),
        "system_prompt": system[0] if system else None,
    }


def _content_text(content: Any, index: int, raw: _Raw, shown: str) -> str | None:
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict):
                break
            if part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
        else:
            return "\n".join(texts)
    raise DatasetError(
        f"{_where(shown, raw)}: messages[{index}].content must be a string or a list of "
        f'{{"type": "text", "text": ...}} parts, got {_kind(content)}'
    )


def _columns(rows: list[_Raw], columns: list[str]) -> list[str]:
    present = dict.fromkeys(columns)
    for raw in rows:
        present.update(dict.fromkeys(raw.data))
    return list(present)


def _check_required(rows: list[_Raw], name: str, shown: str, present: list[str]) -> None:
    if name not in present:
        raise DatasetError(
            f"{shown}: required column {name!r} is absent from the file; "
            f"columns present: {', '.join(present) or '(none)'}"
        )
    for raw in rows:
        if name not in raw.data:
            raise DatasetError(
                f"{_where(shown, raw)}: required column {name!r} is missing; add it to this row"
            )
        if _is_empty(raw.data[name]):
            raise DatasetError(
                f"{_where(shown, raw)}: required column {name!r} is empty; fill it in"
            )


def _make_ids(
    rows: list[_Raw], id_column: str | None, shown: str, present: list[str]
) -> list[str]:
    if id_column is None:
        return [f"row{raw.row}" for raw in rows]
    if id_column not in present:
        raise DatasetError(
            f"{shown}: id column {id_column!r} not found; "
            f"columns present: {', '.join(present) or '(none)'}"
        )
    ids: list[str] = []
    first: dict[str, _Raw] = {}
    for raw in rows:
        value = raw.data.get(id_column)
        text = "" if value is None else str(value).strip()
        if not text:
            raise DatasetError(
                f"{_where(shown, raw)}: id column {id_column!r} is empty; "
                f"every row needs a unique id"
            )
        if text in first:
            other = _where("", first[text]).lstrip(", ")
            here = _where("", raw).lstrip(", ")
            raise DatasetError(
                f"{shown}: duplicate id {text!r} in column {id_column!r} at {other} "
                f"and {here}; ids must be unique"
            )
        first[text] = raw
        ids.append(text)
    return ids
