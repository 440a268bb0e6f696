"""The results file: one row per verdict, appended and flushed as each verdict completes.

Each row is one ``os.write`` on a file opened with O_APPEND, so rows from threads and xdist
workers never interleave and a killed run keeps every finished row.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..datasets.tables import TableError, csv_line, decode_utf8, parse_csv, parse_jsonl, to_frame
from ..judging.verdict import Verdict
from ..secrets import redact
from .texts import TEXT_FIELDS

if TYPE_CHECKING:
    import pandas as pd
    import pytest

    from ..run.settings import Settings

COLUMNS = (
    "run_id", "timestamp", "test_id", "metric", "score", "raw_score", "argmax_score", "scale_min",
    "scale_max", "reason", "threshold", "passed", "cached", "judge", "latency_s", "prompt_tokens",
    "completion_tokens", "total_tokens", "samples", "unstable", "decision", "error", "settings",
    "record", "judge_calls",
)
#: columns only the run record fills (the last row of a run; ``record`` is ``run`` there)
RUN_RECORD_COLUMNS = (
    "verdicts", "cached_calls_saved", "saved_prompt_tokens", "saved_completion_tokens", "cost_usd",
    "cost_saved_usd", "unpriced_judges",
)
#: the run's parameters, the ``run`` object of a JSONL row and ``run.<name>`` columns of a CSV one
RUN_FIELDS = ("judge", "model", "base_url_host", "temperature", "samples", "seed", "plugin_version")


def run_parameters(settings: Settings) -> dict[str, Any]:
    """What a reader of the results file needs to know about how the run judged."""
    from .. import __version__
    from ..judges import default_judge_spec

    judge = settings.judge or default_judge_spec(settings.base_url)
    url = settings.base_url or (os.environ.get("OPENAI_BASE_URL") if judge.startswith("openai:") else None)
    host = None
    if url:
        parts = urlsplit(url)
        host = f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname
    repeated = settings.repeat != "1"
    return {
        "judge": judge, "model": judge.partition(":")[2], "base_url_host": host,
        "temperature": settings.repeat_temperature if repeated else 0.0,
        "samples": settings.repeat if settings.repeat == "auto" else int(settings.repeat),
        "seed": None, "plugin_version": __version__,
    }


class ResultsWriter:
    """Appends verdict rows to a .jsonl or .csv file.

    A CSV file's header names every ``case.<column>`` of the run's datasets, so it is written
    once the tests are collected (:meth:`set_case_columns`), or before the first row.
    """

    def __init__(
        self, path: Path | None, run_id: str, settings: dict[str, Any], *, truncate: bool,
        run: dict[str, Any] | None = None,
    ) -> None:
        self.path = path
        self.run_id = run_id
        self.settings_json = json.dumps(settings, sort_keys=True)
        self.run = dict(run or {})
        self.case_columns: list[str] = ["id"]
        self._header_checked = False
        self._fd: int | None = None
        self._lock = threading.RLock()  # concurrent cases write rows from their threads
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        if truncate:
            flags |= os.O_TRUNC
        self._fd = os.open(path, flags, 0o644)

    @classmethod
    def for_session(cls, config: pytest.Config, settings: Settings, run_id: str) -> ResultsWriter:
        """The controller (or a plain run) starts the file; xdist workers append to it."""
        is_worker = hasattr(config, "workerinput")
        return cls(settings.results, run_id, settings.public(), truncate=not is_worker,
                   run=run_parameters(settings))

    @property
    def is_csv(self) -> bool:
        return self.path is not None and self.path.suffix == ".csv"

    @property
    def columns(self) -> list[str]:
        """The CSV header: the fixed columns, the texts, ``case.*`` and ``run.*``."""
        return [*COLUMNS, *RUN_RECORD_COLUMNS, *TEXT_FIELDS, *(f"case.{c}" for c in self.case_columns),
                *(f"run.{name}" for name in RUN_FIELDS)]

    def set_case_columns(self, columns: list[str]) -> None:
        """The dataset columns of every collected test (same set in every xdist worker)."""
        if self._fd is None or self._header_checked:
            return
        self.case_columns = ["id", *(c for c in dict.fromkeys(columns) if c != "id")]
        self._ensure_header()

    def write(self, test_id: str, verdict: Verdict, texts: dict[str, Any] | None = None) -> None:
        if self._fd is None:
            return
        self._row({
            "test_id": test_id, "metric": verdict.metric, "score": round(verdict.score, 6),
            "raw_score": verdict.raw_score, "argmax_score": verdict.argmax_score,
            "scale_min": verdict.scale[0], "scale_max": verdict.scale[1],
            "reason": verdict.reason, "threshold": verdict.threshold, "passed": verdict.passed,
            "cached": verdict.cached, "judge": verdict.judge, "latency_s": round(verdict.latency_s, 4),
            "prompt_tokens": verdict.usage.get("prompt_tokens"),
            "completion_tokens": verdict.usage.get("completion_tokens"),
            "total_tokens": verdict.usage.get("total_tokens"),
            "samples": verdict.samples or None, "unstable": verdict.unstable, "decision": verdict.decision,
            "error": None, "judge_calls": verdict.judge_calls,
        }, texts)

    def write_error(self, test_id: str, metric: str, judge: str, error: BaseException,
                    texts: dict[str, Any] | None = None) -> None:
        if self._fd is None:
            return
        self._row({"test_id": test_id, "metric": metric, "judge": judge, "passed": False,
                   "error": redact(f"{type(error).__name__}: {error}")}, texts)

    def write_run(self, totals: dict[str, Any]) -> None:
        """The run record, written last by the controller: verdicts, judge calls, tokens, cost."""
        if self._fd is None:
            return
        row: dict[str, Any] = {"record": "run", "run_id": self.run_id,
                               "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **totals}
        row["total_tokens"] = (row.get("prompt_tokens") or 0) + (row.get("completion_tokens") or 0)
        if self.is_csv:
            row["settings"] = self.settings_json
            row["unpriced_judges"] = ",".join(row.get("unpriced_judges") or ()) or None
            row.update({f"run.{name}": self.run.get(name) for name in RUN_FIELDS})
            self._ensure_header()
            columns = self._file_columns()
            self._append(csv_line([row.get(c) for c in columns], as_cell=_as_written))
        else:
            row["settings"] = json.loads(self.settings_json)
            row["run"] = self.run
            self._append(json.dumps(row, ensure_ascii=False) + "\n")

    def _file_columns(self) -> list[str]:
        """The header already in the file (an xdist controller did not collect the case columns)."""
        assert self.path is not None
        with self.path.open(newline="", encoding="utf-8") as handle:
            return parse_csv(handle.readline())[1] or self.columns

    def _row(self, values: dict[str, Any], texts: dict[str, Any] | None) -> None:
        texts = texts or {}
        row: dict[str, Any] = {column: None for column in COLUMNS}
        row.update(values, run_id=self.run_id, timestamp=time.strftime("%Y-%m-%dT%H:%M:%S%z"), record="verdict")
        row.update({name: texts.get(name) for name in TEXT_FIELDS})
        case = texts.get("case")
        if self.is_csv:
            row["settings"] = self.settings_json
            if row["samples"] is not None:
                row["samples"] = json.dumps(row["samples"])
            for column in self.case_columns:
                row[f"case.{column}"] = _cell(case.get(column)) if case else None
            row.update({f"run.{name}": self.run.get(name) for name in RUN_FIELDS})
            self._ensure_header()
            self._append(csv_line([row.get(c) for c in self.columns], as_cell=_as_written))
        else:
            row["settings"] = json.loads(self.settings_json)
            row["case"] = case
            row["run"] = self.run
            self._append(json.dumps(row, ensure_ascii=False) + "\n")

    def _ensure_header(self) -> None:
        """Write the CSV header when the file is still empty (one writer wins among xdist workers)."""
        with self._lock:  # rows of other threads wait for the header
            if self._header_checked or self._fd is None or not self.is_csv:
                return
            self._header_checked = True
            with _locked(self._fd):
                if os.fstat(self._fd).st_size == 0:
                    self._append(csv_line(self.columns, as_cell=_as_written))

    def _append(self, text: str) -> None:
        with self._lock:
            if self._fd is not None:  # closed at the end of an interrupted run: the row is dropped whole
                os.write(self._fd, text.encode("utf-8"))

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                self._ensure_header()
                os.close(self._fd)
                self._fd = None


def _as_written(value: Any) -> Any:
    """A row value as the CSV writer takes it: None is empty, others as ``str()`` makes them."""
    return "" if value is None else value


def _cell(value: Any) -> Any:
    """A case value as one CSV cell: scalars as they are, lists and objects as JSON."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return value


