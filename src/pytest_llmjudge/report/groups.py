"""Breakdown by a dataset column (``--llm-group-by``): pass rate and mean score per metric × group.

A group *differs* from the whole run when its 95% interval (Wilson for the pass rate, Student-t
for the mean score) excludes the whole run's value. A group of fewer than
:data:`MIN_TESTED` cases is shown but not tested. With more than :data:`MANY_GROUPS` groups in
a column only those that differ are listed, unless verbose. No pytest imports.
"""

from __future__ import annotations

from dataclasses import dataclass

from .collect import MetricSummary, RunSummary

MIN_TESTED = 5
MANY_GROUPS = 6


@dataclass
class GroupRow:
    """One metric in one group, beside the same metric over the whole run."""

    column: str
    value: str
    metric: str
    group: MetricSummary
    whole: MetricSummary

    @property
    def tested(self) -> bool:
        return self.group.judged >= MIN_TESTED

    @property
    def direction(self) -> str | None:
        """``higher`` or ``lower`` when the group differs from the whole run, else None."""
        if not self.tested:
            return None
        for value, interval, whole in (
            (self.group.pass_rate, self.group.pass_rate_interval(), self.whole.pass_rate),
            (self.group.mean_score, self.group.mean_interval(), self.whole.mean_score),
        ):
            if value is None or interval is None or whole is None:
                continue
            if interval[0] > whole:
                return "higher"
            if interval[1] < whole:
                return "lower"
        return None

    @property
    def verdict(self) -> str:
        if not self.tested:
            return f"n<{MIN_TESTED}, not tested"
        return self.direction or "within"


def group_rows(summary: RunSummary) -> list[GroupRow]:
    """Every (column, group, metric), sorted by column, metric, then group."""
    rows = [GroupRow(column, value, metric, group, summary.metrics[metric])
            for (column, value), metrics in summary.groups.items()
            for metric, group in metrics.items() if metric in summary.metrics]
    return sorted(rows, key=lambda r: (r.column, r.metric, r.value))


def shown_rows(rows: list[GroupRow], *, verbose: bool) -> tuple[list[GroupRow], int]:
    """The rows to list, and how many were left out (many groups, not verbose: only those that differ)."""
    if verbose:
        return rows, 0
    shown: list[GroupRow] = []
    hidden = 0
    for column in dict.fromkeys(r.column for r in rows):
        in_column = [r for r in rows if r.column == column]
        if len({r.value for r in in_column}) <= MANY_GROUPS:
            shown += in_column
        else:
            differing = [r for r in in_column if r.direction is not None]
            shown += differing
            hidden += len(in_column) - len(differing)
    return shown, hidden


def cells(row: GroupRow) -> tuple[str, ...]:
    g = row.group
    return (row.column, row.value, row.metric, str(g.cases), g.pass_rate_text(),
            g.mean_text(), row.verdict)


HEADER = ("column", "group", "metric", "cases", "pass rate [95% CI]", "mean score [95% CI]", "vs whole run")


def terminal_lines(summary: RunSummary, *, verbose: bool) -> list[str]:
    """The breakdown table for the terminal summary (empty without group-by columns)."""
    rows = group_rows(summary)
    if not rows:
        return []
    shown, hidden = shown_rows(rows, verbose=verbose)
    table = [HEADER, *(cells(r) for r in shown)]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
    lines = ["", f"breakdown by {', '.join(summary.group_columns())} (a group differs when its 95% interval "
                 f"excludes the whole run's value; groups under {MIN_TESTED} cases are not tested):"]
    for row in table:
        lines.append("  ".join(c.rjust(widths[i]) if i in (3,) else c.ljust(widths[i])
                               for i, c in enumerate(row)).rstrip())
    if hidden:
        lines.append(f"({hidden} more group rows within their interval of the whole run or under {MIN_TESTED} "
                     "cases; -v shows all)")
    return lines


def junit_properties(summary: RunSummary) -> list[tuple[str, str]]:
    """``llm.<metric>.group.<column>.<value>.n`` / ``.pass_rate`` / ``.mean`` for every group."""
    props: list[tuple[str, str]] = []
    for row in group_rows(summary):
        prefix = f"llm.{row.metric}.group.{row.column}.{row.value}"
        g = row.group
        props += [(f"{prefix}.n", str(g.cases)),
                  (f"{prefix}.pass_rate", "" if g.pass_rate is None else f"{g.pass_rate:.4f}"),
                  (f"{prefix}.mean", "" if g.mean_score is None else f"{g.mean_score:.4f}"),
                  (f"{prefix}.vs_whole", row.verdict)]
    return props


def markdown_block(summary: RunSummary) -> str:
    """The breakdown as a markdown table (empty string without group-by columns)."""
    from .markdown import md_cell

    rows = group_rows(summary)
    if not rows:
        return ""
    out = [f"**Breakdown by {md_cell(', '.join(summary.group_columns()))}**", "",
           "| " + " | ".join(HEADER) + " |", "|---|---|---|---:|---:|---:|---|"]
    # column, group and metric come from the data; the figures are ours
    out += ["| " + " | ".join(md_cell(c) if i < 3 else c for i, c in enumerate(cells(r))) + " |" for r in rows]
    return "\n".join(out)
