"""``llmjudge augment``: its options and help; the work is :mod:`pytest_llmjudge.workflows.augment`."""

from __future__ import annotations

import argparse
from typing import Any

from ..run.argtypes import number_in, positive_int
from ..workflows.augment import run
from .options import add_model_options, add_output_options, command_parser

HELP = "rephrase prompts in a style and/or classify them into labels (structured output)"
DESCRIPTION = """\
Grow or annotate a dataset with a model, one structured call per task:

--rephrase STYLE   rewrite each prompt as asked by STYLE ("a student", "an angry customer",
                   "a non-native speaker in a hurry"), keeping its meaning so the reference
                   answer still fits. Repeat the flag for several styles: each input row gives
                   one output row per style. Output columns: initial_prompt (the original),
                   prompt (the rephrasing), expected_output (the reference, unchanged) and
                   rephrase_style; an input 'input' column is replaced by those, and the last
                   user turn of a chat log is rewritten in its 'messages'.
--classify A,B,C   put each (original) prompt in exactly one of the labels, column
                   classification. The reply's schema is a Literal of the labels, so a label
                   outside the set cannot be produced (constrained or validated output), not
                   filtered afterwards.

Other columns are kept. Rows are written in input order as they finish; a row whose call
fails (after the judge's retries) gets its reason in the 'error' column, is reported on
stderr, and the run goes on (exit status 1 at the end). Replies are cached like verdicts
(--cache-dir), so a rerun is free. The exit status is 2 for bad input.
"""
EPILOG = """\
examples:
  llmjudge augment data/qa.jsonl -o data/qa_students.jsonl --rephrase "a student asking" \\
      --judge openai:gpt-4o-mini
  llmjudge augment tickets.csv -o labelled.csv --classify billing,technical,account,other
  llmjudge augment qa.csv -o grown.csv --rephrase "a child" --rephrase "an expert" \\
      --classify easy,hard --judge local:smollm2-135m --resume
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = command_parser(
        subparsers, "augment", HELP, DESCRIPTION, EPILOG,
        input_help="dataset: .csv, .json or .jsonl",
        output_help="the augmented dataset (.csv, .json or .jsonl)",
    )
    parser.add_argument("--rephrase", metavar="STYLE", action="append", default=[],
                        help="rephrase every prompt as asked by STYLE (repeatable)")
    parser.add_argument("--classify", metavar="LABEL,LABEL,...",
                        help="classify every prompt into exactly one of these labels")
    parser.add_argument("--id-column", metavar="COLUMN",
                        help="column that identifies rows (default: 'id' when present)")
    parser.add_argument("--temperature", type=number_in(0.0, 2.0), default=0.0, metavar="T",
                        help="sampling temperature (default: 0, reproducible)")
    parser.add_argument("--max-tokens", type=positive_int, default=1024, metavar="N",
                        help="token limit of each reply (default: 1024)")
    add_model_options(parser)
    add_output_options(parser)
    return parser


__all__ = ["DESCRIPTION", "EPILOG", "HELP", "add_parser", "run"]
