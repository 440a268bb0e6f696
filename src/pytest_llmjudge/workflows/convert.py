"""``llmjudge convert``: between CSV, JSON and JSONL, and between chat logs and prompt rows."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..datasets import content_text
from . import CLIError
from .io import Row, Table, check_output_path, read_table, table_format, union_columns, write_table

CHAT_MODES = ("auto", "flatten", "build", "keep")
_SYSTEM_ROLES = ("system", "developer")


def _blank(value: Any) -> bool:
    return value is None or value == ""


def is_chat(row: Row) -> bool:
    return isinstance(row.case.get("messages"), list) and not _blank(row.data.get("messages"))


def flatten_row(row: Row) -> tuple[dict[str, Any], int]:
    """(the row with system_prompt/prompt/completion/history instead of messages, turns dropped)."""
    messages = [dict(m) for m in row.case["messages"]]
    system_at = next((i for i, m in enumerate(messages) if str(m.get("role", "")).lower() in _SYSTEM_ROLES), None)
    users = [i for i, m in enumerate(messages) if str(m.get("role", "")).lower() == "user"]
    last_user = users[-1]  # load_cases has checked there is one
    answer_at = next(
        (i for i in range(last_user + 1, len(messages))
         if str(messages[i].get("role", "")).lower() == "assistant"),
        None,
    )
    history = [
        {"role": m.get("role"), "content": content_text(m.get("content"))}
        for i, m in enumerate(messages[:last_user]) if i != system_at
    ]
    used = {last_user} | ({answer_at} if answer_at is not None else set()) | (
        {system_at} if system_at is not None else set())
    dropped = sum(1 for i in range(last_user + 1, len(messages)) if i not in used)
    derived: dict[str, Any] = {
        "system_prompt": content_text(messages[system_at].get("content")) if system_at is not None else None,
        "prompt": content_text(messages[last_user].get("content")),
        "completion": content_text(messages[answer_at].get("content")) if answer_at is not None else None,
    }
    if history:
        derived["history"] = history
    out: dict[str, Any] = {}
    for key, value in derived.items():
        # as in load_cases: a value the row already has wins over the derived one
        out[key] = row.data[key] if not _blank(row.data.get(key)) else value
    for key, value in row.data.items():
        if key != "messages" and key not in out:
            out[key] = value
    return out, dropped


def build_row(row: Row, table: Table) -> dict[str, Any]:
    """The row with a ``messages`` list built from its system_prompt/prompt/completion/history."""
    data = row.data
    prompt = row.get("input")
    if _blank(prompt):
        raise CLIError(
            f"{table.where(row)}: cannot build messages: the row has no prompt "
            "(a 'prompt' or 'input' column)"
        )
    system = row.get("system_prompt")
    completion = row.get("expected_output")
    history = data.get("history")
    if isinstance(history, str) and history.strip():
        try:
            history = json.loads(history)
        except json.JSONDecodeError as exc:
            raise CLIError(
                f"{table.where(row)}: column 'history' is not valid JSON ({exc.msg}); it must "
                "hold a JSON list of {role, content} objects"
            ) from None
    if _blank(history):
        history = []
    if not isinstance(history, list) or not all(
        isinstance(m, dict) and "role" in m and "content" in m for m in history
    ):
        raise CLIError(f"{table.where(row)}: column 'history' must be a list of {{role, content}} objects")
    messages: list[dict[str, Any]] = []
    if not _blank(system):
        messages.append({"role": "system", "content": system})
    messages.extend({"role": m["role"], "content": m["content"]} for m in history)
    messages.append({"role": "user", "content": prompt})
    if not _blank(completion):
        messages.append({"role": "assistant", "content": completion})
    consumed = {"system_prompt", "prompt", "input", "completion", "expected_output", "history", "messages"}
    out: dict[str, Any] = {"messages": messages}
    out.update({k: v for k, v in data.items() if k not in consumed})
    return out


def run(args: argparse.Namespace) -> int:
    fmt = table_format(args.output)
    check_output_path(args.output, [args.input], guard=False)
    table = read_table(args.input, auto_id=False)
    mode = args.chat
    chat_rows = sum(1 for r in table.rows if is_chat(r))
    if mode == "auto":
        mode = "flatten" if fmt == ".csv" and chat_rows else "keep"
    rows: list[dict[str, Any]] = []
    dropped = 0
    changed = 0
    for row in table.rows:
        if mode == "flatten" and is_chat(row):
            out, lost = flatten_row(row)
            dropped += lost
            changed += 1
        elif mode == "build" and not is_chat(row):
            out = build_row(row, table)
            changed += 1
        else:
            out = dict(row.data)
        rows.append(out)
    if mode == "flatten":
        lead = ["system_prompt", "prompt", "completion"]
        if any("history" in r for r in rows):
            lead.append("history")
        columns = union_columns(lead, [c for c in table.columns if c != "messages"], *rows)
    elif mode == "build":
        columns = union_columns(["messages"], *rows)
    else:
        columns = list(table.columns)
    write_table(args.output, rows, columns)
    if not args.quiet:
        what = {"flatten": f", {changed} chat logs flattened to system_prompt/prompt/completion",
                "build": f", {changed} rows turned into chat messages", "keep": ""}[mode]
        print(f"converted {len(rows)} rows{what} -> {args.output}")
        if dropped:
            print(f"  note: {dropped} turns after the answered user turn were dropped")
    return 0
