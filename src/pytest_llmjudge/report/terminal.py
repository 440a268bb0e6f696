"""The ``llm judge summary`` section as a list of lines, testable without pytest."""

from __future__ import annotations

from .collect import GateResult, RunSummary
from .groups import terminal_lines as group_lines
from .usage import Prices

MAX_FAILURES_SHOWN = 10
REASON_WIDTH = 160


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _with_interval(value: float | None, interval: tuple[float, float] | None, spec: str) -> str:
    if value is None:
        return "-"
    if interval is None:
        return format(value, spec)
    return f"{format(value, spec)} [{format(interval[0], spec)}, {format(interval[1], spec)}]"


def summary_lines(
    summary: RunSummary,
    gates: list[GateResult],
    *,
    judge_calls: int | None = None,
    default_judge: str = "",
    adaptive_budget: int | None = None,
    extra: list[str] | None = None,
    prices: Prices | None = None,
    verbose: bool = False,
) -> list[str]:
    """Per-metric table, then the lowest-scoring failures, then the pass-rate gates.

    Pass rates carry a Wilson 95% interval and mean scores a Student-t 95% interval over cases.
    """
    judges = ", ".join(sorted(summary.judges)) or default_judge
    head = f"judge: {judges} | verdicts: {summary.verdicts} | from cache: {summary.cached}"
    if judge_calls is not None:
        head += f" | judge calls: {judge_calls}"
    lines = [head, summary.usage.summary_line(prices or {})]
    header = ("metric", "cases", "passed", "pass rate [95% CI]", "mean score [95% CI]", "threshold",
              "unstable", "judge errors")
    rows = [header]
    for name in sorted(summary.metrics):
        m = summary.metrics[name]
        rows.append((name, str(m.cases), str(m.passed),
                     _with_interval(m.pass_rate, m.pass_rate_interval(), ".0%"),
                     _with_interval(m.mean_score, m.mean_interval(), ".2f"), m.threshold_text(),
                     str(m.unstable), str(m.errors)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(widths[i]) for i, cell in enumerate(row) if i]
        lines.append("  ".join(cells).rstrip())
    lines.append("(pass rate: Wilson interval; mean score: Student-t interval over cases; "
                 "unstable: samples on both sides of the threshold)")
    lines.extend(group_lines(summary, verbose=verbose))
    noisy = [(n, m) for n, m in sorted(summary.metrics.items()) if m.noise_sd is not None]
    if noisy:
        lines.append("judge noise floor (sd of re-judging identical answers): " + ", ".join(
            f"{n} {m.noise_sd:.3f} over {len(m.noise_sds)} cases" for n, m in noisy))
    adaptive = sum(m.adaptive_verdicts for m in summary.metrics.values())
    if adaptive_budget is not None and adaptive:
        drawn = sum(m.samples_drawn for m in summary.metrics.values())
        budget = adaptive_budget * adaptive
        lines.append(f"adaptive repeats: {drawn} samples drawn; a fixed {adaptive_budget} per verdict "
                     f"would take {budget} ({budget - drawn} judge calls saved)")
    lines.extend(extra or [])
    if summary.k_of_n:
        lines.append("")
        lines.append(f"decided k-of-n (min_passes) ({len(summary.k_of_n)}):")
        for test_id, metric, score, passed, decision in summary.k_of_n[:MAX_FAILURES_SHOWN]:
            lines.append(f"  {test_id}  {metric}={score:.2f}  {'passed' if passed else 'failed'}: {decision}")
        if len(summary.k_of_n) > MAX_FAILURES_SHOWN:
            lines.append(f"  ... and {len(summary.k_of_n) - MAX_FAILURES_SHOWN} more")
    scored = sorted((f for f in summary.failures if f.error is None), key=lambda f: (f.score or 0.0, f.test_id))
    errors = [f for f in summary.failures if f.error is not None]
    if scored:
        lines.append("")
        lines.append(f"lowest-scoring failures ({min(len(scored), MAX_FAILURES_SHOWN)} of {len(scored)}):")
        for failure in scored[:MAX_FAILURES_SHOWN]:
            reason = " ".join(failure.reason.split())
            if len(reason) > REASON_WIDTH:
                reason = reason[: REASON_WIDTH - 3] + "..."
            decided = f"[{failure.decision}]  " if failure.decision else ""
            lines.append(f"  {failure.test_id}  {failure.metric}={failure.score:.2f}  {decided}{reason}")
    if errors:
        lines.append("")
        lines.append(f"judge errors ({len(errors)}), not counted as scores:")
        for failure in errors[:MAX_FAILURES_SHOWN]:
            error = " ".join((failure.error or "").split())[:REASON_WIDTH]
            lines.append(f"  {failure.test_id}  {failure.metric}  {error}")
    if gates:
        lines.append("")
        for gate in gates:
            lines.append(("" if gate.ok else "FAILED ") + "gate: " + gate.describe())
    return lines
