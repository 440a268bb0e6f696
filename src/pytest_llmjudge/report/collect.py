"""RunSummary: verdict records from test reports, aggregated per metric. No pytest imports.

It is the one summary object every report renders (terminal, JUnit suite properties, HTML,
markdown, the baseline comparison): a report reads its figures here and computes none itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .usage import RunUsage


@dataclass
class FailedCase:
    test_id: str
    metric: str
    score: float | None
    reason: str
    error: str | None = None
    #: how pass/fail was decided, for a repeated verdict ("mean of 3 samples", "1 of 3 samples passed ...")
    decision: str | None = None


@dataclass
class MetricSummary:
    """Aggregates of one metric over the run."""

    name: str
    scores: list[float] = field(default_factory=list)
    passed: int = 0
    failed: int = 0
    errors: int = 0
    cached: int = 0
    unstable: int = 0
    #: verdicts sampled adaptively (--llm-repeat auto) and the samples they drew
    adaptive_verdicts: int = 0
    samples_drawn: int = 0
    thresholds: set[float] = field(default_factory=set)
    #: per-case standard deviation of noise-floor re-judgements of an identical answer
    noise_sds: list[float] = field(default_factory=list)

    @property
    def cases(self) -> int:
        return self.passed + self.failed + self.errors

    @property
    def judged(self) -> int:
        return self.passed + self.failed

    @property
    def pass_rate(self) -> float | None:
        """Passed over judged cases; judge errors are counted apart, never as failures."""
        return self.passed / self.judged if self.judged else None

    @property
    def mean_score(self) -> float | None:
        return sum(self.scores) / len(self.scores) if self.scores else None

    def pass_rate_interval(self) -> tuple[float, float] | None:
        """Wilson 95% interval of the pass rate."""
        if not self.judged:
            return None
        from ..analysis.stats import wilson_interval

        return wilson_interval(self.passed, self.judged)

    def mean_interval(self) -> tuple[float, float] | None:
        """Student-t 95% interval of the mean score over cases (None below two cases)."""
        if len(self.scores) < 2:
            return None
        from ..analysis.stats import mean_interval

        _, low, high = mean_interval(self.scores, method="t")
        return max(0.0, low), min(1.0, high)

    def pass_rate_text(self) -> str:
        """``83% [44%, 97%]``: the pass rate with its Wilson interval, as every table shows it."""
        return _with_interval(self.pass_rate, self.pass_rate_interval(), ".0%")

    def mean_text(self) -> str:
        """``0.74 [0.52, 0.96]``: the mean score with its Student-t interval."""
        return _with_interval(self.mean_score, self.mean_interval(), ".2f")

    @property
    def noise_sd(self) -> float | None:
        return sum(self.noise_sds) / len(self.noise_sds) if self.noise_sds else None

    def threshold_text(self) -> str:
        if not self.thresholds:
            return "-"
        low, high = min(self.thresholds), max(self.thresholds)
        return f"{low:.2f}" if low == high else f"{low:.2f}-{high:.2f}"


def _with_interval(value: float | None, interval: tuple[float, float] | None, spec: str) -> str:
    if value is None:
        return "-"
    if interval is None:
        return format(value, spec)
    return f"{format(value, spec)} [{format(interval[0], spec)}, {format(interval[1], spec)}]"


@dataclass
class GateResult:
    metric: str
    required: float
    actual: float | None

    @property
    def ok(self) -> bool:
        return self.actual is not None and self.actual >= self.required

    def describe(self) -> str:
        actual = "no verdicts" if self.actual is None else f"{self.actual:.1%}"
        verdict = "met" if self.ok else "MISSED"
        return f"{self.metric} pass rate >= {self.required:.1%}: {verdict} ({actual})"


def _count(summary: MetricSummary, record: dict[str, Any]) -> None:
    """Add one verdict record to a metric's aggregates."""
    if record.get("error") or record.get("score") is None:
        summary.errors += 1
        return
    summary.scores.append(float(record["score"]))
    if record.get("threshold") is not None:
        summary.thresholds.add(float(record["threshold"]))
    if record.get("samples") and record.get("adaptive"):
        summary.adaptive_verdicts += 1
        summary.samples_drawn += len(record["samples"])
    if record.get("unstable"):
        summary.unstable += 1
    noise = record.get("noise_samples") or []
    if len(noise) >= 2:
        mean = sum(noise) / len(noise)
        summary.noise_sds.append((sum((x - mean) ** 2 for x in noise) / (len(noise) - 1)) ** 0.5)
    if record.get("cached"):
        summary.cached += 1
    if record["passed"]:
        summary.passed += 1
    else:
        summary.failed += 1


