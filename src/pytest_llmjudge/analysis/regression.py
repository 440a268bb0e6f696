"""Baselines and regression checks: save a run's verdicts, compare a later run against them.

A *baseline* is a JSON file (see :func:`save_baseline`)::

    {"format": "pytest-llmjudge-baseline", "version": 1, "created": "2026-01-01T12:00:00+00:00",
     "settings": {...the run's public settings...},
     "cases": [{"test_id": "...", "metric": "correctness", "score": 0.8, "samples": [0.8, 0.8] | null,
                "passed": true, "threshold": 0.6, "error": null}, ...]}

:func:`load_baseline` reads that, or a results file (``--llm-results`` .jsonl/.csv), so any two
runs can be compared. :func:`compare` pairs cases by (test id, metric) — the n-th verdict of a
metric within one test pairs with the n-th — and reports per metric the baseline and current mean
over the paired cases, the mean difference (current - baseline) with a paired percentile
bootstrap interval over cases (seeded), the two-sided Wilcoxon signed-rank p-value, the cases
that flipped pass→fail and fail→pass, and the cases added or missing. A metric *regressed* when
the whole interval lies below ``-tolerance``.

``llmjudge compare BASELINE CURRENT`` (:mod:`pytest_llmjudge.cli.compare`) runs it on two files.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..datasets.tables import TableError, parse_csv, parse_jsonl
from ..errors import BaselineError
from .stats import paired_bootstrap_diff, wilcoxon_signed_rank

FORMAT = "pytest-llmjudge-baseline"
VERSION = 1
#: bootstrap resamples of the paired difference
N_RESAMPLES = 10000
#: settings that, when they differ between the runs, are named in the comparison's notes
COMPARED_SETTINGS = ("judge", "base_url", "threshold", "repeat", "repeat_temperature")
#: flipped/added/missing cases listed per metric in the text and markdown forms
MAX_LISTED = 20
#: texts a case keeps for showing its flip side by side
TEXT_NAMES = ("input", "output", "expected", "context", "criteria", "reason")
#: characters of a text shown in the terminal and markdown forms of a flip
FLIP_CHARS = 300
#: a group with fewer paired cases is shown, not tested
MIN_GROUP_PAIRS = 5


@dataclass
class CaseResult:
    """One verdict of a baseline or a run."""

    test_id: str
    metric: str
    score: float | None
    samples: list[float] | None = None
    passed: bool | None = None
    threshold: float | None = None
    error: str | None = None
    #: what was judged and the judge's reason (``input``, ``output``, ``expected``, ``context``,
    #: ``criteria``, ``reason``), when the run recorded them
    texts: dict[str, str] = field(default_factory=dict)
    #: the dataset case's columns (and group-by values), for per-group comparisons
    case: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FlippedCase:
    """A case whose verdict flipped between the runs, with both sides' texts."""

    label: str
    direction: str  # "pass->fail" or "fail->pass"
    baseline: CaseResult
    current: CaseResult


@dataclass
class Baseline:
    """The verdicts of one run with its settings; ``source`` says where they came from."""

    cases: list[CaseResult]
    settings: dict[str, Any] = field(default_factory=dict)
    created: str | None = None
    source: str = "current run"
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_records(
        cls, records: Iterable[tuple[str, Mapping[str, Any]] | Mapping[str, Any]],
        settings: Mapping[str, Any] | None = None, source: str = "current run",
    ) -> Baseline:
        """From ``RunSummary.records`` (``(test_id, record)`` pairs) or results-file rows."""
        cases = []
        for index, item in enumerate(records):
            if isinstance(item, Mapping):
                test_id, record = item.get("test_id"), item
            else:
                test_id, record = item
            cases.append(_case(dict(record, test_id=test_id), f"{source}: record {index + 1}"))
        return cls(cases, dict(settings or {}), source=source)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "created": self.created, "settings": self.settings,
                "cases": [case.to_json() for case in self.cases]}


BaselineLike = Baseline | Iterable[tuple[str, Mapping[str, Any]] | Mapping[str, Any]]


# --------------------------------------------------------------------------- reading and writing


