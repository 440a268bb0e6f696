"""``llmjudge calibrate``: how well does a judge agree with human labels?"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import re
import statistics
import sys
from pathlib import Path
from typing import Any

from ..analysis import agreement, stats
from ..datasets import content_text
from ..errors import ConfigError
from ..judging.evaluation import evaluate
from ..metrics import AnyMetric, CheckMetric, Metric, MetricInputs, get_metric
from . import CLIError
from .common import (
    build_cache,
    build_judge,
    close_quietly,
)
from .io import ERROR_COLUMN, Row, Table, Unit, cell, check_output_path, plan_resume, read_table, table_format
from .runner import run_units

OUTPUT_CANDIDATES = ("actual_output", "output", "answer", "response")
REPORT_FORMATS = (".json", ".md", ".markdown")
ROW_COLUMNS = ["id", "row", "label", "label_normalized", "score", "raw_score", "argmax_score",
               "passed", "reason", "judge", "cached", ERROR_COLUMN]
GATE_KAPPA = 0.6
GATE_ACCURACY = 0.8


# --------------------------------------------------------------------------- inputs


def load_metric(name: str) -> AnyMetric:
    """A built-in metric by name, or ``module:attribute`` naming a Metric object."""
    try:
        return get_metric(name)
    except ConfigError as exc:
        if ":" not in name:
            raise CLIError(str(exc)) from None
    module_name, _, attribute = name.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
        metric = getattr(module, attribute)
    except Exception as exc:  # noqa: BLE001 - any import problem is a usage error here
        raise CLIError(f"--metric {name}: cannot load it: {type(exc).__name__}: {exc}") from None
    if not isinstance(metric, (Metric, CheckMetric)):
        raise CLIError(f"--metric {name}: {type(metric).__name__} is not a Metric")
    return metric


def parse_label(value: Any, where: str, column: str) -> float | bool | None:
    """A label as a number, a pass/fail boolean, or None when the row has none."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        if math.isnan(value) or math.isinf(value):
            raise CLIError(f"{where}: label {value!r} in column {column!r} is not a finite number")
        return float(value)
    text = str(value).strip()
    if not text:
        return None
    word = agreement.pass_fail_word(text)
    if word is not None:
        return word
    try:
        number = float(text)
    except ValueError:
        raise CLIError(
            f"{where}: label {text[:40]!r} in column {column!r} is not a number "
            "(or pass/fail, true/false, yes/no)"
        ) from None
    if math.isnan(number) or math.isinf(number):
        raise CLIError(f"{where}: label {text!r} in column {column!r} is not a finite number")
    return number


def metric_scale(metric: AnyMetric) -> tuple[float, float]:
    low, high = getattr(metric, "scale", (0.0, 1.0))
    return float(low), float(high)


_RANGE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:-|:|\.\.|to)\s*(-?\d+(?:\.\d+)?)\s*$")


def resolve_label_scale(
    option: str, labels: list[float | bool], scale: tuple[float, float]
) -> tuple[float, float, str]:
    """(low, high, how it was chosen) of the labels' scale."""
    low, high = scale
    shown = f"{low:g}-{high:g}"
    choice = option.strip().lower()
    if choice == "raw":
        return low, high, f"raw {shown} (the rubric's scale, --label-scale raw)"
    if choice in ("normalized", "normalised", "unit"):
        return 0.0, 1.0, "normalized 0-1 (--label-scale normalized)"
    if choice == "auto":
        numbers = [float(v) for v in labels if not isinstance(v, bool)]
        if (low, high) == (0.0, 1.0):
            return 0.0, 1.0, "0-1 (the metric's own scale)"
        if numbers and max(numbers) > 1.0:
            return low, high, f"raw {shown} (detected: labels above 1)"
        note = ""
        if numbers and all(v in (0.0, 1.0) for v in numbers):
            note = "; every label is 0 or 1: pass --label-scale raw if they are rubric points"
        return 0.0, 1.0, f"normalized 0-1 (detected: no label above 1{note})"
    match = _RANGE.match(option)
    if match:
        a, b = float(match.group(1)), float(match.group(2))
        if b > a:
            return a, b, f"{a:g}-{b:g} (--label-scale), mapped onto the rubric"
    raise CLIError(f"--label-scale {option!r}: use auto, raw, normalized or LOW-HIGH such as 1-5")