@dataclass
class RunSummary:
    """Every verdict record of the run, grouped by metric."""

    metrics: dict[str, MetricSummary] = field(default_factory=dict)
    failures: list[FailedCase] = field(default_factory=list)
    judges: set[str] = field(default_factory=set)
    records: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: (test id, metric, score, passed, decision) of every verdict decided k-of-n (min_passes)
    k_of_n: list[tuple[str, str, float, bool, str]] = field(default_factory=list)
    usage: RunUsage = field(default_factory=RunUsage)

    #: (group-by column, value) -> metric -> aggregates over that group's verdicts
    groups: dict[tuple[str, str], dict[str, MetricSummary]] = field(default_factory=dict)

    # -- decided at the end of the run, before any report renders
    #: the pass-rate gates (``--llm-min-pass-rate``) checked against this run
    gate_results: list[GateResult] = field(default_factory=list)
    #: the comparison with ``--llm-baseline`` (a :class:`~pytest_llmjudge.analysis.regression.Comparison`)
    comparison: Any = None
    #: judge prices (``llm_prices``), for the cost figures
    prices: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: the run's settings as plain values (``Settings.public()``)
    settings: dict[str, Any] = field(default_factory=dict)
    #: samples a fixed ``--llm-repeat-max`` would have drawn per verdict (``--llm-repeat auto``)
    adaptive_budget: int | None = None
    #: lines for the end of the terminal summary: preflight result, files written, endpoint notes
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_records(cls, records: Any) -> RunSummary:
        """A summary of ``(test_id, record)`` pairs or results-file rows (``test_id`` in each row)."""
        summary = cls()
        for item in records:
            test_id, record = (item.get("test_id", ""), item) if isinstance(item, dict) else item
            summary.add(str(test_id), record)
        return summary

    @property
    def judge_calls(self) -> int:
        """Requests sent to judges (cached verdicts sent none)."""
        return sum(int(record.get("judge_calls") or 0) for _, record in self.records)

    def add(self, test_id: str, record: dict[str, Any]) -> None:
        self.records.append((test_id, record))
        self.usage.add(record)
        name = record["metric"]
        if record.get("judge"):
            self.judges.add(record["judge"])
        summaries = [self.metrics.setdefault(name, MetricSummary(name))]
        for column, value in (record.get("groups") or {}).items():
            summaries.append(self.groups.setdefault((column, str(value)), {}).setdefault(name, MetricSummary(name)))
        for summary in summaries:
            _count(summary, record)
        if record.get("error") or record.get("score") is None:
            self.failures.append(FailedCase(test_id, name, None, "", record.get("error") or "no verdict"))
            return
        decision = str(record.get("decision") or "") if record.get("samples") else None
        if decision and record.get("decision_kind") == "k_of_n":
            self.k_of_n.append((test_id, name, float(record["score"]), bool(record["passed"]), decision))
        if not record["passed"]:
            self.failures.append(FailedCase(test_id, name, float(record["score"]), record.get("reason", ""),
                                            decision=decision))

    def group_columns(self) -> list[str]:
        return sorted({column for column, _ in self.groups})

    @property
    def unstable(self) -> int:
        return sum(m.unstable for m in self.metrics.values())

    @property
    def verdicts(self) -> int:
        return sum(m.judged for m in self.metrics.values())

    @property
    def cached(self) -> int:
        return sum(m.cached for m in self.metrics.values())

    def gates(self, min_pass_rates: dict[str, float]) -> list[GateResult]:
        """Check ``{metric: rate}`` (``*`` = every metric seen) against the run."""
        results = []
        for metric, rate in min_pass_rates.items():
            names = sorted(self.metrics) if metric == "*" else [metric]
            for name in names:
                summary = self.metrics.get(name)
                results.append(GateResult(name, rate, summary.pass_rate if summary else None))
        return results
