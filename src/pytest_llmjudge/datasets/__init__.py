"""Load test cases from dataset files: CSV, JSON and JSONL.

Rules, for every format:

* ``.csv``: read with pandas (through :mod:`pytest_llmjudge.datasets.tables`, imported on first use),
  every value a string; an empty cell is ``""``. The first non-blank line is the header;
  blank lines are skipped. Every row has as many fields as the header: a missing or an extra
  field is an error. A ``messages`` column holding a JSON string is decoded (see chat form
  below).
* ``.json``: a list of objects, or an object with exactly one key holding that list
  (``{"cases": [...]}``); other keys would be silently ignored, so they are an error.
* ``.jsonl``: one object per line; blank lines are skipped.
* The file must be UTF-8; a leading UTF-8 BOM is accepted.
* Chat form: a row with ``messages`` (a list of ``{"role", "content"}`` objects) also gets
  ``input`` (the last user turn), ``expected_output`` (the first assistant turn after the
  last user turn, else the last assistant turn, else None) and ``system_prompt`` (the first
  system or developer turn, else None). ``content`` may be a string, null, or a list of
  ``{"type": "text", "text": ...}`` parts (their texts are joined with newlines; see
  :func:`content_text`).
* A ``pandas.DataFrame`` is read like a CSV file, its rows numbered by position.
* Aliases: ``prompt`` is also exposed as ``input`` and ``completion`` as ``expected_output``.

Derived keys (chat form and aliases) never replace a value the row already has: they are
set only where the key is missing, None or ``""``. The original keys are kept.

Row numbers (``Case.row`` and the default id ``row<N>``) count data rows from 1 in file
order, so they are stable when sampling. ``Case.line`` is the line of the file where the
row starts. Every problem raises :class:`DatasetError` with a one-line message naming the
file, the line or row, and what is wrong.
"""

from __future__ import annotations

import json
import math
import operator
import os
import random
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ..errors import DatasetError
from .tables import FORMATS, TableError, TableRow, decode_utf8, kind_of, parse_csv, parse_json, parse_jsonl

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DEFAULT_SEED", "SUPPORTED_EXTENSIONS", "Case", "case_id", "content_text", "load_cases"]

StrPath = str | os.PathLike[str]

#: File extensions :func:`load_cases` understands (matched case-insensitively).
SUPPORTED_EXTENSIONS: tuple[str, ...] = FORMATS

#: Default seed for ``sample`` so that every run (and every xdist worker) draws the same rows.
DEFAULT_SEED = 0

_CHAT_ROLES_SYSTEM = ("system", "developer")
_ALIASES = (("prompt", "input"), ("completion", "expected_output"))


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


def load_cases(
    path: StrPath | pd.DataFrame,
    *,
    id_column: str | None = None,
    sample: int | None = None,
    seed: int | str | None = None,
    required: Sequence[str] | None = None,
    base_dir: StrPath | None = None,
) -> list[Case]:
    """Load the rows of a CSV, JSON or JSONL file (or a ``pandas.DataFrame``) as :class:`Case`
    objects, in order.

    ``path`` is relative to ``base_dir`` when that is given and ``path`` is relative.
    ``sample=N`` keeps N rows drawn with ``random.Random(seed)`` (``seed`` None means
    :data:`DEFAULT_SEED`, so the draw is the same on every run), in file order; N larger
    than the dataset keeps every row. ``required`` columns must be present and non-empty
    (not None, not blank, not an empty list or object) in every row. Ids come from
    ``id_column`` (stringified, non-empty, unique) or are ``row<N>``. A DataFrame's rows are
    numbered by position (its index is not used); NaN is None, and a ``messages`` string is
    decoded as in a CSV file.
    """
    shown = _shown(path)
    orig_sample = sample
    if sample is not None:
        try:
            sample = -1 if isinstance(sample, bool) else operator.index(sample)
        except TypeError:
            sample = -1
        if sample <= 0:
            raise DatasetError(f"{shown}: sample must be a positive integer, got {orig_sample!r}")
    if isinstance(required, str):
        required = [required]

    rows, columns, file = read_rows(path, base_dir=base_dir)
    return build_cases(rows, columns, file, shown, id_column=id_column, required=required,
                       sample=sample, seed=seed)


def build_cases(
    rows: list[TableRow],
    columns: list[str],
    file: Path | None,
    shown: str,
    *,
    id_column: str | None = None,
    required: Sequence[str] | None = None,
    sample: int | None = None,
    seed: int | str | None = None,
) -> list[Case]:
    """:func:`load_cases` after reading: the rows of :func:`read_rows` (their ``data`` is
    expanded in place) as cases; ``sample`` has been checked."""
    from_csv = file is None or file.suffix.lower() == ".csv"
    for raw in rows:
        _normalize(raw, shown, from_csv=from_csv)
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


