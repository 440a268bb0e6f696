"""The ``llm judge summary`` section as a list of lines, testable without pytest."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..analysis.judge_agreement import low_agreement_warning
from .collect import GateResult, RunSummary
from .groups import terminal_lines as group_lines
from .usage import Prices

if TYPE_CHECKING:
    from ..analysis.regression import Comparison

MAX_FAILURES_SHOWN = 10
REASON_WIDTH = 160


def summary_lines(
    summary: RunSummary,
    gates: list[GateResult] | None = None,
    *,
    judge_calls: int | None = None,
    default_judge: str = "",
    adaptive_budget: int | None = None,
    extra: list[str] | None = None,
    prices: Prices | None = None,
    verbose: bool = False,
    comparison: Comparison | None = None,
) -> list[str]:
    """One table, the gates (and the baseline verdict), at most 10 lowest-scoring failures;
    then the group breakdown and what was written where. ``verbose`` adds the comparison's
    details, every group and the k-of-n decisions.

    Pass rates carry a Wilson 95% interval and mean scores a Student-t 95% interval over cases.
    Gates, comparison, prices, adaptive budget and the closing lines come from ``summary``
    unless given.
    """
    gates = summary.gate_results if gates is None else gates
    comparison = summary.comparison if comparison is None else comparison
    prices = summary.prices if prices is None else prices
    adaptive_budget = summary.adaptive_budget if adaptive_budget is None else adaptive_budget
    extra = summary.notes if extra is None else extra
    judges = ", ".join(sorted(summary.judges)) or default_judge
    head = f"judge: {judges} | verdicts: {summary.verdicts} | from cache: {summary.cached}"
    if judge_calls is not None:
        head += f" | judge calls: {judge_calls}"
    lines = [head, summary.usage.summary_line(prices or {})]
    warning = low_agreement_warning(summary.judges or [default_judge])
    if warning:  # first, so nobody reads the grades below without it
        lines.insert(0, warning)
    lines += _metric_table(summary)
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
    verdict_lines = [("" if gate.ok else "FAILED ") + "gate: " + gate.describe() for gate in gates]
    if comparison is not None:
        verdict_lines.append(("FAILED " if comparison.regressed else "") + comparison.summary_line())
    if verdict_lines:
        lines += ["", *verdict_lines]
    lines += _failure_lines(summary, verbose=verbose)
    lines += group_lines(summary, verbose=verbose)
    if verbose and comparison is not None:
        lines += ["", *comparison.lines()[:-1]]  # its last line is the verdict above
    if verbose and summary.k_of_n:
        lines.append("")
        lines.append(f"decided k-of-n (min_passes) ({len(summary.k_of_n)}):")
        for test_id, metric, score, passed, decision in summary.k_of_n:
            lines.append(f"  {test_id}  {metric}={score:.2f}  {'passed' if passed else 'failed'}: {decision}")
    if extra:
        lines += ["", *extra]
    elif lines[-1] == "":
        lines.pop()
    return lines


def _metric_table(summary: RunSummary) -> list[str]:
    header = ("metric", "cases", "passed", "pass rate [95% CI]", "mean score [95% CI]", "threshold",
              "unstable", "judge errors")
    rows = [header]
    for name in sorted(summary.metrics):
        m = summary.metrics[name]
        rows.append((name, str(m.cases), str(m.passed),
                     m.pass_rate_text(), m.mean_text(), m.threshold_text(),
                     str(m.unstable), str(m.errors)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(widths[i]) for i, cell in enumerate(row) if i]
        lines.append("  ".join(cells).rstrip())
    lines.append("(pass rate: Wilson interval; mean score: Student-t interval over cases; "
                 "unstable: samples on both sides of the threshold)")
    return lines


def _failure_lines(summary: RunSummary, *, verbose: bool) -> list[str]:
    scored = sorted((f for f in summary.failures if f.error is None), key=lambda f: (f.score or 0.0, f.test_id))
    errors = [f for f in summary.failures if f.error is not None]
    lines: list[str] = []
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
        shown = errors if verbose else errors[:MAX_FAILURES_SHOWN]
        lines.append("")
        lines.append(f"judge errors ({len(errors)}), not counted as scores:")
        for failure in shown:
            error = " ".join((failure.error or "").split())[:REASON_WIDTH]
            lines.append(f"  {failure.test_id}  {failure.metric}  {error}")
        if len(shown) < len(errors):
            lines.append(f"  ... and {len(errors) - len(shown)} more (-v shows all)")
    return lines
