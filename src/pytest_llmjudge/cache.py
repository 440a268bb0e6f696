"""The verdict cache: one SQLite file in WAL mode under the rootdir.

Safe for concurrent writers (threads, xdist workers) and for a process killed mid-write:
every put is one atomic transaction. The key hashes everything that determines a verdict,
never a credential.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .errors import ReplayMissError
from .judges.base import Judge, JudgeRequest
from .metrics.base import Metric
from .verdict import Verdict

T = TypeVar("T")

FILE_NAME = "verdicts.sqlite3"
SCHEMA_VERSION = "1"
_README = (
    "# pytest-llmjudge verdict cache\n\nCached judge verdicts; safe to delete "
    "(or run `pytest --llm-cache-clear`).\n"
)
# fields of a Verdict that depend on the run, not the judge's answer
_PER_RUN = ("threshold", "passed", "cached", "judge_calls")


class VerdictCache:
    """``get``/``put`` verdicts by key. Modes: rw, ro, refresh, replay."""

    def __init__(self, directory: Path | str | None, mode: str = "rw") -> None:
        self.directory = Path(directory or ".llmjudge_cache")
        self.mode = mode
        self.path = self.directory / FILE_NAME
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._ready = False

    # -- keys -------------------------------------------------------------------------
    @staticmethod
    def key(judge: Judge, metric: Metric, request: JudgeRequest) -> str:
        """A hash of backend, model, endpoint host, metric, messages, schema, sampling, sample index."""
        blob = json.dumps(
            {
                "v": SCHEMA_VERSION,
                "judge": judge.name,
                "endpoint": getattr(judge, "endpoint", ""),
                "metric": metric.name,
                "metric_fingerprint": metric.fingerprint(),
                "messages": request.messages,
                "schema": request.schema_json(),
                "sampling": request.sampling.as_dict(),
                "sample_index": request.sample_index,
                "score_field": request.score_field,
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    # -- storage ----------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self._prepare()
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _prepare(self) -> None:
        """Create the directory and the database once per process (WAL mode persists in the file)."""
        with self._lock:
            if self._ready:
                return
            self.directory.mkdir(parents=True, exist_ok=True)
            for name, text in (("README.md", _README), (".gitignore", "# created by pytest-llmjudge\n*\n")):
                target = self.directory / name
                if not target.exists():
                    target.write_text(text)
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            try:
                _retry_locked(lambda: conn.execute("PRAGMA journal_mode=WAL"))
                _retry_locked(lambda: conn.execute(
                    "CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, verdict TEXT NOT NULL, "
                    "created REAL NOT NULL)"
                ))
            finally:
                conn.close()
            self._ready = True

    def get(self, key: str, threshold: float) -> Verdict | None:
        """The cached verdict (``cached=True``, passed re-decided for ``threshold``), or None.

        In replay mode a miss raises ReplayMissError: the judge is never called.
        """
        if self.mode == "refresh":
            return None
        conn = self._connection()
        row = _retry_locked(
            lambda: conn.execute("SELECT verdict FROM verdicts WHERE key = ?", (key,)).fetchone()
        )
        if row is None:
            if self.mode == "replay":
                raise ReplayMissError(
                    "no cached verdict for this request and --llm-cache-mode is replay: record the "
                    "verdicts first with a normal run (--llm-cache-mode rw) and commit or copy "
                    "the .llmjudge_cache directory"
                )
            return None
        data = json.loads(row[0])
        data.update(threshold=threshold, passed=data["score"] >= threshold, cached=True, judge_calls=0)
        return Verdict.model_validate(data)

    def put(self, key: str, verdict: Verdict) -> None:
        if self.mode in ("ro", "replay"):
            return
        data = verdict.model_dump(mode="json", exclude=set(_PER_RUN))
        conn = self._connection()
        _retry_locked(lambda: conn.execute(
            "INSERT OR REPLACE INTO verdicts (key, verdict, created) VALUES (?, ?, ?)",
            (key, json.dumps(data, separators=(",", ":")), time.time()),
        ))

    # -- maintenance ------------------------------------------------------------------
    def clear(self) -> int:
        """Delete every entry; returns how many there were."""
        if not self.path.exists():
            return 0
        conn = self._connection()
        count = conn.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0]
        conn.execute("DELETE FROM verdicts")
        conn.execute("VACUUM")
        return int(count)

    def stats(self) -> dict[str, Any]:
        """Entries and bytes on disk."""
        if not self.path.exists():
            return {"entries": 0, "bytes": 0, "path": str(self.path)}
        count = self._connection().execute("SELECT COUNT(*) FROM verdicts").fetchone()[0]
        size = sum(p.stat().st_size for p in self.directory.glob(FILE_NAME + "*"))
        return {"entries": int(count), "bytes": size, "path": str(self.path)}

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._connections.clear()
        self._local = threading.local()


def _retry_locked(operation: Callable[[], T], attempts: int = 50) -> T:
    """Run a statement, retrying SQLite's immediate "database is locked" answers.

    The connection's busy timeout covers most contention; a few situations (switching to
    WAL, a checkpoint in another process) answer SQLITE_BUSY at once instead.
    """
    for attempt in range(attempts):
        try:
            return operation()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(min(0.5, 0.01 * 2**attempt))
    raise AssertionError("unreachable")