def _answer_column(table: Table, requested: str | None) -> str:
    if requested:
        if not table.has_column(requested):
            columns = ", ".join(table.columns)
            raise CLIError(f"{table.shown}: --output-column {requested!r} not found; columns: {columns}")
        return requested
    for name in OUTPUT_CANDIDATES:
        if table.has_column(name):
            return name
    raise CLIError(
        f"{table.shown}: no answer column to judge: none of {', '.join(OUTPUT_CANDIDATES)} is present "
        f"(columns: {', '.join(table.columns)}); name it with --output-column"
    )


def _as_text(value: Any) -> str | None:
    """A column's value as text: a string, a list of strings or chat content parts (joined by
    newlines), else its cell form."""
    try:
        return content_text(value)
    except TypeError:
        return cell(value)


_NEEDS = {
    "input": "a question (an 'input' or 'prompt' column, or chat messages)",
    "expected": "a reference answer (an 'expected_output' or 'completion' column)",
    "context": "context (the --context-column column)",
    "criteria": "criteria (--criteria TEXT or a 'criteria' column)",
    "output": "an answer",
}


def metric_inputs(row: Row, table: Table, metric: AnyMetric, answer_column: str,
                  context_column: str, criteria: str | None) -> MetricInputs:
    answer = row.get(answer_column)
    if answer is None:
        raise CLIError(f"{table.where(row)}: the answer column {answer_column!r} is missing in this row")
    inputs = MetricInputs(
        output=_as_text(answer) or "",
        input=_as_text(row.get("input")),
        expected=_as_text(row.get("expected_output")),
        context=_as_text(row.get(context_column)),
        criteria=criteria if criteria is not None else _as_text(row.get("criteria")),
    )
    for name in getattr(metric, "requires", ()):
        if not getattr(inputs, name, None):
            needs = _NEEDS.get(name, name)
            raise CLIError(f"{table.where(row)}: metric {metric.name!r} needs {needs}; this row has none")
    return inputs


# --------------------------------------------------------------------------- report


