"""The HTML report: one self-contained file (inline CSS, JS and SVG; nothing is fetched).

:func:`render_html` gives per-metric score histograms, pass rates with their Wilson interval
and mean scores with their t interval; a table of every case that sorts on a header click and
filters by text, metric, failures and unstable cases; and, given a
:class:`~pytest_llmjudge.analysis.regression.Comparison`, the per-metric difference with its interval
and the flipped cases.

The table's state lives in the URL fragment, e.g. ``report.html#filter=paris&metric=correctness
&failures=1&unstable=1&sort=score&dir=desc``, so a filtered view can be linked to.

Every text goes through :func:`html.escape`; the data embedded for scripts sits in
``<script type="application/json">`` with ``<``, ``>`` and ``&`` written as ``\\u003c`` etc.,
so no answer, reason or test id can close the element or inject markup.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..analysis.stats import straddles
from .collect import MetricSummary, RunSummary

if TYPE_CHECKING:
    from ..analysis.regression import Comparison, MetricComparison
    from .groups import GroupRow

__all__ = ["render_html"]

BINS = 10
#: characters of an answer or reason kept in a cell (the full text is in the embedded JSON)
CELL_CHARS = 4000


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any) -> float | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _flag(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _samples(value: Any) -> list[float]:
    if isinstance(value, str) and value.strip():
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return []
    if not isinstance(value, list):
        return []
    return [n for n in (_num(v) for v in value) if n is not None]


def _normalize(records: Iterable[tuple[str, Mapping[str, Any]] | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows of plain values from ``(test_id, record)`` pairs or results-file rows."""
    rows = []
    for item in records:
        if isinstance(item, Mapping):
            test_id, rec = item.get("test_id", ""), item
        else:
            test_id, rec = item
        error = rec.get("error") or None
        score = None if error else _num(rec.get("score"))
        threshold = _num(rec.get("threshold"))
        samples = _samples(rec.get("samples"))
        unstable = _flag(rec.get("unstable"))
        if unstable is None:
            unstable = threshold is not None and len(samples) > 1 and straddles(samples, threshold)
        passed = False if error else _flag(rec.get("passed"))
        rows.append({
            "test_id": str(test_id), "metric": str(rec.get("metric") or ""), "score": score,
            "threshold": threshold, "samples": samples, "passed": passed, "unstable": bool(unstable),
            "reason": str(rec.get("reason") or ""), "error": None if error is None else str(error),
            "input": str(rec.get("input") or ""), "output": str(rec.get("output") or ""),
            "expected": str(rec.get("expected") or ""), "judge": str(rec.get("judge") or ""),
            "cached": bool(_flag(rec.get("cached"))), "soft": bool(_flag(rec.get("soft"))),
            "decision": str(rec.get("decision") or ""),
        })
    return rows


def _usage_text(usage: Mapping[str, Any]) -> str:
    from .usage import money

    text = (f"judge tokens: {usage.get('prompt_tokens', 0):,} prompt / {usage.get('completion_tokens', 0):,} "
            f"completion · judge calls: {usage.get('judge_calls', 0)} · cached calls saved: "
            f"{usage.get('cached_calls_saved', 0)}")
    if usage.get("cost_usd") is not None:
        text += f" · cost: {money(usage['cost_usd'])} (cache saved {money(usage.get('cost_saved_usd') or 0.0)})"
    if usage.get("unpriced_judges"):
        text += f" · no price for {', '.join(usage['unpriced_judges'])}"
    return text


