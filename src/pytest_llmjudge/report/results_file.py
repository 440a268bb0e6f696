"""The results file: one row per verdict, appended and flushed as each verdict completes.

Each row is one ``os.write`` on a file opened with O_APPEND, so rows from threads and xdist
workers never interleave and a killed run keeps every finished row.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..secrets import redact
from ..verdict import Verdict

if TYPE_CHECKING:
    import pytest

    from ..settings import Settings

COLUMNS = (
    "run_id", "timestamp", "test_id", "metric", "score", "raw_score", "argmax_score", "scale_min",
    "scale_max", "reason", "threshold", "passed", "cached", "judge", "latency_s", "prompt_tokens",
    "completion_tokens", "total_tokens", "samples", "unstable", "decision", "error", "settings",
)


class ResultsWriter:
    """Appends verdict rows to a .jsonl or .csv file."""

    def __init__(self, path: Path | None, run_id: str, settings: dict[str, Any], *, truncate: bool) -> None:
        self.path = path
        self.run_id = run_id
        self.settings_json = json.dumps(settings, sort_keys=True)
        self._fd: int | None = None
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        if truncate:
            flags |= os.O_TRUNC
        self._fd = os.open(path, flags, 0o644)
        if truncate and self.is_csv:
            self._append(self._csv_line(list(COLUMNS)))

    @classmethod
    def for_session(cls, config: pytest.Config, settings: Settings, run_id: str) -> ResultsWriter:
        """The controller (or a plain run) starts the file; xdist workers append to it."""
        is_worker = hasattr(config, "workerinput")
        return cls(settings.results, run_id, settings.public(), truncate=not is_worker)

    @property
    def is_csv(self) -> bool:
        return self.path is not None and self.path.suffix == ".csv"

    def write(self, test_id: str, verdict: Verdict) -> None:
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
            "error": None,
        })

    def write_error(self, test_id: str, metric: str, judge: str, error: BaseException) -> None:
        if self._fd is None:
            return
        self._row({"test_id": test_id, "metric": metric, "judge": judge, "passed": False,
                   "error": redact(f"{type(error).__name__}: {error}")})

    def _row(self, values: dict[str, Any]) -> None:
        row = {column: None for column in COLUMNS}
        row.update(values, run_id=self.run_id, timestamp=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        if self.is_csv:
            row["settings"] = self.settings_json
            if row["samples"] is not None:
                row["samples"] = json.dumps(row["samples"])
            self._append(self._csv_line(["" if row[c] is None else row[c] for c in COLUMNS]))
        else:
            row["settings"] = json.loads(self.settings_json)
            self._append(json.dumps(row, ensure_ascii=False) + "\n")

    @staticmethod
    def _csv_line(values: list[Any]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(values)
        return buffer.getvalue()

    def _append(self, text: str) -> None:
        assert self._fd is not None
        os.write(self._fd, text.encode("utf-8"))

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_results(path: Path | str) -> list[dict[str, Any]]:
    """Load a results file written by ResultsWriter (either format)."""
    path = Path(path)
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