def save_baseline(
    path: Path | str, records: Iterable[tuple[str, Mapping[str, Any]] | Mapping[str, Any]],
    settings: Mapping[str, Any] | None = None,
) -> Path:
    """Write the run's per-case verdicts and settings as a baseline JSON file (atomically)."""
    path = Path(path)
    baseline = Baseline.from_records(records, settings, source=str(path))
    baseline.created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(baseline.to_json(), handle, indent=1, ensure_ascii=False, allow_nan=False)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_baseline(path: Path | str) -> Baseline:
    """Read a baseline JSON file, or a results file (.jsonl or .csv) of a run.

    A results file holding several runs (appended) gives its last run. Raises
    :class:`BaselineError` with a one-line message naming the file for anything unreadable.
    """
    path = Path(path)
    if not path.exists():
        raise BaselineError(f"{path}: no such file")
    if path.is_dir():
        raise BaselineError(f"{path}: is a directory, expected a baseline .json or a results .jsonl/.csv file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BaselineError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BaselineError(
            f"{path}: not UTF-8 text; expected a baseline .json or a results .jsonl/.csv file"
        ) from None
    if not text.strip():
        raise BaselineError(f"{path}: empty file, no verdicts")
    if path.suffix.lower() == ".csv":
        return _from_rows(path, _csv_rows(path, text))
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError:
        return _from_rows(path, _jsonl_rows(path, text))
    if isinstance(data, dict) and "format" in data:
        return _from_baseline_json(path, data)
    if isinstance(data, dict):
        return _from_rows(path, [(1, data)])
    raise BaselineError(f"{path}: a JSON {type(data).__name__} is neither a baseline (an object with "
                        f"\"format\": \"{FORMAT}\") nor a results file (one JSON object per line)")


def _jsonl_rows(path: Path, text: str) -> list[tuple[int | None, Any]]:
    try:
        rows, _ = parse_jsonl(text)
    except TableError as exc:
        if exc.reason:  # not JSON at all: say what the file should have been
            raise BaselineError(f"{path}: line {exc.line}: not valid JSON ({exc.reason}); expected a "
                                "baseline JSON file or a results .jsonl file") from None
        raise BaselineError(f"{path}: line {exc.line}: {exc.problem}") from None
    return [(row.line, row.data) for row in rows]


def _csv_rows(path: Path, text: str) -> list[tuple[int | None, Any]]:
    try:
        rows, columns = parse_csv(text, exact_width=False)
    except TableError as exc:
        raise BaselineError(exc.message(str(path))) from None
    missing = [c for c in ("test_id", "metric", "score") if c not in columns]
    if missing:
        raise BaselineError(f"{path}: not a results file: CSV header lacks column(s) {', '.join(missing)}")
    return [(row.line, row.data) for row in rows]


def _from_rows(path: Path, rows: list[tuple[int | None, Any]]) -> Baseline:
    """A results file's rows (its last run, when it holds several); run records are skipped."""
    rows = [(n, row) for n, row in rows if not (isinstance(row, dict) and row.get("record") == "run")]
    if not rows:
        raise BaselineError(f"{path}: no verdict rows")
    for number, row in rows:
        if not isinstance(row, dict):
            raise BaselineError(f"{path}: line {number}: expected a JSON object, got {type(row).__name__}")
    notes = []
    run_ids = list(dict.fromkeys(row.get("run_id") for _, row in rows if row.get("run_id")))
    if len(run_ids) > 1:
        last = run_ids[-1]
        rows = [(n, row) for n, row in rows if row.get("run_id") == last]
        notes.append(f"{path} holds {len(run_ids)} runs; using the last (run_id {last})")
    cases = [_case(row, f"{path}: line {number}") for number, row in rows]
    settings: Any = rows[0][1].get("settings") or {}
    if isinstance(settings, str):
        try:
            settings = json.loads(settings)
        except json.JSONDecodeError:
            settings = {}
    timestamp = rows[0][1].get("timestamp")
    return Baseline(cases, settings if isinstance(settings, dict) else {},
                    created=str(timestamp) if timestamp else None, source=str(path), notes=notes)


