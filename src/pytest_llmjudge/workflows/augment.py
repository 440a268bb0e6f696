"""``llmjudge augment``: rephrase prompts in a style and/or classify them, with structured output."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, create_model

from ..judges.base import Sampling
from ..judging.evaluation import evaluate
from ..metrics.base import MaxChars, Metric, MetricInputs
from . import CLIError
from .common import (
    build_cache,
    build_judge,
)
from .io import (
    ERROR_COLUMN,
    Row,
    Table,
    Unit,
    check_output_path,
    plan_resume,
    read_table,
    table_format,
    union_columns,
)
from .runner import run_rows_command

MAX_PROMPT_CHARS = 2000


def parse_labels(text: str) -> list[str]:
    labels: list[str] = []
    for part in text.split(","):
        label = part.strip()
        if not label:
            raise CLIError(
                f"--classify {text!r}: empty label; give labels separated by commas, e.g. billing,technical,other"
            )
        if label not in labels:
            labels.append(label)
    if len(labels) < 2:
        raise CLIError(f"--classify {text!r}: give at least two labels separated by commas")
    return labels


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


class Rephrased(BaseModel):
    """The structured reply of a rephrasing."""

    prompt: Annotated[str, MaxChars(MAX_PROMPT_CHARS)]


def rephrase_metric(style: str) -> Metric:
    """The rephrasing task as a metric: its prompt, schema and cache fingerprint."""
    prompt = (
        f"Rewrite the PROMPT below the way it would be written by {_escape(style)}.\n"
        "Keep its meaning, its facts and every detail needed to answer it, so that the REFERENCE "
        "answer still answers it exactly; change only the wording, tone and phrasing. Do not "
        "answer it.\n\n"
        "PROMPT:\n{input}\n\nREFERENCE:\n{expected}\n\n"
        'Reply with the rewritten text as "prompt".'
    )
    return Metric(
        name="llmjudge.augment.rephrase",
        prompt=prompt,
        schema=Rephrased,
        score=lambda v: 1.0,
        system="You rewrite user prompts for testing an AI application. Reply only in the requested JSON format.",
        details=lambda v: {"prompt": v.prompt},
    )


def classification_schema(labels: list[str]) -> type[BaseModel]:
    """``{"label": Literal[*labels]}``: the only labels a reply can hold."""
    return create_model("Classification", label=(cast(Any, Literal)[tuple(labels)], ...))  # labels known at run time


def classify_metric(labels: list[str]) -> Metric:
    listed = ", ".join(_escape(label) for label in labels)
    prompt = (
        f"Classify the PROMPT below into exactly one of these categories: {listed}.\n\n"
        "PROMPT:\n{input}\n\n"
        'Reply with the category as "label".'
    )
    return Metric(
        name="llmjudge.augment.classify",
        prompt=prompt,
        schema=classification_schema(labels),
        score=lambda v: 1.0,
        system="You classify user prompts for testing an AI application. Reply only in the requested JSON format.",
        details=lambda v: {"label": v.label},
    )


def _source_prompt(row: Row, table: Table) -> str:
    prompt = row.get("input")
    if not isinstance(prompt, str) or not prompt.strip():
        raise CLIError(
            f"{table.where(row)}: no prompt to augment: the row needs a non-empty 'prompt' or "
            "'input' column, or chat 'messages' with a user turn"
        )
    return prompt


def _with_user_turn(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    out = copy.deepcopy(messages)
    for message in reversed(out):
        if str(message.get("role", "")).lower() == "user":
            message["content"] = text
            break
    return out


def run(args: argparse.Namespace) -> int:
    table_format(args.output)
    styles = [s.strip() for s in args.rephrase]
    if any(not s for s in styles):
        raise CLIError("--rephrase needs a non-empty STYLE, e.g. --rephrase 'a student asking'")
    if not styles and not args.classify:
        raise CLIError("nothing to do: give --rephrase STYLE and/or --classify LABEL,LABEL,...")
    labels = parse_labels(args.classify) if args.classify else []
    check_output_path(args.output, [args.input], resume=args.resume, force=args.force)
    table = read_table(args.input, id_column=args.id_column)
    prompts = {row.index: _source_prompt(row, table) for row in table.rows}

    rephrase = bool(styles)
    new_columns: list[str] = []
    if rephrase:
        new_columns += ["initial_prompt", "prompt", "expected_output", "rephrase_style"]
    if labels:
        new_columns.append("classification")
    dropped = {"input"} if rephrase else set()
    columns = union_columns([c for c in table.columns if c not in dropped], new_columns, [ERROR_COLUMN])
    changed = set(new_columns) | dropped | ({"messages"} if rephrase else set()) | {ERROR_COLUMN}

    units: list[Unit] = []
    for row in table.rows:
        for style in styles or [None]:
            expect = {c: v for c, v in row.data.items() if c not in changed}
            if rephrase:
                expect["initial_prompt"] = prompts[row.index]
                expect["rephrase_style"] = style
            units.append(Unit(index=len(units), row=row, expect=expect, payload=style))

    plan = plan_resume(args.output, units) if args.resume and Path(args.output).exists() else None

    judge = build_judge(args)
    cache = build_cache(args)
    sampling = Sampling(temperature=args.temperature, max_tokens=args.max_tokens)
    rephrasers = {style: rephrase_metric(style) for style in styles}
    classifier = classify_metric(labels) if labels else None

    def base(unit: Unit) -> dict[str, Any]:
        row = unit.row
        out = {k: v for k, v in row.data.items() if k not in dropped}
        if rephrase:
            out["initial_prompt"] = prompts[row.index]
            out["expected_output"] = row.get("expected_output")
            out["rephrase_style"] = unit.payload
        return out

    def work(unit: Unit) -> tuple[dict[str, Any], bool]:
        row = unit.row
        out = base(unit)
        inputs = MetricInputs(output="", input=prompts[row.index], expected=row.get("expected_output"))
        cached = True
        if rephrase:
            verdict = evaluate(rephrasers[unit.payload], inputs, judge, threshold=0.0,
                               sampling=sampling, cache=cache)
            cached &= verdict.cached
            text = str(verdict.details["prompt"]).strip()
            if not text:
                raise ValueError("the model returned an empty rephrasing")
            out["prompt"] = text
            if isinstance(row.case.get("messages"), list) and "messages" in row.data:
                out["messages"] = _with_user_turn(row.case["messages"], text)
        if classifier is not None:
            verdict = evaluate(classifier, inputs, judge, threshold=0.0, sampling=sampling, cache=cache)
            cached &= verdict.cached
            out["classification"] = verdict.details["label"]
        out[ERROR_COLUMN] = ""
        return out, cached

    def failed_row(unit: Unit, message: str) -> dict[str, Any]:
        out = base(unit)
        if rephrase:
            out["prompt"] = ""
        if labels:
            out["classification"] = ""
        out[ERROR_COLUMN] = message
        return out

    return run_rows_command(
        units, work, failed_row, args, columns=columns, plan=plan, label="augment",
        headline=f"augment ({judge.name})", close=(cache, judge),
    )