def _num(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def categories_for(scale: tuple[float, float]) -> list[str]:
    """The kappa/confusion categories: rubric points, or 5 levels for a 0-1 scale."""
    low, high = scale
    span = high - low
    if float(low).is_integer() and float(high).is_integer() and 2 <= span <= 20:
        return [f"{low + i:g}" for i in range(int(span) + 1)]
    return ["0", "0.25", "0.5", "0.75", "1"]


def build_report(*, table: Table, units: list[Unit], results: list[tuple[Unit, dict[str, Any], bool]],
                 metric: AnyMetric, judge_name: str, threshold: float, label_column: str,
                 label_scale: tuple[float, float, str], unlabelled: int, top: int,
                 answer_column: str) -> dict[str, Any]:
    scale = metric_scale(metric)
    cats = categories_for(scale)
    k = len(cats)
    judged = []
    errors = []
    cached = 0
    for unit, row, ok in results:
        if ok and not cell(row.get(ERROR_COLUMN)).strip():
            label, score = _num(row.get("label_normalized")), _num(row.get("score"))
            if label is None or score is None:
                errors.append((unit, "the verdict row has no score"))
                continue
            # categories: the judge's own rubric answer (its argmax when the score is weighted)
            rubric = _num(row.get("argmax_score"))
            judged.append((unit, row, label, score, score if rubric is None else rubric))
            cached += cell(row.get("cached")).lower() == "true"
        else:
            errors.append((unit, cell(row.get(ERROR_COLUMN))))
    human = [item[2] for item in judged]
    judge = [item[3] for item in judged]
    hcat = [agreement.category(h, k) for h in human]
    jcat = [agreement.category(item[4], k) for item in judged]
    kappa = stats.quadratic_kappa(hcat, jcat, k) if judged else None
    pass_fail = agreement.binary_agreement([h >= threshold for h in human], [s >= threshold for s in judge])
    diffs = [s - h for h, s in zip(human, judge)]

    def excerpt(text: Any, limit: int = 160) -> str:
        value = " ".join(cell(text).split())
        return value if len(value) <= limit else value[: limit - 1] + "…"

    ranked = sorted(
        (item for item in judged if abs(item[3] - item[2]) > 1e-9),
        key=lambda item: (-abs(item[3] - item[2]), item[0].index),
    )
    low, high = scale
    disagreements = [
        {
            "id": unit.row.id, "row": unit.row.index, "line": unit.row.line,
            "label": row.get("label"), "label_normalized": _round(h),
            "human_on_rubric": _round(low + h * (high - low), 3),
            "judge_score": _round(s), "judge_raw_score": _round(_num(row.get("raw_score")), 3),
            "difference": _round(s - h), "reason": cell(row.get("reason")),
            "input": excerpt(unit.row.get("input")), "answer": excerpt(unit.row.get(answer_column)),
        }
        for unit, row, h, s, _ in ranked[:top]
    ]
    accuracy = pass_fail["accuracy"]
    if kappa is None or accuracy is None:
        advice = "undefined: too few judged rows, or every label and score in one category"
        gate = False
    elif kappa >= GATE_KAPPA and accuracy >= GATE_ACCURACY:
        advice = (f"good enough to gate on: kappa {kappa:.2f} >= {GATE_KAPPA} and accuracy "
                  f"{accuracy:.2f} >= {GATE_ACCURACY} (rule of thumb)")
        gate = True
    else:
        advice = (f"not good enough to gate on yet: want kappa >= {GATE_KAPPA} and accuracy >= "
                  f"{GATE_ACCURACY} (rule of thumb); read the disagreements, then refine the "
                  "rubric or the labels, or use a stronger judge")
        gate = False
    return {
        "dataset": table.shown,
        "judge": judge_name,
        "metric": metric.name,
        "metric_scale": [low, high],
        "threshold": threshold,
        "label_column": label_column,
        "label_scale": {"low": label_scale[0], "high": label_scale[1], "how": label_scale[2]},
        "answer_column": answer_column,
        "rows": len(table.rows),
        "labelled": len(units),
        "unlabelled": unlabelled,
        "judged": len(judged),
        "errors": len(errors),
        "cached": cached,
        "spearman": _round(stats.spearman(human, judge)) if len(judged) >= 2 else None,
        "pearson": _round(stats.pearson(human, judge)) if len(judged) >= 2 else None,
        "kappa_quadratic": _round(kappa),
        "kappa_interpretation": agreement.interpret_kappa(kappa),
        "accuracy_at_threshold": _round(accuracy),
        "pass_fail": {key: (_round(v) if isinstance(v, float) else v) for key, v in pass_fail.items()},
        "mean_abs_difference": _round(_mean([abs(d) for d in diffs])),
        "mean_bias": _round(_mean(diffs)),
        "confusion_matrix": {
            "rows": "human", "columns": "judge", "categories": cats,
            "counts": stats.confusion_matrix(hcat, jcat, k),
        },
        "gate_ready": gate,
        "advice": advice,
        "disagreements": disagreements,
        "failed_rows": [{"id": u.row.id, "row": u.row.index, "line": u.row.line, "error": e} for u, e in errors],
    }


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def render_summary(report: dict[str, Any], *, limit: int = 5) -> str:
    pf = report["pass_fail"]
    lines = [
        f"calibrate: judge {report['judge']}, metric {report['metric']}, {report['dataset']}",
        f"  rows: {report['labelled']} labelled ({report['judged']} judged, {report['errors']} failed"
        f"{', ' + str(report['cached']) + ' from the cache' if report['cached'] else ''}), "
        f"{report['unlabelled']} without a label",
        f"  labels: {report['label_scale']['how']}",
        f"  Spearman rho          {_fmt(report['spearman'])}",
        f"  quadratic kappa       {_fmt(report['kappa_quadratic'])}  ({report['kappa_interpretation']})",
        f"  accuracy at {report['threshold']:<9g} {_fmt(report['accuracy_at_threshold'])}  "
        f"(judge passed {_count(pf['judge_pass_human_fail'], 'bad answer')}, "
        f"failed {_count(pf['judge_fail_human_pass'], 'good one')})",
        f"  mean |judge - human|  {_fmt(report['mean_abs_difference'])}  (bias {_fmt(report['mean_bias'], 3)})",
        f"  verdict: {report['advice']}",
    ]
    if report["disagreements"]:
        lines.append("  largest disagreements:")
        for d in report["disagreements"][:limit]:
            lines.append(
                f"    row {d['row']} ({d['id']}): human {_fmt(d['label_normalized'], 2)}, judge "
                f"{_fmt(d['judge_score'], 2)}: {d['reason'][:100]}"
            )
    return "\n".join(lines)


def _md(text: Any) -> str:
    return cell(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(report: dict[str, Any]) -> str:
    pf = report["pass_fail"]
    cm = report["confusion_matrix"]
    out = [
        f"# Judge calibration: {report['judge']} on {report['metric']}",
        "",
        f"Dataset `{report['dataset']}`, labels in `{report['label_column']}` "
        f"({report['label_scale']['how']}), answers in `{report['answer_column']}`, "
        f"threshold {report['threshold']:g}.",
        "",
        f"**Verdict:** {report['advice']}.",
        "",
        "| statistic | value |",
        "|---|---|",
        f"| labelled rows | {report['labelled']} |",
        f"| judged | {report['judged']} |",
        f"| failed (judge errors) | {report['errors']} |",
        f"| without a label (skipped) | {report['unlabelled']} |",
        f"| Spearman rho | {_fmt(report['spearman'])} |",
        f"| Pearson r | {_fmt(report['pearson'])} |",
        f"| Cohen's kappa (quadratic) | {_fmt(report['kappa_quadratic'])} ({report['kappa_interpretation']}) |",
        f"| accuracy at threshold | {_fmt(report['accuracy_at_threshold'])} |",
        f"| bad answers the judge passed | {pf['judge_pass_human_fail']} |",
        f"| good answers the judge failed | {pf['judge_fail_human_pass']} |",
        f"| precision / recall at catching failures | {_fmt(pf['fail_precision'])} / {_fmt(pf['fail_recall'])} |",
        f"| mean abs. difference (0-1) | {_fmt(report['mean_abs_difference'])} |",
        f"| mean bias, judge - human (0-1) | {_fmt(report['mean_bias'])} |",
        "",
        "## Confusion matrix",
        "",
        "Rows: human label; columns: judge score (categories of the rubric scale).",
        "",
        "| human \\ judge | " + " | ".join(cm["categories"]) + " |",
        "|---|" + "---|" * len(cm["categories"]),
    ]
    for name, counts in zip(cm["categories"], cm["counts"]):
        out.append(f"| **{name}** | " + " | ".join(str(c) for c in counts) + " |")
    out += ["", "## Largest disagreements", ""]
    if report["disagreements"]:
        out += ["| row | id | human (0-1) | judge (0-1) | judge's reason | input | answer |",
                "|---|---|---|---|---|---|---|"]
        for d in report["disagreements"]:
            out.append(
                f"| {d['row']} | {_md(d['id'])} | {_fmt(d['label_normalized'], 2)} | {_fmt(d['judge_score'], 2)} "
                f"| {_md(d['reason'])} | {_md(d['input'])} | {_md(d['answer'])} |"
            )
    else:
        out.append("None: the judge agrees with every label.")
    if report["failed_rows"]:
        out += ["", "## Rows the judge could not grade", ""]
        out += [f"- row {f['row']} ({_md(f['id'])}): {_md(f['error'])}" for f in report["failed_rows"]]
    return "\n".join(out) + "\n"


def write_report(path: str, report: dict[str, Any]) -> None:
    target = Path(path)
    if target.parent and not target.parent.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
    if target.suffix.lower() == ".json":
        text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    else:
        text = render_markdown(report)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)


# --------------------------------------------------------------------------- run


def run(args: argparse.Namespace) -> int:
    table_format(args.output, what="report", allowed=REPORT_FORMATS)
    check_output_path(args.output, [args.input], guard=False)
    if args.rows:
        table_format(args.rows, what="--rows")
        check_output_path(args.rows, [args.input], resume=args.resume, force=args.force)
    metric = load_metric(args.metric)
    table = read_table(args.input, id_column=args.id_column)
    if not table.has_column(args.label_column):
        columns = ", ".join(table.columns)
        raise CLIError(f"{table.shown}: --label-column {args.label_column!r} not found; columns: {columns}")
    answer_column = _answer_column(table, args.output_column)
    scale = metric_scale(metric)

    labelled: list[tuple[Row, float | bool, Any]] = []
    unlabelled = 0
    for row in table.rows:
        raw = row.data.get(args.label_column, row.case.get(args.label_column))
        value = parse_label(raw, table.where(row), args.label_column)
        if value is None:
            unlabelled += 1
        else:
            labelled.append((row, value, raw))
    if not labelled:
        raise CLIError(f"{table.shown}: no row has a label in column {args.label_column!r}")
    label_low, label_high, how = resolve_label_scale(args.label_scale, [v for _, v, _ in labelled], scale)

    units: list[Unit] = []
    for row, value, raw in labelled:
        if isinstance(value, bool):
            normalized = 1.0 if value else 0.0
        else:
            if value < label_low - 1e-9 or value > label_high + 1e-9:
                raise CLIError(
                    f"{table.where(row)}: label {cell(raw)!r} in column {args.label_column!r} is outside "
                    f"the label scale {label_low:g}-{label_high:g} ({how}); fix it or set --label-scale"
                )
            normalized = (value - label_low) / (label_high - label_low)
        inputs = metric_inputs(row, table, metric, answer_column, args.context_column, args.criteria)
        units.append(Unit(index=len(units), row=row, expect={"id": row.id, "label": raw},
                          payload=(inputs, raw, min(1.0, max(0.0, normalized)))))

    plan = None
    if args.rows and args.resume and Path(args.rows).exists():
        plan = plan_resume(args.rows, units)

    judge = build_judge(args)
    cache = build_cache(args)

    def base(unit: Unit) -> dict[str, Any]:
        _, raw, normalized = unit.payload
        return {"id": unit.row.id, "row": unit.row.index, "label": raw,
                "label_normalized": round(normalized, 6), "judge": judge.name}

    def work(unit: Unit) -> tuple[dict[str, Any], bool]:
        inputs = unit.payload[0]
        verdict = evaluate(metric, inputs, judge, threshold=args.threshold, cache=cache)
        out = base(unit)
        out.update(score=round(verdict.score, 6), raw_score=verdict.raw_score,
                   argmax_score=verdict.argmax_score, passed=verdict.passed,
                   reason=verdict.reason, cached=verdict.cached)
        out[ERROR_COLUMN] = ""
        return out, verdict.cached

    def failed_row(unit: Unit, message: str) -> dict[str, Any]:
        out = base(unit)
        out[ERROR_COLUMN] = message
        return out

    results: list[tuple[Unit, dict[str, Any], bool]] = []
    try:
        result = run_units(
            units, work, failed_row, out=args.rows, columns=ROW_COLUMNS, plan=plan,
            concurrency=args.concurrency, label="calibrate", quiet=args.quiet,
            on_row=lambda unit, row, ok: results.append((unit, dict(row), ok)),
        )
    finally:
        close_quietly(cache, judge)
    if result.interrupted:
        print("llmjudge: calibrate interrupted; no report written (verdicts so far are cached: "
              "rerun to continue for free)", file=sys.stderr)
        return 130
    report = build_report(
        table=table, units=units, results=results, metric=metric, judge_name=judge.name,
        threshold=args.threshold, label_column=args.label_column,
        label_scale=(label_low, label_high, how), unlabelled=unlabelled, top=args.top,
        answer_column=answer_column,
    )
    write_report(args.output, report)
    print(render_summary(report))
    print(f"report written to {args.output}" + (f"; rows to {args.rows}" if args.rows else ""))
    if report["judged"] == 0:
        print("llmjudge: error: no row could be judged; see the failed rows in the report", file=sys.stderr)
        return 1
    if args.min_kappa is not None:
        kappa = report["kappa_quadratic"]
        if kappa is None or kappa < args.min_kappa:
            print(f"llmjudge: quadratic kappa {_fmt(kappa)} is below --min-kappa {args.min_kappa:g}", file=sys.stderr)
            return 1
    return 1 if report["errors"] else 0
