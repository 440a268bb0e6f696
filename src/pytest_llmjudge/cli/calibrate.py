"""``llmjudge calibrate``: its options and help; the work is :mod:`pytest_llmjudge.workflows.calibrate`."""

from __future__ import annotations

import argparse
from typing import Any

from ..run.argtypes import non_negative_int, number_in
from ..workflows.calibrate import OUTPUT_CANDIDATES, run
from .options import add_model_options, add_output_options, command_parser

HELP = "judge a labelled dataset and report how well the judge agrees with the human labels"
DESCRIPTION = """\
Judge every row of a dataset that carries a human label, and report whether the judge is
good enough to gate on:

  Spearman rho       rank correlation of judge scores and labels (ties averaged)
  quadratic kappa    Cohen's kappa, quadratic weights, on the rubric's own scale (0-5 for
                     correctness, 0-10 for criteria; 5 levels 0, .25, .5, .75, 1 for
                     fraction metrics), with Landis & Koch's reading of it
  accuracy           agreement on pass/fail at --threshold, and how many bad answers the
                     judge passed / good answers it failed
  confusion matrix   human category (rows) x judge category (columns)
                     (kappa and the matrix use the judge's own rubric answer; Spearman and
                     accuracy its gated score, probability-weighted where the backend gives
                     score probabilities)
  disagreements      the --top rows where judge and label differ most, with the judge's reason

Labels may be on the rubric's raw scale (0-5) or normalized to 0-1; auto-detection says which
it chose (labels above 1 mean raw), or set --label-scale raw|normalized|LOW-HIGH (e.g. 1-5 for
a Likert scale mapped onto the rubric). pass/fail, true/false and yes/no labels count as the
top and bottom of the scale. Rows without a label are skipped (and counted).

The answer judged comes from --output-column (default: the first of actual_output, output,
answer, response), the question from input/prompt/messages, the reference from
expected_output/completion, the context from --context-column.

The report is JSON or Markdown by -o's extension; a summary is printed. Verdicts are cached
(--cache-dir), so rerunning after an interruption or with another --threshold is free;
--rows FILE also writes each row's verdict as it finishes (--resume continues it). Exit
status: 0; 1 when a row's judging failed, no row could be judged, or --min-kappa was missed;
2 for bad input.
"""
EPILOG = """\
examples:
  llmjudge calibrate labelled.csv -o report.md --judge openai:gpt-4o-mini \\
      --metric correctness --label-column human_score
  llmjudge calibrate labelled.jsonl -o report.json --judge local:smollm2-135m \\
      --label-column rating --label-scale 1-5 --threshold 0.6 --min-kappa 0.6
  llmjudge calibrate support.csv -o report.md --metric faithfulness --label-column faithful \\
      --rows verdicts.jsonl --resume
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = command_parser(
        subparsers, "calibrate", HELP, DESCRIPTION, EPILOG,
        input_help="dataset with human labels: .csv, .json or .jsonl",
        output_help="the report: .json or .md",
        input_metavar="LABELLED",
        output_metavar="REPORT",
    )
    parser.add_argument("--metric", default="correctness", metavar="NAME",
                        help="built-in metric (correctness, answer_relevancy, faithfulness, toxicity, "
                             "criteria) or module:attribute of a Metric (default: correctness)")
    parser.add_argument("--label-column", required=True, metavar="COLUMN", help="the human labels")
    parser.add_argument("--label-scale", default="auto", metavar="SCALE",
                        help="auto (default), raw (the rubric's scale), normalized (0-1) or LOW-HIGH")
    parser.add_argument("--threshold", type=number_in(0.0, 1.0), default=0.5, metavar="T",
                        help="pass threshold on the normalized score (default: 0.5)")
    parser.add_argument("--output-column", metavar="COLUMN",
                        help=f"the answer to judge (default: first of {', '.join(OUTPUT_CANDIDATES)})")
    parser.add_argument("--context-column", default="context", metavar="COLUMN",
                        help="context for faithfulness (default: context)")
    parser.add_argument("--criteria", metavar="TEXT", help="criteria text for --metric criteria "
                        "(default: each row's 'criteria' column)")
    parser.add_argument("--id-column", metavar="COLUMN",
                        help="column that identifies rows (default: 'id' when present)")
    parser.add_argument("--top", type=non_negative_int, default=10, metavar="N",
                        help="how many disagreements to list (default: 10)")
    parser.add_argument("--min-kappa", type=number_in(-1.0, 1.0), default=None, metavar="K",
                        help="exit with status 1 when the quadratic kappa is below K")
    parser.add_argument("--rows", metavar="FILE",
                        help="also write each row's verdict (.csv, .json or .jsonl) as it finishes")
    add_model_options(parser)
    add_output_options(parser)
    return parser


__all__ = ["DESCRIPTION", "EPILOG", "HELP", "add_parser", "run"]
