"""``assert_llm_score``: judge an answer, record the verdict on the test, fail below threshold."""

from __future__ import annotations

import dis
import functools
import linecache
import re
import sys
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import pytest

from .errors import ConfigError, JudgeError, LLMScoreError
from .judges.base import Judge
from .metrics import get_metric
from .metrics.base import AnyMetric, MetricInputs
from .secrets import redact
from .session import LLMJudgeSession
from .verdict import Verdict

_PACKAGE_DIR = str(Path(__file__).parent)


@dataclass
class Entry:
    """One ``assert_llm_score`` call of a test: its verdict, its judge error, or a pending future."""

    metric: str
    judge: str
    call_site: str
    soft: bool
    future: Future[Verdict] | None = None
    verdict: Verdict | None = None
    error: BaseException | None = None
    raised: bool = False  # the failure was already raised inside the test body
    texts: dict[str, str] = field(default_factory=dict)  # input/output/expected, for reports

    def wait(self) -> None:
        if self.future is not None:
            try:
                self.verdict = self.future.result()
            except BaseException as exc:  # noqa: BLE001 - kept and re-raised in the test
                self.error = exc
            self.future = None

    @property
    def done(self) -> bool:
        return self.future is None or self.future.done()

    def failure(self) -> BaseException | None:
        """The exception this entry fails its test with, if any."""
        if self.error is not None:
            return self.error
        if self.verdict is not None and not self.verdict.passed and not self.soft:
            return LLMScoreError(self.verdict)
        return None

    def as_record(self) -> dict[str, Any]:
        """Plain data for the test report (crosses xdist)."""
        if self.verdict is not None:
            record = self.verdict.model_dump(mode="json", exclude={"details"})
            record["error"] = None
        else:
            record = {"metric": self.metric, "judge": self.judge, "error": _error_text(self.error)}
        record["soft"] = self.soft
        record.update(self.texts)
        return record


@dataclass
class ItemVerdicts:
    """Every entry one test made, in call order."""

    entries: list[Entry] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: concurrent judging: how many entries have their results row settled, and whether a
    #: failure closed the item (a sequential run never judges what follows a failure)
    written: int = 0
    closed: bool = False

    def write_ready(self, session: LLMJudgeSession, nodeid: str) -> None:
        """Write, in call order, every row a sequential run would have written by now."""
        with self.lock:
            while not self.closed and self.written < len(self.entries):
                entry = self.entries[self.written]
                future = entry.future  # Entry.wait() on the main thread may clear it meanwhile
                if future is not None:
                    if not future.done():
                        return
                    error = future.exception()
                    verdict = None if error is not None else future.result()
                else:
                    verdict, error = entry.verdict, entry.error
                if error is not None:
                    session.results.write_error(nodeid, entry.metric, entry.judge, error)
                    self.closed = True
                elif verdict is not None:
                    session.results.write(nodeid, verdict)
                    self.closed = not verdict.passed and not entry.soft
                self.written += 1

    @property
    def done(self) -> bool:
        return all(entry.done for entry in self.entries)

    def settle(self) -> tuple[list[Entry], BaseException | None, Entry | None]:
        """Wait for every verdict; keep those up to the first failure, as a sequential run would."""
        kept: list[Entry] = []
        for entry in self.entries:
            entry.wait()
            kept.append(entry)
            failure = entry.failure()
            if failure is not None:
                return kept, failure, entry
        return kept, None, None


items_key = pytest.StashKey[ItemVerdicts]()


class PendingVerdict:
    """What ``assert_llm_score`` returns while judging runs concurrently.

    Reading any attribute waits for the verdict (and raises LLMScoreError or JudgeError just
    as the sequential call would have); ``resolve()`` returns the Verdict itself.
    """

    def __init__(self, entry: Entry) -> None:
        self._entry = entry

    def resolve(self) -> Verdict:
        __tracebackhide__ = True
        entry = self._entry
        entry.wait()
        failure = entry.failure()
        if failure is not None:
            entry.raised = True
            raise failure
        assert entry.verdict is not None
        return entry.verdict

    def __getattr__(self, name: str) -> Any:
        __tracebackhide__ = True
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.resolve(), name)

    def __repr__(self) -> str:
        entry = self._entry
        if entry.done:
            entry.wait()
            return repr(entry.verdict) if entry.verdict is not None else f"<PendingVerdict error={entry.error!r}>"
        return f"<PendingVerdict {entry.metric} (judging)>"


