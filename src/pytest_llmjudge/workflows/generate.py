"""``llmjudge generate``: the application's answers to every prompt, with their sampling recorded."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..datasets import content_text
from ..judges.base import Judge, JudgeRequest, Message, Sampling
from ..judging.cache import VerdictCache
from ..judging.verdict import Verdict
from ..metrics.base import Metric
from . import CLIError
from .common import (
    build_cache,
    build_judge,
)
from .generation import GeneratedAnswer, generate_text, generation_mode
from .io import ERROR_COLUMN, Row, Table, Unit, check_output_path, plan_resume, read_table, table_format, union_columns
from .runner import run_rows_command

RECORD_COLUMNS = ["model", "temperature", "top_p", "max_tokens", "seed", "system_prompt",
                  "generation_mode", "finish_reason", "latency_s"]
_SYSTEM_ROLES = ("system", "developer")


def build_messages(row: Row, table: Table, system_prompt: str | None) -> tuple[list[Message], str]:
    """The chat messages that ask the row's prompt, and the effective system prompt."""
    messages_value = row.case.get("messages")
    if isinstance(messages_value, list) and messages_value:
        turns = [{"role": str(m.get("role", "user")).lower(), "content": content_text(m.get("content")) or ""}
                 for m in messages_value]
        last_user = max(i for i, m in enumerate(turns) if m["role"] == "user")
        turns = turns[: last_user + 1]
        if system_prompt is not None:
            turns = [m for m in turns if m["role"] not in _SYSTEM_ROLES]
            if system_prompt:
                turns.insert(0, {"role": "system", "content": system_prompt})
        system = next((m["content"] for m in turns if m["role"] in _SYSTEM_ROLES), "")
        return [{"role": m["role"], "content": m["content"] or ""} for m in turns], system or ""
    prompt = row.get("input")
    if not isinstance(prompt, str) or not prompt.strip():
        raise CLIError(
            f"{table.where(row)}: no prompt to answer: the row needs a non-empty 'prompt' or "
            "'input' column, or chat 'messages' with a user turn"
        )
    system = system_prompt if system_prompt is not None else row.get("system_prompt")
    system = system if isinstance(system, str) else ("" if system is None else str(system))
    messages: list[Message] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": prompt})
    return messages, system


def generate_task(mode: str) -> Metric:
    """A stand-in metric that names the task (and its mode) in the cache key."""
    return Metric(name=f"llmjudge.generate.{mode}", prompt="{input}", schema=GeneratedAnswer,
                  score=lambda v: 1.0, version="1")


def cached_generate(judge: Judge, messages: list[Message], sampling: Sampling,
                    cache: VerdictCache | None) -> tuple[dict[str, Any], bool]:
    """(answer record, whether it came from the cache). The cache stores it as a Verdict."""
    key = None
    if cache is not None:
        request = JudgeRequest(messages=tuple(messages), schema=GeneratedAnswer, sampling=sampling)
        key = cache.key(judge, generate_task(generation_mode(judge)), request)
        hit = cache.get(key, 0.0)
        if hit is not None:
            return dict(hit.details), True
    generated = generate_text(judge, messages, sampling)
    record = {"text": generated.text, "mode": generated.mode,
              "finish_reason": generated.finish_reason, "latency_s": round(generated.latency_s, 4)}
    if cache is not None and key is not None:
        cache.put(key, Verdict(metric="llmjudge.generate", score=1.0, judge=judge.name,
                               latency_s=generated.latency_s, usage=generated.usage, details=record))
    return record, False


def run(args: argparse.Namespace) -> int:
    table_format(args.output)
    reserved = {"input", "prompt", "messages", "system_prompt", ERROR_COLUMN, *RECORD_COLUMNS}
    if args.output_column in reserved:
        raise CLIError(f"--output-column {args.output_column!r}: that column holds the prompt or the "
                       "run's record; choose another name (default: actual_output)")
    check_output_path(args.output, [args.input], resume=args.resume, force=args.force)
    table = read_table(args.input, id_column=args.id_column)
    asks = {row.index: build_messages(row, table, args.system_prompt) for row in table.rows}

    generated_columns = [args.output_column, *RECORD_COLUMNS]
    columns = union_columns(table.columns, generated_columns, [ERROR_COLUMN])
    changed = set(generated_columns) | {ERROR_COLUMN}
    units = [
        Unit(index=i, row=row, expect={c: v for c, v in row.data.items() if c not in changed})
        for i, row in enumerate(table.rows)
    ]
    plan = plan_resume(args.output, units) if args.resume and Path(args.output).exists() else None

    judge = build_judge(args)
    cache = build_cache(args)
    sampling = Sampling(temperature=args.temperature, top_p=args.top_p,
                        max_tokens=args.max_tokens, seed=args.seed)

    def record(unit: Unit) -> dict[str, Any]:
        out = dict(unit.row.data)
        out.update({
            "model": judge.name, "temperature": args.temperature, "top_p": args.top_p,
            "max_tokens": args.max_tokens, "seed": args.seed,
            "system_prompt": asks[unit.row.index][1],
        })
        return out

    def work(unit: Unit) -> tuple[dict[str, Any], bool]:
        messages, _ = asks[unit.row.index]
        answer, cached = cached_generate(judge, messages, sampling, cache)
        out = record(unit)
        out[args.output_column] = answer["text"]
        out["generation_mode"] = answer.get("mode")
        out["finish_reason"] = answer.get("finish_reason")
        out["latency_s"] = answer.get("latency_s")
        out[ERROR_COLUMN] = ""
        return out, cached

    def failed_row(unit: Unit, message: str) -> dict[str, Any]:
        out = record(unit)
        out[args.output_column] = ""
        out[ERROR_COLUMN] = message
        return out

    return run_rows_command(
        units, work, failed_row, args, columns=columns, plan=plan, label="generate",
        headline=f"generate ({judge.name}, {generation_mode(judge)} mode)", close=(cache, judge),
    )
