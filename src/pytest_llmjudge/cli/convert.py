"""``llmjudge convert``: its options and help; the work is :mod:`pytest_llmjudge.workflows.convert`."""

from __future__ import annotations

import argparse
from typing import Any

from ..workflows.convert import CHAT_MODES, run
from .options import command_parser

HELP = "convert between CSV, JSON and JSONL, and between chat logs and prompt/completion rows"
DESCRIPTION = """\
Rewrite a dataset in the format of OUT's extension (.csv, .json, .jsonl). Columns and values
are kept; in CSV, lists and objects become JSON text (which the loader reads back).

Chat logs -- one {"messages": [{"role": ..., "content": ...}, ...]} per row -- and flat rows
convert both ways with --chat:
  flatten  messages -> system_prompt, prompt, completion: the first system turn, the last user
           turn and the assistant's answer to it. Earlier turns go to a 'history' column
           (JSON), so nothing is lost and 'build' restores the conversation.
  build    system_prompt, prompt (or input), completion (or expected_output), history ->
           messages.
  keep     leave rows as they are.
  auto     (default) flatten when OUT is .csv and the rows are chat logs, else keep.
Other columns are kept beside them.
"""
EPILOG = """\
examples:
  llmjudge convert data/qa.csv -o data/qa.jsonl
  llmjudge convert chats.jsonl -o chats.csv                    # flattens the messages
  llmjudge convert chats.jsonl -o rows.jsonl --chat flatten
  llmjudge convert rows.csv -o chats.jsonl --chat build
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = command_parser(
        subparsers, "convert", HELP, DESCRIPTION, EPILOG,
        input_help="dataset: .csv, .json or .jsonl",
        output_help="the converted file (.csv, .json or .jsonl)",
    )
    parser.add_argument("--chat", choices=CHAT_MODES, default="auto",
                        help="chat logs <-> rows (default: auto)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    return parser


__all__ = ["DESCRIPTION", "EPILOG", "HELP", "add_parser", "run"]