@contextlib.contextmanager
def _locked(fd: int) -> Iterator[None]:
    """An exclusive advisory lock on the file where the platform has one (POSIX)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: header races between xdist workers are possible
        yield
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def read_result_rows(path: Path | str, *, run_records: bool = False) -> list[dict[str, Any]]:
    """Load a results file written by ResultsWriter (either format): its verdict rows, and its
    run records (``record == "run"``) too when ``run_records``. TableError on a malformed file."""
    path = Path(path)
    rows, _ = _parse_results(path, decode_utf8(path.read_bytes()))
    return rows if run_records else [row for row in rows if not is_run_record(row)]


def _parse_results(path: Path, text: str) -> tuple[list[dict[str, Any]], list[str]]:
    rows, columns = parse_csv(text, exact_width=False) if path.suffix == ".csv" else parse_jsonl(text)
    return [row.data for row in rows], columns


def read_results(path: Path | str, *, run_records: bool = False) -> pd.DataFrame:
    """A results file (``--llm-results`` .jsonl or .csv) or a baseline (``.json``) as a DataFrame.

    One row per verdict (and per run record when ``run_records``). A JSONL file's ``case`` and
    ``run`` objects become ``case.<column>`` and ``run.<name>`` columns, as in the CSV form; a
    CSV file's values are typed by pandas as ``pandas.read_csv`` types them (an empty cell is
    NaN). A baseline's cases give ``test_id``, ``metric``, ``score``, ``samples``, ``passed``,
    ``threshold``, ``error``, the texts and ``case.<column>``. Raises
    :class:`~pytest_llmjudge.analysis.regression.BaselineError` (one line, naming the file) when the file
    cannot be read.
    """
    import pandas as pd

    from ..analysis.regression import load_baseline
    from ..errors import BaselineError

    path = Path(path)
    if path.suffix.lower() == ".json":
        cases = [case.to_json() for case in load_baseline(path).cases]
        return to_frame([{**{k: v for k, v in c.items() if k != "texts"}, **c["texts"]} for c in cases])
    try:
        text = decode_utf8(path.read_bytes())
        rows, columns = _parse_results(path, text)  # checked first: a bad file gets a located message
    except OSError as exc:
        raise BaselineError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except TableError as exc:
        raise BaselineError(exc.message(str(path))) from None
    if path.suffix != ".csv":
        return to_frame(rows if run_records else [row for row in rows if not is_run_record(row)])
    # the rows of several appended runs may be longer than the header: their extra fields are
    # dropped, as parse_csv drops them
    frame = pd.read_csv(io.StringIO(text), engine="python", on_bad_lines=lambda fields: fields[: len(columns)])
    return frame if run_records else frame[frame["record"] != "run"].reset_index(drop=True)


def is_run_record(row: dict[str, Any]) -> bool:
    return row.get("record") == "run"