def _json_for_script(data: Any) -> str:
    """JSON that is inert inside ``<script type="application/json">``."""
    text = json.dumps(data, ensure_ascii=False, sort_keys=True)
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _clean(value: Any) -> Any:
    """NaN/inf to None, recursively (JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _pct(value: float) -> str:
    return f"{value * 100:.1f}%"


# --------------------------------------------------------------------------- metric cards


def _histogram(metric: str, scores: list[float], thresholds: set[float]) -> str:
    width, height, left, bottom, top = 300, 130, 26, 22, 14
    counts = [0] * BINS
    for score in scores:
        counts[min(BINS - 1, max(0, int(score * BINS + 1e-9)))] += 1
    peak = max(counts) or 1
    plot_w, plot_h = width - left - 6, height - bottom - top
    bar_w = plot_w / BINS
    threshold = min(thresholds) if len(thresholds) == 1 else None
    parts = [f'<svg class="hist" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'data-metric="{_e(metric)}" aria-label="score histogram of {_e(metric)}">']
    parts.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" class="axis"/>')
    for i, count in enumerate(counts):
        low, high = i / BINS, (i + 1) / BINS
        h = plot_h * count / peak
        x = left + i * bar_w
        y = top + plot_h - h
        below = threshold is not None and high <= threshold + 1e-9
        cls = "bar fail" if below else "bar"
        parts.append(f'<rect class="{cls}" x="{x + 1:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" '
                     f'data-count="{count}"><title>{low:.1f}–{high:.1f}: {count} case(s)</title></rect>')
        if count:
            parts.append(f'<text class="count" x="{x + bar_w / 2:.1f}" y="{y - 3:.1f}">{count}</text>')
    for tick in (0.0, 0.5, 1.0):
        x = left + tick * plot_w
        parts.append(f'<text class="tick" x="{x:.1f}" y="{height - 6}">{tick:g}</text>')
    if threshold is not None:
        x = left + threshold * plot_w
        parts.append(f'<line class="threshold" x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{top + plot_h}">'
                     f'<title>threshold {threshold:g}</title></line>')
    parts.append("</svg>")
    return "".join(parts)


def _rate_bar(rate: float, low: float, high: float, width: int = 300, whole: float | None = None) -> str:
    reference = (f'<line class="whole" x1="{whole * width:.1f}" y1="0" x2="{whole * width:.1f}" y2="14">'
                 f'<title>whole run {_pct(whole)}</title></line>' if whole is not None else "")
    return (f'<svg class="rate" width="{width}" height="14" viewBox="0 0 {width} 14" role="img" '
            f'aria-label="pass rate {_pct(rate)}, interval {_pct(low)} to {_pct(high)}">'
            f'<rect class="track" x="0" y="3" width="{width}" height="8" rx="4"/>'
            f'<rect class="fill" x="0" y="3" width="{rate * width:.1f}" height="8" rx="4"/>'
            f'<line class="whisker" x1="{low * width:.1f}" y1="7" x2="{high * width:.1f}" y2="7"/>'
            f'<line class="whisker" x1="{low * width:.1f}" y1="2" x2="{low * width:.1f}" y2="12"/>'
            f'<line class="whisker" x1="{high * width:.1f}" y1="2" x2="{high * width:.1f}" y2="12"/>'
            f"{reference}</svg>")


def _breakdown_section(breakdown: list[GroupRow]) -> str:
    """Per column: a table of every group × metric, and small multiples of the pass rates."""
    from .groups import HEADER, cells

    out = ['<section id="breakdown" class="card wide"><h2>Breakdown</h2>'
           '<p class="muted">A group differs when its 95% interval excludes the whole run\'s value; groups under '
           '5 cases are shown, not tested. The red line in each chart is the whole run.</p>']
    for column in dict.fromkeys(r.column for r in breakdown):
        rows = [r for r in breakdown if r.column == column]
        out.append(f'<h3>by {_e(column)}</h3><table class="groups" data-column="{_e(column)}"><thead><tr>'
                   + "".join(f"<th>{_e(h)}</th>" for h in HEADER) + "</tr></thead><tbody>")
        for row in rows:
            out.append(f'<tr class="{_e(row.direction or "")}">' + "".join(f"<td>{_e(c)}</td>" for c in cells(row))
                       + "</tr>")
        out.append('</tbody></table><div class="multiples">')
        for row in rows:
            g = row.group
            if g.pass_rate is None:
                continue
            low, high = g.pass_rate_interval() or (g.pass_rate, g.pass_rate)
            out.append(f'<figure class="multiple" data-group="{_e(row.value)}" data-metric="{_e(row.metric)}">'
                       f'<figcaption>{_e(row.value)} · {_e(row.metric)}</figcaption>'
                       f"{_rate_bar(g.pass_rate, low, high, width=160, whole=row.whole.pass_rate)}"
                       f'<div class="muted">{_pct(g.pass_rate)} of {g.judged} · {_e(row.verdict)}</div></figure>')
        out.append("</div>")
    out.append("</section>")
    return "".join(out)


def _group_comparisons(comparison: Comparison) -> str:
    if not comparison.groups:
        return ""
    rows = []
    for g in comparison.groups:
        interval = "-" if g.low is None or g.high is None else f"[{g.low:+.3f}, {g.high:+.3f}]"
        p = "-" if g.p_value is None else f"{g.p_value:.4f}"
        holm = "-" if g.p_holm is None else f"{g.p_holm:.4f}"
        diff = "-" if g.diff is None else f"{g.diff:+.3f}"
        rows.append(f'<tr class="{"regressed" if g.regressed else "improved" if g.improved else ""}">'
                    f"<td>{_e(g.column)}</td><td>{_e(g.value)}</td><td>{_e(g.metric)}</td><td>{g.paired}</td>"
                    f"<td>{diff}</td><td>{interval}</td><td>{p}</td><td>{holm}</td><td>{_e(g.status)}</td></tr>")
    return (f'<h3>Per group</h3><p class="muted">{_e(comparison.group_method_text())}</p>'
            '<table class="cmp" id="group-comparison"><thead><tr><th>column</th><th>group</th><th>metric</th>'
            "<th>paired</th><th>diff</th><th>interval</th><th>p</th><th>p (Holm)</th><th>status</th></tr></thead>"
            "<tbody>" + "".join(rows) + "</tbody></table>")


def _metric_card(m: MetricSummary) -> str:
    """One metric's card: every figure is the summary's (``MetricSummary``), none is recomputed."""
    out = [f'<section class="card metric" data-metric="{_e(m.name)}"><h3>{_e(m.name)}</h3>']
    out.append(_histogram(m.name, m.scores, m.thresholds))
    rate, rate_interval = m.pass_rate, m.pass_rate_interval()
    if rate is not None and rate_interval is not None:
        low, high = rate_interval
        out.append(f'<p class="passrate">pass rate <b>{_pct(rate)}</b> ({m.passed} of {m.judged}), '
                   f'95% Wilson interval {_pct(low)}–{_pct(high)}</p>')
        out.append(_rate_bar(rate, low, high))
        mean_interval = m.mean_interval()  # clipped to 0..1, where scores live
        interval = "" if mean_interval is None else f", 95% t interval {mean_interval[0]:.3f}–{mean_interval[1]:.3f}"
        out.append(f'<p class="mean">mean score <b>{m.mean_score or 0.0:.3f}</b>{interval}</p>')
    else:
        out.append('<p class="passrate">no verdicts</p>')
    extra = [f"{m.cases} case(s)"]
    if m.thresholds:
        extra.append("threshold " + "/".join(f"{t:g}" for t in sorted(m.thresholds)))
    extra.append(f'<span class="{"warn" if m.unstable else ""}">{m.unstable} unstable</span>')
    if m.errors:
        extra.append(f'<span class="err">{m.errors} judge error(s)</span>')
    out.append(f'<p class="meta">{" · ".join(extra)}</p></section>')
    return "".join(out)


# --------------------------------------------------------------------------- comparison


def _forest(m: MetricComparison, tolerance: float, span: float) -> str:
    width, height, pad = 260, 26, 10
    if m.low is None or m.high is None or m.diff is None:
        return '<span class="muted">-</span>'

    def x(value: float) -> float:
        return pad + (value + span) / (2 * span) * (width - 2 * pad)

    cls = "regressed" if m.regressed else ("improved" if m.improved else "neutral")
    parts = [f'<svg class="forest {cls}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="difference {m.diff:+.3f}, interval {m.low:+.3f} to {m.high:+.3f}">',
             f'<line class="zero" x1="{x(0):.1f}" y1="2" x2="{x(0):.1f}" y2="{height - 2}"/>']
    if tolerance > 0:
        parts.append(f'<line class="tol" x1="{x(-tolerance):.1f}" y1="2" x2="{x(-tolerance):.1f}" y2="{height - 2}"/>')
    parts.append(f'<line class="ci" x1="{x(m.low):.1f}" y1="13" x2="{x(m.high):.1f}" y2="13"/>')
    parts.append(f'<circle class="pt" cx="{x(m.diff):.1f}" cy="13" r="4"/></svg>')
    return "".join(parts)


def _case_list(label: str, items: list[str], cls: str) -> str:
    if not items:
        return ""
    lis = "".join(f"<li><code>{_e(i)}</code></li>" for i in items)
    return f'<details class="{cls}" open><summary>{_e(label)} ({len(items)})</summary><ul>{lis}</ul></details>'


def _side(case: Any) -> str:
    score = "-" if case.score is None else f"{case.score:.3f}"
    passed = case.passed if case.passed is not None else (
        case.score is not None and case.threshold is not None and case.score >= case.threshold)
    badge = f'<span class="badge {"good" if passed else "bad"}">{score} {"passed" if passed else "failed"}</span>'
    texts = case.texts
    return (f"<td>{badge}{_clip(texts.get('output', ''))}"
            + (f'<div class="muted">reason</div>{_clip(texts["reason"])}' if texts.get("reason") else "") + "</td>")


def _flipped_texts(comparison: Comparison) -> str:
    """Every flipped case with its input, reference, and both runs' answers and reasons side by side."""
    rows = []
    for m in comparison.metrics:
        for flip in m.flipped:
            b, c = flip.baseline, flip.current
            rows.append(f'<tr class="flip" data-metric="{_e(m.metric)}" data-direction="{_e(flip.direction)}">'
                        f'<td class="tid"><code>{_e(flip.label)}</code><div class="muted">{_e(m.metric)} · '
                        f'{_e(flip.direction)}</div></td>'
                        f"<td>{_clip(c.texts.get('input') or b.texts.get('input', ''))}</td>"
                        f"<td>{_clip(c.texts.get('expected') or b.texts.get('expected', ''))}</td>"
                        f"{_side(b)}{_side(c)}</tr>")
    if not rows:
        return ""
    return ('<h3>Flipped cases</h3><table id="flipped"><thead><tr><th>case</th><th>input</th><th>reference</th>'
            '<th>baseline: answer and reason</th><th>current: answer and reason</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table>")


def _comparison_section(comparison: Comparison) -> str:
    spans = [abs(v) for m in comparison.metrics for v in (m.low, m.high, m.diff) if v is not None]
    span = max(spans + [comparison.tolerance, 0.05]) * 1.15
    verdict = ("REGRESSED: " + ", ".join(comparison.regressed_metrics)) if comparison.regressed else "no regression"
    out = ['<section id="comparison" class="card wide">',
           f'<h2>Comparison with baseline <span class="badge {"bad" if comparison.regressed else "good"}">'
           f'{_e(verdict)}</span></h2>',
           f'<p class="muted">baseline <code>{_e(comparison.baseline_source)}</code> '
           f'({comparison.baseline_cases} verdicts) vs <code>{_e(comparison.current_source)}</code> '
           f'({comparison.current_cases} verdicts). {_e(comparison.method_text())}.</p>']
    out.extend(f'<p class="note">{_e(note)}</p>' for note in comparison.notes)
    conf = f"{comparison.confidence:.0%}"
    out.append('<table class="cmp"><thead><tr><th>metric</th><th>paired</th><th>baseline</th><th>current</th>'
               f'<th>diff</th><th>{conf} interval</th><th>difference (0 = no change)</th><th>p (Wilcoxon)</th>'
               '<th>pass→fail</th><th>fail→pass</th><th>added</th><th>missing</th><th>status</th></tr></thead><tbody>')

    def f(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for m in comparison.metrics:
        p = "-" if m.p_value is None else ("&lt;0.0001" if m.p_value < 0.0001 else f"{m.p_value:.4f}")
        cls = "regressed" if m.regressed else ("improved" if m.improved else "")
        out.append(f'<tr class="{cls}" data-metric="{_e(m.metric)}"><td>{_e(m.metric)}</td><td>{m.paired}</td>'
                   f'<td>{f(m.baseline_mean, ".3f")}</td><td>{f(m.current_mean, ".3f")}</td>'
                   f'<td class="diff">{f(m.diff, "+.3f")}</td><td class="interval">{_e(m.interval_text())}</td>'
                   f'<td>{_forest(m, comparison.tolerance, span)}</td><td>{p}</td>'
                   f'<td>{len(m.pass_to_fail)}</td><td>{len(m.fail_to_pass)}</td><td>{len(m.added)}</td>'
                   f'<td>{len(m.missing)}</td><td class="status">{_e(m.status)}</td></tr>')
    out.append("</tbody></table>")
    for m in comparison.metrics:
        lists = "".join([_case_list("pass → fail", m.pass_to_fail, "p2f"),
                         _case_list("fail → pass", m.fail_to_pass, "f2p"),
                         _case_list("added", m.added, "added"), _case_list("missing", m.missing, "missing"),
                         _case_list("judge error", m.errored, "errored")])
        if lists:
            out.append(f'<div class="flips" data-metric="{_e(m.metric)}"><h4>{_e(m.metric)}</h4>{lists}</div>')
    out.append(_group_comparisons(comparison))
    out.append(_flipped_texts(comparison))
    out.append("</section>")
    return "".join(out)


# --------------------------------------------------------------------------- cases table


COLUMNS = [  # key, header, sort type
    ("test_id", "test id", "text"), ("metric", "metric", "text"), ("score", "score", "num"),
    ("samples", "samples", "num"), ("passed", "passed", "text"), ("unstable", "unstable", "text"),
    ("input", "input", "text"), ("output", "output", "text"), ("expected", "reference", "text"),
    ("reason", "judge's reason", "text"),
]


def _clip(text: str) -> str:
    if len(text) > CELL_CHARS:
        text = text[:CELL_CHARS] + f"… ({len(text) - CELL_CHARS} more characters)"
    return f'<div class="clip">{_e(text)}</div>' if text else '<span class="muted">—</span>'


def _case_row(index: int, row: dict[str, Any]) -> str:
    status = "error" if row["error"] else ("true" if row["passed"] else "false")
    score = row["score"]
    samples = row["samples"]
    spread = max(samples) - min(samples) if samples else -1.0
    cells = [
        f'<td class="tid"><code>{_e(row["test_id"])}</code></td>',
        f'<td>{_e(row["metric"])}</td>',
        (f'<td class="num" data-sort="{score:.6f}">{score:.3f}'
         + (f'<div class="muted">≥ {row["threshold"]:g}</div>' if row["threshold"] is not None else "") + "</td>"
         if score is not None else '<td class="num" data-sort="-1"><span class="badge err">error</span></td>'),
        f'<td class="samples" data-sort="{spread:.6f}">{_e(" ".join(f"{s:.2f}" for s in samples)) or "—"}</td>',
        f'<td data-sort="{status}">'
        f'<span class="badge {"good" if status == "true" else "bad" if status == "false" else "err"}">'
        f'{"passed" if status == "true" else "failed" if status == "false" else "error"}</span>'
        + (' <span class="badge soft">soft</span>' if row["soft"] else "")
        + (f'<div class="muted">{_e(row["decision"])}</div>' if row["decision"] else "") + "</td>",
        f'<td data-sort="{int(row["unstable"])}">'
        + ('<span class="badge warn">unstable</span>' if row["unstable"] else "") + "</td>",
        f'<td>{_clip(row["input"])}</td>',
        f'<td>{_clip(row["output"])}</td>',
        f'<td>{_clip(row["expected"])}</td>',
        f'<td>{_clip(row["error"] or row["reason"])}</td>',
    ]
    return (f'<tr data-index="{index}" data-metric="{_e(row["metric"])}" data-passed="{status}" '
            f'data-unstable="{str(row["unstable"]).lower()}">' + "".join(cells) + "</tr>")


CSS = """
:root{--fg:#1f2328;--muted:#656d76;--line:#d0d7de;--bg:#f6f8fa;--good:#1a7f37;--bad:#cf222e;--warn:#9a6700;--acc:#0969da}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 -apple-system,BlinkMacSystemFont,"Segoe UI",Helvetica,Arial,sans-serif;
  color:var(--fg);background:#fff}
header{padding:18px 24px;border-bottom:1px solid var(--line);background:var(--bg)}
header h1{margin:0 0 4px;font-size:22px}
main{padding:16px 24px}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.muted{color:var(--muted);font-size:12px}
.cards{display:flex;flex-wrap:wrap;gap:16px}
.card{border:1px solid var(--line);border-radius:8px;padding:12px 16px;background:#fff}
.card h3{margin:0 0 6px;font-size:16px}
.wide{margin:16px 0}
.metric p{margin:6px 0}
.hist .bar{fill:#54aeff}.hist .bar.fail{fill:#ff8182}
.hist .axis{stroke:var(--muted)}.hist .threshold{stroke:var(--bad);stroke-width:2;stroke-dasharray:4 3}
.hist text{font-size:10px;fill:var(--muted);text-anchor:middle}
.multiples{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0 16px}
.multiple{margin:0;padding:6px 8px;border:1px solid var(--line);border-radius:6px;width:180px}
.multiple figcaption{font-size:12px;font-weight:600;overflow-wrap:anywhere}
.rate .whole{stroke:var(--bad);stroke-width:2}
table.groups tr.higher td{background:#dafbe1}table.groups tr.lower td{background:#ffebe9}
.rate .track{fill:#eaeef2}.rate .fill{fill:var(--good)}.rate .whisker{stroke:#000;stroke-width:1.5}
.badge{display:inline-block;padding:0 7px;border-radius:10px;font-size:12px;font-weight:600;
  border:1px solid transparent}
.badge.good{color:var(--good);border-color:var(--good)}.badge.bad{color:var(--bad);border-color:var(--bad)}
.badge.err{color:#fff;background:var(--warn)}.badge.warn{color:var(--warn);border-color:var(--warn)}
.badge.soft{color:var(--muted);border-color:var(--line)}
.warn{color:var(--warn);font-weight:600}.err{color:var(--warn)}
.note{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:6px 10px}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid var(--line);padding:6px 8px;text-align:left;vertical-align:top}
th{background:var(--bg);position:sticky;top:0;z-index:1;white-space:nowrap}
table.cmp td.interval,table.cmp td.diff{white-space:nowrap;font-variant-numeric:tabular-nums}
table.cmp tr.regressed td{background:#ffebe9}table.cmp tr.improved td{background:#dafbe1}
.forest .zero{stroke:var(--muted);stroke-dasharray:3 2}.forest .tol{stroke:var(--bad);stroke-dasharray:2 2}
.forest .ci{stroke:var(--acc);stroke-width:3}.forest .pt{fill:var(--acc)}
.forest.regressed .ci{stroke:var(--bad)}.forest.regressed .pt{fill:var(--bad)}
.forest.improved .ci{stroke:var(--good)}.forest.improved .pt{fill:var(--good)}
.flips{display:inline-block;vertical-align:top;margin:8px 24px 0 0}.flips h4{margin:4px 0}
.flips ul{margin:4px 0;padding-left:20px;max-height:12em;overflow:auto}
.controls{display:flex;flex-wrap:wrap;gap:14px;align-items:center;margin:8px 0 10px}
.controls input[type=search]{width:280px;padding:5px 8px;border:1px solid var(--line);border-radius:6px}
#cases th.sortable{cursor:pointer;user-select:none}
#cases th.sortable::after{content:" \\2195";color:var(--muted)}
#cases th[aria-sort=ascending]::after{content:" \\25B2";color:var(--fg)}
#cases th[aria-sort=descending]::after{content:" \\25BC";color:var(--fg)}
#cases td.num,#cases td.samples{white-space:nowrap;font-variant-numeric:tabular-nums}
#cases td.tid{min-width:200px;max-width:300px;overflow-wrap:anywhere}
#cases tr[data-passed=false] td:first-child{box-shadow:inset 3px 0 var(--bad)}
#cases tr[data-passed=error] td:first-child{box-shadow:inset 3px 0 var(--warn)}
.clip{max-height:9em;overflow:auto;white-space:pre-wrap;word-break:break-word;max-width:340px}
#empty{padding:12px;color:var(--muted)}
dl.settings{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:6px 0 0;font-size:12px}
dl.settings dt{color:var(--muted)}dl.settings dd{margin:0}
"""

JS = r"""
(function () {
  "use strict";
  var table = document.getElementById("cases");
  var tbody = table.tBodies[0];
  var rows = Array.prototype.slice.call(tbody.rows);
  var filter = document.getElementById("filter");
  var metric = document.getElementById("metric");
  var failures = document.getElementById("failures");
  var unstable = document.getElementById("unstable-only");
  var count = document.getElementById("count");
  var empty = document.getElementById("empty");
  var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var state = {sort: "", dir: "asc"};
  var data = JSON.parse(document.getElementById("llmjudge-data").textContent);

  function cellValue(row, index, type) {
    var cell = row.cells[index];
    var raw = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent;
    if (type === "num") { var n = parseFloat(raw); return isNaN(n) ? -Infinity : n; }
    return raw.trim().toLowerCase();
  }

  function sortRows() {
    headers.forEach(function (th) { th.removeAttribute("aria-sort"); });
    var index = -1, type = "text";
    headers.forEach(function (th, i) {
      if (th.getAttribute("data-key") === state.sort) { index = i; type = th.getAttribute("data-type"); }
    });
    var ordered = rows.slice();
    if (index >= 0) {
      var sign = state.dir === "desc" ? -1 : 1;
      headers[index].setAttribute("aria-sort", state.dir === "desc" ? "descending" : "ascending");
      ordered.sort(function (a, b) {
        var x = cellValue(a, index, type), y = cellValue(b, index, type);
        if (x < y) return -sign;
        if (x > y) return sign;
        return a.getAttribute("data-index") - b.getAttribute("data-index");
      });
    }
    ordered.forEach(function (row) { tbody.appendChild(row); });
  }

  function applyFilters() {
    var text = filter.value.trim().toLowerCase();
    var shown = 0;
    rows.forEach(function (row) {
      var visible = (!text || row.textContent.toLowerCase().indexOf(text) >= 0)
        && (!metric.value || row.getAttribute("data-metric") === metric.value)
        && (!failures.checked || row.getAttribute("data-passed") !== "true")
        && (!unstable.checked || row.getAttribute("data-unstable") === "true");
      row.hidden = !visible;
      if (visible) shown += 1;
    });
    count.textContent = "Showing " + shown + " of " + rows.length + " cases";
    table.setAttribute("data-shown", String(shown));
    empty.hidden = shown > 0;
  }

  function writeHash() {
    var parts = [];
    if (filter.value) parts.push("filter=" + encodeURIComponent(filter.value));
    if (metric.value) parts.push("metric=" + encodeURIComponent(metric.value));
    if (failures.checked) parts.push("failures=1");
    if (unstable.checked) parts.push("unstable=1");
    if (state.sort) parts.push("sort=" + encodeURIComponent(state.sort) + "&dir=" + state.dir);
    var hash = parts.length ? "#" + parts.join("&") : " ";
    try {
      history.replaceState(null, "", hash === " " ? location.pathname + location.search : hash);
    } catch (e) { /* file: URLs in some browsers */ }
  }

  function readHash() {
    var params = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (part) {
      if (!part) return;
      var eq = part.indexOf("=");
      var key = eq < 0 ? part : part.slice(0, eq);
      try {
        params[key] = eq < 0 ? "" : decodeURIComponent(part.slice(eq + 1).replace(/\+/g, " "));
      } catch (e) { params[key] = ""; }
    });
    filter.value = params.filter || "";
    metric.value = "";
    Array.prototype.forEach.call(metric.options, function (o) {
      if (o.value === params.metric) metric.value = o.value;
    });
    failures.checked = params.failures === "1";
    unstable.checked = params.unstable === "1";
    state.sort = params.sort || "";
    state.dir = params.dir === "desc" ? "desc" : "asc";
  }

  function update() { applyFilters(); writeHash(); }

  headers.forEach(function (th) {
    if (!th.getAttribute("data-key")) return;
    th.classList.add("sortable");
    th.tabIndex = 0;
    function activate() {
      var key = th.getAttribute("data-key");
      state.dir = state.sort === key && state.dir === "asc" ? "desc" : "asc";
      state.sort = key;
      sortRows();
      update();
    }
    th.addEventListener("click", activate);
    th.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); activate(); }
    });
  });
  filter.addEventListener("input", update);
  metric.addEventListener("change", update);
  failures.addEventListener("change", update);
  unstable.addEventListener("change", update);
  window.addEventListener("hashchange", function () { readHash(); sortRows(); applyFilters(); });

  readHash();
  sortRows();
  applyFilters();
  document.body.setAttribute("data-records", String(data.records.length));
  document.body.setAttribute("data-ready", "1");
})();
"""


_SCRIPT_HASH = "sha256-" + base64.b64encode(hashlib.sha256(JS.encode("utf-8")).digest()).decode("ascii")


def render_html(
    source: RunSummary | Iterable[tuple[str, Mapping[str, Any]] | Mapping[str, Any]],
    *,
    comparison: Comparison | None = None,
    title: str = "LLM judge report",
    settings: Mapping[str, Any] | None = None,
    generated: datetime | None = None,
    usage: Mapping[str, Any] | None = None,
    breakdown: list[GroupRow] | None = None,
) -> str:
    """One self-contained HTML page for the run.

    ``source`` is the run's :class:`~pytest_llmjudge.report.collect.RunSummary` (its comparison,
    settings, usage and group breakdown are used unless given), or verdict records:
    ``(test_id, record)`` pairs or results-file rows, summarised the same way. A record may
    carry ``input``, ``output``, ``expected``, ``unstable`` and ``decision``. ``usage`` is
    :meth:`RunUsage.as_dict <pytest_llmjudge.report.usage.RunUsage.as_dict>`.
    """
    if isinstance(source, RunSummary):
        summary = source
        rows = _normalize(summary.records)
        comparison = summary.comparison if comparison is None else comparison
        settings = summary.settings if settings is None else settings
        usage = summary.usage.as_dict(summary.prices) if usage is None else usage
        if breakdown is None and summary.groups:
            from .groups import group_rows

            breakdown = group_rows(summary)
    else:
        rows = _normalize(source)
        summary = RunSummary.from_records((row["test_id"], row) for row in rows)
    metrics = sorted({r["metric"] for r in rows})
    when = (generated or datetime.now(timezone.utc)).isoformat(timespec="seconds")
    passed = sum(m.passed for m in summary.metrics.values())
    failed = sum(m.failed for m in summary.metrics.values())
    errors = sum(m.errors for m in summary.metrics.values())
    judges = sorted({r["judge"] for r in rows if r["judge"]})
    data = _clean({"title": title, "generated": when, "settings": dict(settings or {}), "records": rows,
                   "comparison": comparison.to_json() if comparison is not None else None,
                   "usage": dict(usage or {})})

    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           # nothing may be fetched, and only the report's own script (by its hash) may run
           "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
           f"style-src 'unsafe-inline'; script-src '{_SCRIPT_HASH}'; img-src data:\">",
           f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"]
    headline = (f"{len(rows)} verdict(s) · {passed} passed · {failed} failed · "
                f"{errors} judge error(s) · {summary.unstable} unstable")
    out.append(f'<header><h1>{_e(title)}</h1><div id="summary">{_e(headline)}</div>'
               f'<div class="muted">judge: {_e(", ".join(judges) or "-")} · generated {_e(when)}</div>')
    if usage:
        out.append(f'<div id="usage" class="muted">{_e(_usage_text(usage))}</div>')
    if settings:
        items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False))}</dd>"
                        for k, v in sorted(settings.items()) if v not in (None, "", {}, []))
        out.append(f'<details><summary class="muted">settings</summary><dl class="settings">{items}</dl></details>')
    out.append("</header><main>")
    if comparison is not None:
        out.append(_comparison_section(comparison))
    out.append('<h2>Metrics</h2><div class="cards" id="metrics">')
    out.extend(_metric_card(summary.metrics.get(m) or MetricSummary(m)) for m in metrics)
    out.append("</div>")
    if breakdown:
        out.append(_breakdown_section(breakdown))
    options = "".join(f'<option value="{_e(m)}">{_e(m)}</option>' for m in metrics)
    out.append('<h2>Cases</h2><div class="controls">'
               '<input type="search" id="filter" placeholder="Filter: test id, answer, reason…"'
               ' aria-label="filter cases">'
               f'<label>metric <select id="metric"><option value="">all metrics</option>{options}</select></label>'
               '<label><input type="checkbox" id="failures"> failures only</label>'
               '<label><input type="checkbox" id="unstable-only"> unstable only</label>'
               f'<span id="count" class="muted">{len(rows)} cases</span></div>')
    heads = "".join(f'<th data-key="{key}" data-type="{kind}" scope="col">{_e(label)}</th>'
                    for key, label, kind in COLUMNS)
    body = "".join(_case_row(i, r) for i, r in enumerate(rows))
    out.append(f'<table id="cases"><thead><tr>{heads}</tr></thead><tbody>{body}</tbody></table>'
               '<div id="empty" hidden>No case matches the filters.</div>')
    out.append("</main>")
    out.append(f'<script type="application/json" id="llmjudge-data">{_json_for_script(data)}</script>')
    out.append(f"<script>{JS}</script></body></html>")
    return "\n".join(out) + "\n"
