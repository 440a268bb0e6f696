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

from ..errors import ReplayMissError
from ..judges.base import Judge, JudgeRequest
from ..metrics.base import Metric
from ..secrets import redact
from .verdict import Verdict

T = TypeVar("T")

#: ``--llm-cache-mode`` and the commands' ``--cache-mode``
CACHE_MODES = ("rw", "ro", "refresh", "replay", "off")
#: the cache directory (at the rootdir under pytest, in the working directory for ``llmjudge``)
DEFAULT_CACHE_DIR = ".llmjudge_cache"
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
        self.directory = Path(directory or DEFAULT_CACHE_DIR)
        self.mode = mode
        self.path = self.directory / FILE_NAME
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._ready = False
        #: one warning line per problem met; after the first the cache is off for this process
        self.problems: list[str] = []
        self._off = False

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

        In replay mode a miss raises ReplayMissError: the judge is never called. Read-only
        modes never create the cache: a missing file is a miss.
        """
        if self.mode == "refresh":
            return None
        row = None
        if not self._off and (self.mode not in ("ro", "replay") or self.path.exists()):
            try:
                conn = self._connection()
                row = _retry_locked(
                    lambda: conn.execute("SELECT verdict FROM verdicts WHERE key = ?", (key,)).fetchone()
                )
            except (sqlite3.Error, OSError) as exc:
                self._turn_off(exc)
        if row is not None:
            try:
                data = json.loads(row[0])
                data["reason"] = redact(str(data.get("reason") or ""))  # stored before redaction existed
                data.update(threshold=threshold, passed=data["score"] >= threshold, cached=True, judge_calls=0)
                return Verdict.model_validate(data)
            except (ValueError, TypeError, KeyError):
                pass  # an unreadable entry is a miss; the next put replaces it
        if self.mode == "replay":
            unusable = f" (the cache is unusable: {self.problems[0]})" if self._off else ""
            raise ReplayMissError(
                "no cached verdict for this request and --llm-cache-mode is replay: record the "
                "verdicts first with a normal run (--llm-cache-mode rw) and commit or copy "
                f"the {DEFAULT_CACHE_DIR} directory" + unusable
            )
        return None

    def put(self, key: str, verdict: Verdict) -> None:
        if self.mode in ("ro", "replay") or self._off:
            return
        data = verdict.model_dump(mode="json", exclude=set(_PER_RUN))
        try:
            conn = self._connection()
            _retry_locked(lambda: conn.execute(
                "INSERT OR REPLACE INTO verdicts (key, verdict, created) VALUES (?, ?, ?)",
                (key, json.dumps(data, separators=(",", ":")), time.time()),
            ))
        except (sqlite3.Error, OSError) as exc:
            self._turn_off(exc)

    # -- problems ---------------------------------------------------------------------
    def check(self) -> None:
        """Before the run: a cache file that is not a readable verdict database is set aside
        (renamed ``verdicts.sqlite3.corrupt-<time>``) so the run starts a fresh one."""
        if self.mode == "off" or not self.path.exists():
            return
        try:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            try:
                conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
                conn.execute("SELECT COUNT(*) FROM verdicts").fetchone()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            if "no such table" in str(exc):
                return  # a database made before its table: the first put creates it
            if "locked" in str(exc) or "busy" in str(exc):
                return  # in use by another run: not corrupt
            self._set_aside(exc)

    def _set_aside(self, exc: BaseException) -> None:
        aside = self.path.with_name(f"{FILE_NAME}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            self.path.replace(aside)
            for suffix in ("-wal", "-shm"):
                sidecar = self.path.with_name(FILE_NAME + suffix)
                if sidecar.exists():
                    sidecar.replace(aside.with_name(aside.name + suffix))
        except OSError as err:
            self._turn_off(exc, f"cannot set it aside ({err.strerror or err})")
            return
        self.problems.append(
            f"llmjudge: warning: the verdict cache {self.path} is unreadable ({exc}); "
            f"set aside as {aside.name}, the run continues with a fresh cache"
        )

    def _turn_off(self, exc: BaseException, why: str = "") -> None:
        """Stop using the cache for this process, with a one-line warning (once)."""
        with self._lock:
            if self._off:
                return
            self._off = True
            reason = f"{exc.strerror or exc}" if isinstance(exc, OSError) else str(exc)
            extra = f"; {why}" if why else ""
            self.problems.append(
                f"llmjudge: warning: cannot use the verdict cache {self.path} ({reason}){extra}; "
                "the run continues without it"
            )

    # -- maintenance ------------------------------------------------------------------
    def clear(self) -> int:
        """Delete the cache database, readable or not; returns how many entries it held."""
        count = 0
        if self.path.exists():
            try:
                conn = sqlite3.connect(self.path, timeout=30.0)
                try:
                    count = int(conn.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0])
                finally:
                    conn.close()
            except sqlite3.Error:
                count = 0  # corrupt, or without its table: removed all the same
        self.close()
        for suffix in ("", "-wal", "-shm"):
            self.path.with_name(FILE_NAME + suffix).unlink(missing_ok=True)
        with self._lock:
            self._ready = False
        return count

    def stats(self) -> dict[str, Any]:
        """Entries and bytes on disk."""
        if not self.path.exists():
            return {"entries": 0, "bytes": 0, "path": str(self.path)}
        try:
            count = self._connection().execute("SELECT COUNT(*) FROM verdicts").fetchone()[0]
        except (sqlite3.Error, OSError) as exc:
            self._turn_off(exc)
            count = 0
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
