"""Run per-row model work concurrently; write rows in input order as they finish.

A row whose work raises is written with its reason in the ``error`` column, reported on
stderr, and the run goes on. Rows are written in input order (a finished row waits for the
rows before it), so an interrupted output is always a prefix of the work and ``--resume``
can pick it up (see :func:`.io.plan_resume`). Ctrl-C stops at once: every row already
written stays, the calls in flight are abandoned (daemon threads).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import Any

from ..run.executor import DaemonExecutor
from ..secrets import redact
from .io import ERROR_COLUMN, ResumePlan, RowWriter, Unit
from .progress import Progress

#: work(unit) -> (output row, whether it came from the cache)
Work = Callable[[Unit], "tuple[dict[str, Any], bool]"]
#: failed_row(unit, message) -> the output row of a failed unit
FailedRow = Callable[[Unit, str], "dict[str, Any]"]


@dataclass
class RunResult:
    written: int = 0  #: rows written in this run (resumed rows not counted)
    failed: int = 0
    kept: int = 0  #: rows kept from a previous run (--resume)
    cached: int = 0
    interrupted: bool = False
    total: int = 0

    def summary(self, out: str) -> str:
        parts = [f"wrote {self.written + self.kept} of {self.total} rows to {out}"]
        if self.kept:
            parts.append(f"{self.kept} kept from the previous run")
        if self.cached:
            parts.append(f"{self.cached} from the cache")
        if self.failed:
            parts.append(f"{self.failed} failed (see the '{ERROR_COLUMN}' column; rerun with "
                         "--resume to retry only those)")
        text = "; ".join(parts)
        if self.interrupted:
            text = f"interrupted: {text}; rerun with --resume to continue"
        return text


def describe_error(exc: BaseException) -> str:
    """One line for a failed row: the library's own message, or ``Type: message``."""
    from ..errors import LLMJudgeError

    text = str(exc) if isinstance(exc, LLMJudgeError) else f"{type(exc).__name__}: {exc}"
    return redact(" ".join(text.split()))


def _attempt(work: Work, unit: Unit) -> tuple[bool, dict[str, Any] | None, bool, str]:
    try:
        row, cached = work(unit)
        return True, row, cached, ""
    except Exception as exc:  # noqa: BLE001 - a failed row never stops the run
        return False, None, False, describe_error(exc) or type(exc).__name__


def run_units(
    units: Sequence[Unit],
    work: Work,
    failed_row: FailedRow,
    *,
    out: str | os.PathLike[str] | None,
    columns: Sequence[str],
    plan: ResumePlan | None = None,
    concurrency: int = 8,
    label: str = "rows",
    quiet: bool = False,
    on_row: Callable[[Unit, Mapping[str, Any], bool], None] | None = None,
) -> RunResult:
    """Do ``work`` for every unit and write the rows to ``out``; see the module docstring.

    ``on_row(unit, row, ok)`` is called in input order for every row written in this run
    and for every row kept by ``plan`` (calibrate collects its statistics that way).
    """
    keep = list(plan.keep) if plan else []
    done = dict(plan.done) if plan else {}
    result = RunResult(kept=len(keep), total=len(units))
    if on_row is not None:
        for unit, row in zip(units, keep):
            on_row(unit, row, True)
    start = len(keep)
    todo = [u for u in units[start:] if u.index not in done]
    progress = Progress(len(todo), label, quiet=quiet)
    writer = RowWriter(out, columns, keep=keep) if out is not None else None
    executor = DaemonExecutor(max(1, concurrency), name="llmjudge-cli")
    # index -> (row, ok, computed in this run, cached)
    ready: dict[int, tuple[dict[str, Any], bool, bool, bool]] = {
        i: (row, True, False, False) for i, row in done.items()
    }
    futures: dict[Future[Any], Unit] = {}
    next_index = start

    def flush() -> None:
        nonlocal next_index
        while next_index < len(units) and next_index in ready:
            row, ok, fresh, cached = ready.pop(next_index)
            if writer is not None:
                writer.write(row)
            if fresh:
                result.written += 1
                result.failed += not ok
                result.cached += cached
            else:
                result.kept += 1
            if on_row is not None:
                on_row(units[next_index], row, ok)
            next_index += 1

    try:
        for unit in todo:
            futures[executor.submit(_attempt, work, unit)] = unit
        pending: set[Future[Any]] = set(futures)
        flush()
        while pending:
            finished, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            for future in finished:
                unit = futures.pop(future)
                ok, row, cached, message = future.result()
                if ok and row is not None:
                    ready[unit.index] = (row, True, True, cached)
                    progress.advance(cached=cached)
                else:
                    ready[unit.index] = (failed_row(unit, message), False, True, False)
                    progress.message(f"llmjudge: {unit.label}: {message}")
                    progress.advance(failed=True)
            flush()
        flush()
    except KeyboardInterrupt:
        # rows finished but not yet written (waiting for an earlier row) are dropped: the
        # output stays a prefix of the work, and --resume redoes them (cached: for free)
        result.interrupted = True
    finally:
        progress.close()
        if writer is not None:
            writer.close()
        executor.shutdown()
    if result.interrupted and out is not None:
        print("llmjudge: " + result.summary(os.fspath(out)), file=sys.stderr)
    return result


def run_rows_command(
    units: Sequence[Unit], work: Work, failed_row: FailedRow, args: Any, *, columns: Sequence[str],
    plan: ResumePlan | None, label: str, headline: str, close: Sequence[Any] = (),
) -> int:
    """A model command's run over every row into ``args.output``: closes ``close`` (judge,
    cache) afterwards, prints ``HEADLINE: summary`` unless ``args.quiet``; the exit status
    (0, 1 when a row failed, 130 when interrupted)."""
    from .common import close_quietly

    try:
        result = run_units(
            units, work, failed_row, out=args.output, columns=columns, plan=plan,
            concurrency=args.concurrency, label=label, quiet=args.quiet,
        )
    finally:
        close_quietly(*close)
    if result.interrupted:
        return 130
    if not args.quiet:
        print(f"{headline}: {result.summary(args.output)}")
    return 1 if result.failed else 0