def assert_llm_score(
    session: LLMJudgeSession,
    item: pytest.Item,
    output: Any,
    *,
    metric: str | AnyMetric = "correctness",
    input: str | None = None,
    expected: str | None = None,
    context: str | list[str] | None = None,
    criteria: str | None = None,
    threshold: float | None = None,
    judge: Judge | str | None = None,
    min_passes: int | None = None,
    samples: int | None = None,
) -> Verdict:
    """Judge ``output`` with ``metric``; raise LLMScoreError below ``threshold``.

    ``samples`` draws that many verdicts (default ``--llm-repeat``); ``min_passes=k`` passes
    when at least k of them pass. Both may also come from ``@pytest.mark.llm_repeat``.
    """
    __tracebackhide__ = True
    metric_obj = get_metric(metric)
    if not isinstance(output, str):
        raise ConfigError(
            f"assert_llm_score: output must be a string, got {type(output).__name__}; "
            "pass the application's answer text"
        )
    if isinstance(context, (list, tuple)):
        context = "\n\n".join(str(part) for part in context)
    inputs = MetricInputs(output=output, input=input, expected=expected, context=context, criteria=criteria)
    metric_obj.check_inputs(inputs)
    if threshold is None:
        threshold = session.settings.threshold
    if not 0.0 <= float(threshold) <= 1.0:
        raise ConfigError(f"assert_llm_score: threshold must be in [0, 1] (scores are normalized), got {threshold}")
    judge_obj = session.resolve_judge(judge) if metric_obj.needs_judge else None
    marker = item.get_closest_marker("llm_repeat")
    if marker is not None:
        unknown = sorted(set(marker.kwargs) - {"samples", "min_passes"})
        if unknown or len(marker.args) > 1 or (marker.args and "samples" in marker.kwargs):
            raise ConfigError(
                f"@pytest.mark.llm_repeat(samples=None, *, min_passes=None): got args {marker.args!r}"
                + (f", unknown keyword(s) {', '.join(unknown)}" if unknown else "")
            )
        marked = {"samples": marker.kwargs.get("samples", marker.args[0] if marker.args else None),
                  "min_passes": marker.kwargs.get("min_passes")}
        _check_counts("@pytest.mark.llm_repeat", marked)
        samples = marked["samples"] if samples is None else samples
        min_passes = marked["min_passes"] if min_passes is None else min_passes
    _check_counts("assert_llm_score", {"samples": samples, "min_passes": min_passes})
    if samples is not None and min_passes is not None and min_passes > samples:
        raise ConfigError(f"assert_llm_score: min_passes={min_passes} is more than samples={samples}")
    plan = session.settings.repeat_plan(min_passes=min_passes, samples=samples)
    record = item.stash.setdefault(items_key, ItemVerdicts())
    caller = _user_frame()
    entry = Entry(
        metric=metric_obj.name,
        judge=judge_obj.name if judge_obj is not None else getattr(metric_obj, "judge_name", "check"),
        call_site=_call_site(caller),
        soft=session.settings.soft,
        texts={k: _clip(v) for k, v in (("input", input), ("output", output), ("expected", expected)) if v},
    )
    with record.lock:
        record.entries.append(entry)
    # inside a try/with (pytest.raises, suppress, except): judge now, so the exception is raised
    # where the handler can see it, exactly as a sequential run would
    if session.concurrent and judge_obj is not None and not _inside_handler(caller):
        entry.future = session.submit(metric_obj, inputs, judge_obj, float(threshold), item.nodeid, plan,
                                      write=False)
        entry.future.add_done_callback(lambda _: record.write_ready(session, item.nodeid))
        return PendingVerdict(entry)  # type: ignore[return-value]
    try:
        entry.verdict = session.evaluate(metric_obj, inputs, judge_obj, float(threshold), item.nodeid, plan,
                                         write=not session.concurrent)
    except JudgeError as exc:
        entry.error = exc
        entry.raised = True
        raise
    finally:
        if session.concurrent:
            record.write_ready(session, item.nodeid)
    failure = entry.failure()
    if failure is not None:
        entry.raised = True
        raise failure
    return entry.verdict


def _check_counts(where: str, counts: dict[str, Any]) -> None:
    for name, value in counts.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{where}: {name} must be a positive integer, got {value!r}")


def _user_frame() -> FrameType | None:
    """The first frame outside this package: the test (or its helper) that called us."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and (frame.f_code.co_filename.startswith(_PACKAGE_DIR) or "pluggy" in frame.f_code.co_filename):
        frame = frame.f_back
    return frame


@functools.lru_cache(maxsize=1024)
def _handler_ranges(code: CodeType) -> tuple[tuple[int, int], ...]:
    parse = getattr(dis, "_parse_exception_table", None)  # CPython 3.11+
    if parse is None:
        return ()
    return tuple((entry.start, entry.end) for entry in parse(code))


def _inside_handler(frame: FrameType | None) -> bool:
    """True when the call sits inside a try or with block of the calling function.

    Read from the code object's exception table (CPython 3.11+); on older Pythons the
    concurrent path is always taken.
    """
    if frame is None:
        return False
    lasti = frame.f_lasti
    return any(start <= lasti < end for start, end in _handler_ranges(frame.f_code))


def _call_site(frame: FrameType | None) -> str:
    """``file:line: in function`` plus source of the user's frame that called us."""
    if frame is None:
        return ""
    filename, lineno = frame.f_code.co_filename, frame.f_lineno
    source = linecache.getline(filename, lineno).strip()
    return f"{filename}:{lineno}: in {frame.f_code.co_name}\n    {source}"


def _clip(text: str, limit: int = 2000) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _error_text(error: BaseException | None) -> str:
    if error is None:
        return ""
    return redact(f"{type(error).__name__}: {error}")


def failure_longrepr(entry: Entry, failure: BaseException) -> Any:
    """The report of a failure found after the test body finished (concurrent judging).

    A real exception repr with a ``reprcrash``, like the one pytest builds for a raised
    exception: the short summary (``-r``), JUnit's failure message and xdist all read it.
    """
    from _pytest._code.code import ReprEntry, ReprExceptionInfo, ReprFileLocation, ReprTraceback

    kind = f"{type(failure).__module__}.{type(failure).__name__}"
    exconly = f"{kind}: {redact(str(failure))}".rstrip()
    head, _, source = entry.call_site.partition("\n")
    location = re.match(r"^(.*):(\d+): in (.*)$", head)
    path, lineno, function = location.groups() if location else (head, "0", "?")
    lines = ([source] if source else []) + [f"E   {line}" for line in exconly.splitlines()]
    reprentry = ReprEntry(lines, None, None, ReprFileLocation(path, int(lineno), f"in {function}"), "short")
    return ReprExceptionInfo(
        reprtraceback=ReprTraceback([reprentry], None, "short"),
        reprcrash=ReprFileLocation(path, int(lineno), exconly),
    )
