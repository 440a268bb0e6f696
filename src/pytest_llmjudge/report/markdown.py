"""The markdown summary: for ``$GITHUB_STEP_SUMMARY`` (appended) and ``--llm-markdown PATH``.

Per-metric table, gates, the baseline comparison, the worst failures with their reasons. Every
text that comes from a test, a dataset or the judge goes through :func:`md_cell` (or
:func:`md_code`): no pipe, newline, HTML, link, image or mention in it reaches the renderer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .collect import GateResult, RunSummary
from .usage import Prices

if TYPE_CHECKING:
    from ..analysis.regression import Comparison

MAX_FAILURES = 10
REASON_CHARS = 300
#: GitHub keeps at most 1 MiB of a step summary; stay well below it
MAX_CHARS = 100_000

_ESCAPED = set("\\`*_[]!|~")  # emphasis, code, links and images, table cells, strikethrough
_ENTITIES = {"<": "&lt;", ">": "&gt;", "&": "&amp;", "@": "&#64;"}


def md_cell(text: Any, limit: int | None = None) -> str:
    """Text safe in a markdown table cell: one line, markdown punctuation escaped, HTML as entities."""
    flat = " ".join(str(text).split())
    if limit is not None and len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return "".join(_ENTITIES.get(c) or ("\\" + c if c in _ESCAPED else c) for c in flat)


def md_code(text: Any) -> str:
    """An inline code span that survives backticks and pipes in the text."""
    flat = " ".join(str(text).split()).replace("|", "\\|")
    longest = run = 0
    for char in flat:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * (longest + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def markdown_summary(
    summary: RunSummary,
    gates: list[GateResult] | None = None,
    *,
    comparison: Comparison | None = None,
    prices: Prices | None = None,
    groups: list[str] | None = None,
    title: str = "LLM judge summary",
) -> str:
    """The run as GitHub-flavoured markdown (``groups``: extra markdown blocks, already escaped;
    default: the group breakdown). Gates, comparison and prices come from ``summary`` unless given."""
    gates = summary.gate_results if gates is None else gates
    comparison = summary.comparison if comparison is None else comparison
    prices = summary.prices if prices is None else prices
    if groups is None:
        from .groups import markdown_block

        groups = [markdown_block(summary)] if summary.groups else []
    judges = ", ".join(sorted(summary.judges)) or "-"
    out = [f"### {md_cell(title)}", "",
           f"Judge {md_code(judges)} · {summary.verdicts} verdicts · {summary.cached} from cache · "
           + md_cell(summary.usage.summary_line(prices or {})), ""]
    out += ["| metric | cases | passed | pass rate [95% CI] | mean score [95% CI] | threshold | unstable "
            "| judge errors |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in sorted(summary.metrics):
        m = summary.metrics[name]
        out.append(f"| {md_cell(name)} | {m.cases} | {m.passed} | "
                   f"{m.pass_rate_text()} | {m.mean_text()} | {m.threshold_text()} | "
                   f"{m.unstable} | {m.errors} |")
    if gates:
        out += ["", "**Gates**", ""]
        out += [f"- {'✅' if g.ok else '❌'} {md_cell(g.describe())}" for g in gates]
    for block in groups or ():
        out += ["", block]
    if comparison is not None:
        out += ["", comparison.markdown().replace("### LLM judge: comparison", "#### Comparison", 1)]
    out += _failures(summary)
    text = "\n".join(out).rstrip() + "\n"
    if len(text) > MAX_CHARS:
        cut = text.rfind("\n", 0, MAX_CHARS)
        text = text[:cut] + "\n\n_(truncated: the full report is in the results file / HTML report)_\n"
    return text


def _failures(summary: RunSummary) -> list[str]:
    scored = sorted((f for f in summary.failures if f.error is None), key=lambda f: (f.score or 0.0, f.test_id))
    errors = [f for f in summary.failures if f.error is not None]
    out: list[str] = []
    if scored:
        out += ["", f"**Lowest-scoring failures** ({min(len(scored), MAX_FAILURES)} of {len(scored)})", "",
                "| test | metric | score | reason |", "|---|---|---:|---|"]
        out += [f"| {md_code(f.test_id)} | {md_cell(f.metric)} | {f.score or 0.0:.2f} | "
                f"{md_cell(f.reason, REASON_CHARS)} |" for f in scored[:MAX_FAILURES]]
    if errors:
        out += ["", f"**Judge errors** ({len(errors)}), not counted as scores", "",
                "| test | metric | error |", "|---|---|---|"]
        out += [f"| {md_code(f.test_id)} | {md_cell(f.metric)} | {md_cell(f.error, REASON_CHARS)} |"
                for f in errors[:MAX_FAILURES]]
    return out


def write_markdown(text: str, path: Any, *, append: bool) -> None:
    """Write (or, for ``$GITHUB_STEP_SUMMARY``, append) the summary."""
    from pathlib import Path

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a" if append else "w", encoding="utf-8") as handle:
        handle.write(text if not append else "\n" + text)


def environment_summary_path(environ: Mapping[str, str]) -> str | None:
    """``$GITHUB_STEP_SUMMARY`` (set by GitHub Actions, Gitea and Forgejo runners), when set."""
    return environ.get("GITHUB_STEP_SUMMARY") or None