def _frame_type() -> type | None:
    pandas = sys.modules.get("pandas")  # a DataFrame can only exist once pandas is imported
    return getattr(pandas, "DataFrame", None)


def _shown(path: StrPath | pd.DataFrame) -> str:
    frame = _frame_type()
    return "DataFrame" if frame is not None and isinstance(path, frame) else os.fspath(path)


def read_rows(
    path: StrPath | pd.DataFrame, *, base_dir: StrPath | None = None
) -> tuple[list[TableRow], list[str], Path | None]:
    """A dataset's rows as written (before the chat form and aliases), its columns, and its file.

    DatasetError (one line, located) for anything unreadable or empty.
    """
    frame_type = _frame_type()
    if frame_type is not None and isinstance(path, frame_type):
        frame: pd.DataFrame = path
        return _frame_rows(frame), [str(c) for c in frame.columns], None
    shown = os.fspath(path)
    file = Path(shown).expanduser()
    if base_dir is not None and not file.is_absolute():
        file = Path(base_dir).expanduser() / file
    text = _read_text(file, shown)
    suffix = file.suffix.lower()
    if not text.strip():
        raise DatasetError(f"{shown}: the file is empty; a dataset needs at least one row")
    parse = {".csv": parse_csv, ".json": parse_json, ".jsonl": parse_jsonl}[suffix]
    try:
        rows, columns = parse(text)
    except TableError as exc:
        raise DatasetError(exc.message(shown)) from None
    if not rows:
        what = "a header but no data rows" if suffix == ".csv" else "no rows"
        raise DatasetError(f"{shown}: the dataset has {what}")
    return rows, columns, file


def _frame_rows(frame: pd.DataFrame) -> list[TableRow]:
    if frame.empty:
        raise DatasetError("DataFrame: the dataset has no rows")
    names = [str(c) for c in frame.columns]
    if len(set(names)) != len(names):
        raise DatasetError(f"DataFrame: duplicate column names in {names}; rename them")
    rows = []
    # to_dict gives Python values (int, float, str), not numpy scalars
    for n, record in enumerate(frame.to_dict(orient="records"), start=1):
        data = {str(c): None if _is_na(v) else v for c, v in record.items()}
        rows.append(TableRow(data, n, None))
    return rows


def _is_na(value: Any) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    pandas = sys.modules["pandas"]
    return bool(value is pandas.NA or value is pandas.NaT)


def _where(shown: str, raw: TableRow) -> str:
    return TableError("", line=raw.line, row=raw.row).where(shown)


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
    try:
        return decode_utf8(data)
    except TableError as exc:
        raise DatasetError(exc.message(shown)) from None


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


def _normalize(raw: TableRow, shown: str, *, from_csv: bool) -> None:
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


def _chat_fields(messages: Any, raw: TableRow, shown: str) -> dict[str, Any]:
    """input, expected_output and system_prompt of a chat transcript."""
    fix = 'each message must be an object like {"role": "user", "content": "..."}'
    if not isinstance(messages, list):
        raise DatasetError(
            f"{_where(shown, raw)}: 'messages' must be a list of {{role, content}} "
            f"objects, got {kind_of(messages)}"
        )
    turns: list[tuple[str, str | None]] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str) or "content" not in msg:
            got = (
                f"keys {', '.join(msg) or '(none)'}" if isinstance(msg, dict) else kind_of(msg)
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


def content_text(content: Any) -> str | None:
    """The text of a chat message's ``content``: a string, None, or a list of parts.

    The texts of a list's ``{"type": "text", "text": ...}`` parts (and plain string parts) are
    joined with newlines; other parts (images, audio) are skipped. TypeError for anything else.
    """
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif not isinstance(part, dict):
                break
            elif part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
        else:
            return "\n".join(texts)
    raise TypeError(f"chat content must be a string or a list of parts, got {kind_of(content)}")


def _content_text(content: Any, index: int, raw: TableRow, shown: str) -> str | None:
    try:
        return content_text(content)
    except TypeError:
        raise DatasetError(
            f"{_where(shown, raw)}: messages[{index}].content must be a string or a list of "
            f'{{"type": "text", "text": ...}} parts, got {kind_of(content)}'
        ) from None


def _columns(rows: list[TableRow], columns: list[str]) -> list[str]:
    present = dict.fromkeys(columns)
    for raw in rows:
        present.update(dict.fromkeys(raw.data))
    return list(present)


def _check_required(rows: list[TableRow], name: str, shown: str, present: list[str]) -> None:
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
    rows: list[TableRow], id_column: str | None, shown: str, present: list[str]
) -> list[str]:
    if id_column is None:
        return [f"row{raw.row}" for raw in rows]
    if id_column not in present:
        raise DatasetError(
            f"{shown}: id column {id_column!r} not found; "
            f"columns present: {', '.join(present) or '(none)'}"
        )
    ids: list[str] = []
    first: dict[str, TableRow] = {}
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