def _from_baseline_json(path: Path, data: dict[str, Any]) -> Baseline:
    if data.get("format") != FORMAT:
        raise BaselineError(f"{path}: unknown format {data.get('format')!r}, expected {FORMAT!r}")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BaselineError(f"{path}: baseline version {version!r} is not a positive integer")
    if version > VERSION:
        raise BaselineError(f"{path}: baseline version {version} is newer than this pytest-llmjudge reads "
                            f"(up to {VERSION}); upgrade pytest-llmjudge")
    cases = data.get("cases")
    if not isinstance(cases, list):
        raise BaselineError(f"{path}: \"cases\" must be a list")
    settings = data.get("settings") or {}
    if not isinstance(settings, dict):
        raise BaselineError(f"{path}: \"settings\" must be an object")
    parsed = []
    for index, case in enumerate(cases):
        if not isinstance(case, dict):
            raise BaselineError(f"{path}: cases[{index}]: expected an object, got {type(case).__name__}")
        parsed.append(_case(case, f"{path}: cases[{index}]"))
    created = data.get("created")
    return Baseline(parsed, settings, created=str(created) if created else None, source=str(path))


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _number(value: Any, name: str, where: str) -> float | None:
    if _blank(value):
        return None
    if isinstance(value, bool):
        raise BaselineError(f"{where}: {name} {value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BaselineError(f"{where}: {name} {value!r} is not a number") from None
    if not math.isfinite(number):
        raise BaselineError(f"{where}: {name} {value!r} is not a finite number")
    return number


def _unit(value: Any, name: str, where: str) -> float | None:
    number = _number(value, name, where)
    if number is not None and not 0.0 <= number <= 1.0:
        raise BaselineError(f"{where}: {name} {number} is outside 0..1 (scores are normalized)")
    return number


def _flag(value: Any, where: str) -> bool | None:
    if _blank(value):
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise BaselineError(f"{where}: passed {value!r} is not true or false")


def _case_values(row: Mapping[str, Any]) -> dict[str, str]:
    """Case columns of a row: ``case`` (JSONL, records, baselines), ``case.<column>`` (CSV), ``groups``."""
    values: dict[str, str] = {}
    for source in (row.get("case"), row.get("groups")):
        if isinstance(source, Mapping):
            values.update({str(k): str(v) for k, v in source.items() if v is not None and v != ""})
    values.update({k[5:]: str(v) for k, v in row.items() if k.startswith("case.") and v not in (None, "")})
    return values


def _case(row: Mapping[str, Any], where: str) -> CaseResult:
    """Validate one verdict row (baseline case, results row or summary record)."""
    test_id, metric = row.get("test_id"), row.get("metric")
    if _blank(test_id) or not isinstance(test_id, str):
        raise BaselineError(f"{where}: missing test_id")
    if _blank(metric) or not isinstance(metric, str):
        raise BaselineError(f"{where}: missing metric")
    error = row.get("error")
    error = None if _blank(error) else str(error)
    samples_raw = row.get("samples")
    if isinstance(samples_raw, str) and samples_raw.strip():
        try:
            samples_raw = json.loads(samples_raw)
        except json.JSONDecodeError:
            raise BaselineError(f"{where}: samples {samples_raw!r} is not a JSON list") from None
    samples: list[float] | None = None
    if not _blank(samples_raw):
        if not isinstance(samples_raw, list):
            raise BaselineError(f"{where}: samples must be a list of scores")
        samples = []
        for sample in samples_raw:
            value = _unit(sample, "sample", where)
            if value is None:
                raise BaselineError(f"{where}: samples must be a list of scores, found {sample!r}")
            samples.append(value)
        samples = samples or None
    score = _unit(row.get("score"), "score", where)
    if score is None and error is None:
        raise BaselineError(f"{where}: missing score")
    if error is not None:
        score = None
    texts = {name: value for name in TEXT_NAMES if isinstance(value := row.get(name), str) and value.strip()}
    if isinstance(row.get("texts"), dict):  # a baseline file's case
        texts.update({k: v for k, v in row["texts"].items() if k in TEXT_NAMES and isinstance(v, str)})
    return CaseResult(test_id=test_id, metric=metric, score=score, samples=samples,
                      passed=_flag(row.get("passed"), where), threshold=_unit(row.get("threshold"), "threshold", where),
                      error=error, texts=texts, case=_case_values(row))


# --------------------------------------------------------------------------- comparison


@dataclass
class MetricComparison:
    """One metric of a comparison; ``diff`` is current - baseline over the paired cases."""

    metric: str
    paired: int
    baseline_mean: float | None
    current_mean: float | None
    diff: float | None
    low: float | None
    high: float | None
    p_value: float | None
    regressed: bool
    improved: bool
    status: str
    pass_to_fail: list[str] = field(default_factory=list)
    fail_to_pass: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    errored: list[str] = field(default_factory=list)
    flipped: list[FlippedCase] = field(default_factory=list)

    def interval_text(self, digits: int = 3) -> str:
        if self.low is None or self.high is None:
            return "-"
        return f"[{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


@dataclass
class GroupComparison:
    """One metric within one group of a dataset column (``--group-by``); p is Holm-corrected."""

    column: str
    value: str
    metric: str
    paired: int
    baseline_mean: float | None = None
    current_mean: float | None = None
    diff: float | None = None
    low: float | None = None
    high: float | None = None
    p_value: float | None = None
    p_holm: float | None = None
    regressed: bool = False
    improved: bool = False
    status: str = ""

    @property
    def tested(self) -> bool:
        return self.paired >= MIN_GROUP_PAIRS

    def line(self) -> str:
        if not self.tested:
            return (f"{self.column}={self.value}  {self.metric}  {self.paired} paired  "
                    f"shown, not tested (under {MIN_GROUP_PAIRS} paired cases)")
        interval = "-" if self.low is None or self.high is None else f"[{self.low:+.3f}, {self.high:+.3f}]"
        return (f"{self.column}={self.value}  {self.metric}  {self.paired} paired  {_f(self.baseline_mean, '.3f')} -> "
                f"{_f(self.current_mean, '.3f')}  diff {_f(self.diff, '+.3f')} {interval}  p={_p_text(self.p_value)} "
                f"p(Holm)={_p_text(self.p_holm)}  {self.status.upper() if self.regressed else self.status}")


@dataclass
class Comparison:
    """Per-metric comparison of a run against a baseline."""

    metrics: list[MetricComparison]
    tolerance: float
    confidence: float
    seed: int
    n_resamples: int
    baseline_source: str
    current_source: str
    baseline_cases: int
    current_cases: int
    notes: list[str] = field(default_factory=list)
    groups: list[GroupComparison] = field(default_factory=list)
    #: set when fewer than half of the baseline's cases paired: the comparison proves nothing
    pairing_problem: str | None = None

    @property
    def regressed(self) -> bool:
        return (self.pairing_problem is not None or any(m.regressed for m in self.metrics)
                or any(g.regressed for g in self.groups))

    @property
    def regressed_metrics(self) -> list[str]:
        return [m.metric for m in self.metrics if m.regressed] + [
            f"{g.metric} ({g.column}={g.value})" for g in self.groups if g.regressed]

    def group_method_text(self) -> str:
        tested = sum(g.tested for g in self.groups)
        return (f"per group (Holm-corrected two-sided Wilcoxon p over {tested} tested group(s); regressed when "
                f"p(Holm) < {1 - self.confidence:.2g} and the mean difference is below {_neg(self.tolerance)}; "
                f"groups under {MIN_GROUP_PAIRS} paired cases shown, not tested)")

    def method_text(self) -> str:
        return (f"difference = current - baseline over cases paired by test id and metric; "
                f"{self.confidence:.0%} paired bootstrap interval ({self.n_resamples} resamples, seed {self.seed}); "
                f"p: two-sided Wilcoxon signed-rank; regressed when the whole interval is below {_neg(self.tolerance)}")

    def summary_line(self) -> str:
        """One line for the end of a session: which metrics regressed, or that none did."""
        if self.pairing_problem is not None:
            return f"llmjudge baseline: {self.pairing_problem}"
        if not self.metrics:
            return "llmjudge baseline: no metric in common with the baseline"
        if not self.regressed:
            return (f"llmjudge baseline: no regression in {len(self.metrics)} metric(s) against "
                    f"{self.baseline_source} (tolerance {self.tolerance:g})")
        parts = [f"{m.metric} {m.baseline_mean:.3f} -> {m.current_mean:.3f}, diff {m.diff:+.3f} "
                 f"{m.interval_text()} p={_p_text(m.p_value)}" for m in self.metrics if m.regressed]
        parts += [f"{g.metric} in {g.column}={g.value} diff {_f(g.diff, '+.3f')} p(Holm)={_p_text(g.p_holm)}"
                  for g in self.groups if g.regressed]
        return (f"llmjudge baseline: REGRESSED against {self.baseline_source}: " + "; ".join(parts)
                + f" (whole {self.confidence:.0%} interval below {_neg(self.tolerance)})")

    def lines(self, *, flipped_texts: bool = False) -> list[str]:
        """The comparison as terminal text; ``flipped_texts`` adds each flipped case's texts."""
        out = [f"baseline: {self.baseline_source} ({self.baseline_cases} verdicts)  "
               f"current: {self.current_source} ({self.current_cases} verdicts)", self.method_text()]
        out.extend(f"note: {note}" for note in self.notes)
        header = ("metric", "paired", "baseline", "current", "diff", f"{self.confidence:.0%} interval", "p",
                  "pass->fail", "fail->pass", "added", "missing", "status")
        rows = [header]
        for m in self.metrics:
            rows.append((m.metric, str(m.paired), _f(m.baseline_mean, ".3f"), _f(m.current_mean, ".3f"),
                         _f(m.diff, "+.3f"), m.interval_text(), _p_text(m.p_value), str(len(m.pass_to_fail)),
                         str(len(m.fail_to_pass)), str(len(m.added)), str(len(m.missing)),
                         m.status.upper() if m.regressed else m.status))
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        for row in rows:
            cells = [row[0].ljust(widths[0])]
            cells += [cell.rjust(widths[i]) for i, cell in enumerate(row[:-1]) if i]
            cells.append(row[-1])
            out.append("  ".join(cells).rstrip())
        for m in self.metrics:
            for label, items in (("pass->fail", m.pass_to_fail), ("fail->pass", m.fail_to_pass),
                                 ("added", m.added), ("missing", m.missing), ("judge error", m.errored)):
                if items:
                    shown = ", ".join(items[:MAX_LISTED])
                    more = f", ... and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
                    out.append(f"{m.metric} {label} ({len(items)}): {shown}{more}")
        if self.groups:
            out.append(self.group_method_text() + ":")
            out.extend(g.line() for g in self.groups)
        for m in self.metrics if flipped_texts else ():
            for flip in m.flipped[:MAX_LISTED]:
                out.extend(_flip_lines(m.metric, flip))
        out.append(self.summary_line())
        return out

    def markdown(self) -> str:
        """The comparison as GitHub-flavoured markdown, ready for a pull-request comment."""
        if self.regressed:
            verdict = "**Regressed:** " + ", ".join(_md_code(name) for name in self.regressed_metrics) + "."
        elif self.metrics:
            verdict = f"No regression in {len(self.metrics)} metric(s)."
        else:
            verdict = "No metric in common with the baseline."
        out = ["### LLM judge: comparison with baseline", "",
               f"{verdict} Baseline {_md_code(self.baseline_source)} ({self.baseline_cases} verdicts) vs "
               f"{_md_code(self.current_source)} ({self.current_cases} verdicts).", ""]
        out.append(f"| metric | paired | baseline | current | diff | {self.confidence:.0%} interval | p (Wilcoxon) "
                   "| pass→fail | fail→pass | added | missing | status |")
        out.append("|---|---:|---:|---:|---:|:---:|---:|---:|---:|---:|---:|---|")
        for m in self.metrics:
            status = f"❌ **{m.status}**" if m.regressed else ("✅ " + m.status if m.improved else m.status)
            diff = _f(m.diff, "+.3f")
            out.append(f"| {_md_cell(m.metric)} | {m.paired} | {_f(m.baseline_mean, '.3f')} | "
                       f"{_f(m.current_mean, '.3f')} | {f'**{diff}**' if m.regressed else diff} | "
                       f"{m.interval_text()} | {_p_text(m.p_value)} | {len(m.pass_to_fail)} | "
                       f"{len(m.fail_to_pass)} | {len(m.added)} | {len(m.missing)} | {status} |")
        if self.groups:
            out += ["", f"<sub>{_md_cell(self.group_method_text())}</sub>", "",
                    "| column | group | metric | paired | baseline | current | diff | interval | p | p (Holm) "
                    "| status |",
                    "|---|---|---|---:|---:|---:|---:|:---:|---:|---:|---|"]
            for g in self.groups:
                interval = "-" if g.low is None or g.high is None else f"[{g.low:+.3f}, {g.high:+.3f}]"
                status = f"❌ **{g.status}**" if g.regressed else _md_cell(g.status)
                out.append(f"| {_md_cell(g.column)} | {_md_cell(g.value)} | {_md_cell(g.metric)} | {g.paired} | "
                           f"{_f(g.baseline_mean, '.3f')} | {_f(g.current_mean, '.3f')} | {_f(g.diff, '+.3f')} | "
                           f"{interval} | {_p_text(g.p_value)} | {_p_text(g.p_holm)} | {status} |")
        details = []
        for m in self.metrics:
            for label, items in (("pass → fail", m.pass_to_fail), ("fail → pass", m.fail_to_pass),
                                 ("added", m.added), ("missing", m.missing), ("judge error", m.errored)):
                if items:
                    details.append(f"- **{_md_cell(m.metric)}**, {label} ({len(items)}): "
                                   + ", ".join(_md_code(i) for i in items[:MAX_LISTED])
                                   + (f", … and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""))
        if details:
            out += ["", "<details><summary>Changed cases</summary>", "", *details, "", "</details>"]
        flips = [(m.metric, flip) for m in self.metrics for flip in m.flipped[:MAX_LISTED]]
        if flips:
            out += ["", "<details><summary>Flipped cases, side by side</summary>", "",
                    "| case | metric | input | expected | baseline | current |", "|---|---|---|---|---|---|"]
            for metric, flip in flips:
                b, c = flip.baseline, flip.current
                out.append(f"| {_md_code(flip.label)} {flip.direction.replace('->', ' → ')} | {_md_cell(metric)} | "
                           f"{_md_cell(_clip(c.texts.get('input') or b.texts.get('input', '')))} | "
                           f"{_md_cell(_clip(c.texts.get('expected') or b.texts.get('expected', '')))} | "
                           f"{_md_side(b)} | {_md_side(c)} |")
            out += ["", "</details>"]
        out += ["", f"<sub>{_md_cell(self.method_text())}.</sub>"]
        if self.notes:
            out += [""] + [f"> {_md_cell(note)}" for note in self.notes]
        return "\n".join(out) + "\n"

    def to_json(self) -> dict[str, Any]:
        """Plain values (for the HTML report and machine use)."""
        data = asdict(self)
        data["regressed"] = self.regressed
        data["method"] = self.method_text()
        return data


def _neg(tolerance: float) -> str:
    """``-tolerance`` as text, without a ``-0``."""
    return f"-{tolerance:g}" if tolerance else "0"


def _f(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _p_text(p: float | None) -> str:
    if p is None:
        return "-"
    return "<0.0001" if p < 0.0001 else f"{p:.4f}"


def _md_cell(text: str) -> str:
    """Text safe inside a markdown table cell: no pipes, newlines, HTML, links or mentions."""
    from ..report.markdown import md_cell

    return md_cell(text)


def _md_code(text: str) -> str:
    """An inline code span that survives backticks and pipes in the text."""
    from ..report.markdown import md_code

    return md_code(text)


def _clip(text: str, limit: int = FLIP_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _side_text(case: CaseResult) -> str:
    score = "-" if case.score is None else f"{case.score:.2f}"
    return f"{score} {'passed' if _passed(case) else 'failed'}"


def _md_side(case: CaseResult) -> str:
    """One side of a flip in a markdown cell: score, the answer, the judge's reason."""
    parts = [f"**{_side_text(case)}**"]
    if case.texts.get("output"):
        parts.append(_md_cell(_clip(case.texts["output"])))
    if case.texts.get("reason"):
        parts.append("<i>" + _md_cell(_clip(case.texts["reason"])) + "</i>")
    return "<br>".join(parts)


def _flip_lines(metric: str, flip: FlippedCase) -> list[str]:
    """A flipped case in the terminal form: the shared texts, then each side's answer and reason."""
    b, c = flip.baseline, flip.current
    lines = [f"{metric} {flip.direction}: {flip.label}"]
    for name in ("input", "expected"):
        text = c.texts.get(name) or b.texts.get(name)
        if text:
            lines.append(f"    {name + ':':10}{_clip(text)}")
    for side, case in (("baseline", b), ("current", c)):
        lines.append(f"    {side + ':':10}{_side_text(case)}")
        for name in ("output", "reason"):
            if case.texts.get(name):
                lines.append(f"      {name + ':':8}{_clip(case.texts[name])}")
    return lines


def _as_baseline(value: BaselineLike, source: str) -> Baseline:
    if isinstance(value, Baseline):
        return value
    return Baseline.from_records(value, source=source)


def _keyed(cases: Sequence[CaseResult]) -> dict[tuple[str, str, int], CaseResult]:
    """Key each case by (test id, metric, occurrence): a test may judge one metric twice."""
    seen: dict[tuple[str, str], int] = {}
    keyed = {}
    for case in cases:
        occurrence = seen.get((case.test_id, case.metric), 0)
        seen[(case.test_id, case.metric)] = occurrence + 1
        keyed[(case.test_id, case.metric, occurrence)] = case
    return keyed


def _label(key: tuple[str, str, int]) -> str:
    return key[0] if key[2] == 0 else f"{key[0]} (#{key[2] + 1})"


def _passed(case: CaseResult) -> bool | None:
    if case.passed is not None:
        return case.passed
    if case.score is not None and case.threshold is not None:
        return case.score >= case.threshold
    return None


def compare(
    baseline: BaselineLike, current: BaselineLike, tolerance: float = 0.0, seed: int = 0, *,
    confidence: float = 0.95, n_resamples: int = N_RESAMPLES, group_by: Sequence[str] = (),
) -> Comparison:
    """Compare ``current`` against ``baseline`` metric by metric (see the module docstring).

    Either side is a :class:`Baseline` or records (``(test_id, record)`` pairs or result rows).
    Cases with a judge error on either side are listed as ``errored`` and left out of the test.
    """
    if tolerance < 0 or not math.isfinite(tolerance):
        raise ValueError(f"tolerance must be a non-negative number, got {tolerance!r}")
    base = _as_baseline(baseline, "baseline")
    cur = _as_baseline(current, "current run")
    base_keys, cur_keys = _keyed(base.cases), _keyed(cur.cases)
    notes = list(base.notes) + list(cur.notes)
    cur_keys, moved = _align_test_ids(base_keys, cur_keys)
    if moved:
        notes.append(moved)
    paired_cases = sum(key in cur_keys for key in base_keys)
    pairing_problem = None
    if base_keys and paired_cases * 2 < len(base_keys):
        only = sorted(k for k in cur_keys if k not in base_keys)
        unpaired = sorted(k for k in base_keys if k not in cur_keys)
        example = f"; e.g. baseline {_label(unpaired[0])!r}" + (
            f" vs this run {_label(only[0])!r}" if only else " (this run has no case)")
        pairing_problem = (f"only {paired_cases} of the baseline's {len(base_keys)} cases paired with this run "
                           f"(test id and metric){example}: run the same tests from the same rootdir, or save a "
                           "new baseline")
    if base.settings and cur.settings:
        changed = [f"{name} {base.settings[name]!r} -> {cur.settings[name]!r}" for name in COMPARED_SETTINGS
                   if name in base.settings and name in cur.settings and base.settings[name] != cur.settings[name]]
        if changed:
            notes.append("settings differ (" + "; ".join(changed) + "): part of a difference may come from the "
                         "judge setup, not the application")
    metrics = sorted({key[1] for key in base_keys} | {key[1] for key in cur_keys})
    results = []
    for metric in metrics:
        pairs: list[tuple[float, float]] = []
        result = MetricComparison(metric, 0, None, None, None, None, None, None, False, False, "")
        for key in sorted(k for k in base_keys if k[1] == metric):
            if key not in cur_keys:
                result.missing.append(_label(key))
                continue
            b, c = base_keys[key], cur_keys[key]
            if b.score is None or c.score is None:
                result.errored.append(_label(key))
                continue
            pairs.append((b.score, c.score))
            b_pass, c_pass = _passed(b), _passed(c)
            if b_pass and c_pass is False:
                result.pass_to_fail.append(_label(key))
                result.flipped.append(FlippedCase(_label(key), "pass->fail", b, c))
            elif b_pass is False and c_pass:
                result.fail_to_pass.append(_label(key))
                result.flipped.append(FlippedCase(_label(key), "fail->pass", b, c))
        result.added = [_label(k) for k in sorted(cur_keys) if k[1] == metric and k not in base_keys]
        result.paired = len(pairs)
        if pairs:
            base_scores = [b for b, _ in pairs]
            cur_scores = [c for _, c in pairs]
            result.baseline_mean = math.fsum(base_scores) / len(pairs)
            result.current_mean = math.fsum(cur_scores) / len(pairs)
            diff, low, high = paired_bootstrap_diff(base_scores, cur_scores, n_resamples=n_resamples, seed=seed,
                                                    confidence=confidence)
            result.diff = diff
            if not math.isnan(low):
                result.low, result.high = low, high
            result.p_value = wilcoxon_signed_rank([c - b for b, c in pairs])
        if result.low is None or result.high is None:
            result.status = "too few paired cases"
        elif result.high < -tolerance:
            result.regressed, result.status = True, "regressed"
        elif result.low > tolerance:
            result.improved, result.status = True, "improved"
        elif result.high < 0:
            result.status = "lower, within tolerance"
        else:
            result.status = "no significant change"
        results.append(result)
    groups = _compare_groups(base_keys, cur_keys, group_by, tolerance=tolerance, seed=seed, confidence=confidence,
                             n_resamples=n_resamples)
    return Comparison(results, tolerance, confidence, seed, n_resamples, base.source, cur.source,
                      len(base.cases), len(cur.cases), notes, groups, pairing_problem)


def _align_test_ids(
    base_keys: dict[tuple[str, str, int], CaseResult], cur_keys: dict[tuple[str, str, int], CaseResult],
) -> tuple[dict[tuple[str, str, int], CaseResult], str]:
    """Pair test ids across a moved rootdir: pytest's node ids are relative to the rootdir, so
    when it moves every id gains or loses the same leading directories. When rewriting the
    current ids with one such prefix pairs more cases, the rewritten keys and a note are returned."""
    base_ids = {key[0] for key in base_keys}
    cur_ids = {key[0] for key in cur_keys}
    if not base_ids or not cur_ids or base_ids <= cur_ids:
        return cur_keys, ""
    candidates: set[tuple[str, str]] = set()  # (prefix to drop from current ids, prefix to add)
    for base_id in sorted(base_ids - cur_ids)[:50]:
        for cur_id in cur_ids:
            if cur_id.endswith("/" + base_id):
                candidates.add((cur_id[: len(cur_id) - len(base_id)], ""))
            elif base_id.endswith("/" + cur_id):
                candidates.add(("", base_id[: len(base_id) - len(cur_id)]))

    def rewrite(test_id: str, drop: str, add: str) -> str:
        return add + test_id[len(drop):] if test_id.startswith(drop) else test_id

    best, best_paired = cur_keys, len(base_ids & cur_ids)
    note = ""
    for drop, add in sorted(candidates):
        paired = len(base_ids & {rewrite(test_id, drop, add) for test_id in cur_ids})
        if paired > best_paired:
            best_paired = paired
            best = {(rewrite(k[0], drop, add), k[1], k[2]): case for k, case in cur_keys.items()}
            change = f"without the leading {drop!r}" if drop else f"with a leading {add!r}"
            note = (f"test ids paired {change} (pytest's rootdir differs between the runs; "
                    "pass path options as --llm-baseline=PATH)")
    return best, note


def _compare_groups(
    base_keys: dict[tuple[str, str, int], CaseResult], cur_keys: dict[tuple[str, str, int], CaseResult],
    group_by: Sequence[str], *, tolerance: float, seed: int, confidence: float, n_resamples: int,
) -> list[GroupComparison]:
    """Paired test per (column, group, metric), p-values Holm-corrected over every tested group."""
    pairs: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for key in sorted(set(base_keys) & set(cur_keys)):
        b, c = base_keys[key], cur_keys[key]
        if b.score is None or c.score is None:
            continue
        for column in dict.fromkeys(group_by):
            value = c.case.get(column, b.case.get(column))
            if value is not None:
                pairs.setdefault((column, value, key[1]), []).append((b.score, c.score))
    groups = []
    for (column, value, metric), group_pairs in sorted(pairs.items()):
        group = GroupComparison(column, value, metric, len(group_pairs))
        base_scores, cur_scores = [b for b, _ in group_pairs], [c for _, c in group_pairs]
        group.baseline_mean = math.fsum(base_scores) / len(group_pairs)
        group.current_mean = math.fsum(cur_scores) / len(group_pairs)
        group.diff = group.current_mean - group.baseline_mean
        if group.tested:
            _, low, high = paired_bootstrap_diff(base_scores, cur_scores, n_resamples=n_resamples, seed=seed,
                                                 confidence=confidence)
            if not math.isnan(low):
                group.low, group.high = low, high
            group.p_value = wilcoxon_signed_rank([c - b for b, c in group_pairs])
        groups.append(group)
    tested = [g for g in groups if g.p_value is not None]
    for group, adjusted in zip(tested, holm([g.p_value or 1.0 for g in tested])):
        group.p_holm = adjusted
        significant = adjusted < 1 - confidence
        group.regressed = significant and (group.diff or 0.0) < -tolerance
        group.improved = significant and (group.diff or 0.0) > tolerance
        group.status = "regressed" if group.regressed else "improved" if group.improved else "no significant change"
    for group in groups:
        group.status = group.status or "not tested"
    return groups


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted
