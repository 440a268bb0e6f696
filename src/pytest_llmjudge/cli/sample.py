"""``llmjudge sample``: its options and help; the work is :mod:`pytest_llmjudge.workflows.sample`."""

from __future__ import annotations

import argparse
from typing import Any

from ..datasets import DEFAULT_SEED
from ..run.argtypes import positive_int
from ..workflows.sample import run
from .options import command_parser

HELP = "draw a reproducible random sample of rows (optionally stratified by a column)"
DESCRIPTION = """\
Draw N rows at random, reproducibly: the same input, N and --seed always give the same rows,
written in their input order. Without --by the draw is the one @pytest.mark.llm_dataset(path,
sample=N, seed=S) makes, so a sampled file and a sampled marker select the same cases.

With --by COLUMN the sample is stratified: each value of COLUMN gets a share of N
proportional to its count (largest remainders first), and every value gets at least one row
when N is at least the number of values.
"""
EPILOG = """\
examples:
  llmjudge sample data/qa.jsonl -n 50 --seed 7 -o data/qa_50.jsonl
  llmjudge sample logs.csv -n 200 --by topic -o eval_set.csv
  llmjudge sample chats.jsonl -n 20 -o chats_20.json      # also converts JSONL to JSON
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = command_parser(
        subparsers, "sample", HELP, DESCRIPTION, EPILOG,
        input_help="dataset: .csv, .json or .jsonl",
        output_help="where to write the sample (.csv, .json or .jsonl)",
    )
    parser.add_argument("-n", dest="n", metavar="N", type=positive_int, required=True,
                        help="how many rows to draw (all rows if the file has fewer)")
    parser.add_argument("--seed", default=None, metavar="S",
                        help=f"random seed (default: {DEFAULT_SEED}, the llm_dataset marker's default)")
    parser.add_argument("--by", metavar="COLUMN", help="stratify by the values of COLUMN")
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    return parser


__all__ = ["DESCRIPTION", "EPILOG", "HELP", "add_parser", "run"]
