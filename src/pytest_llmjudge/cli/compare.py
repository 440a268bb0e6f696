"""``llmjudge compare BASELINE CURRENT``: two runs' verdicts, paired case by case
(:func:`pytest_llmjudge.analysis.regression.compare`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..analysis.regression import N_RESAMPLES, compare, load_baseline
from ..errors import BaselineError
from ..run.argtypes import non_negative_float, positive_int

HELP = "compare a run against a baseline (paired test per metric)"
DESCRIPTION = ("Compare two runs' verdicts metric by metric: paired bootstrap interval of the mean "
               "difference and Wilcoxon signed-rank p-value. Exit status 1 when a metric regressed "
               "(its whole interval below -TOLERANCE), 2 on unreadable input.")


def _confidence(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1")
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser("compare", help=HELP, description=DESCRIPTION)
    parser.add_argument("baseline", help="baseline .json (--llm-save-baseline) or results .jsonl/.csv file")
    parser.add_argument("current", help="baseline .json or results .jsonl/.csv file of the run to check")
    parser.add_argument("--format", choices=("text", "markdown"), default="text",
                        help="text for a terminal, markdown for a pull-request comment (default text)")
    parser.add_argument("--tolerance", type=non_negative_float, default=0.0,
                        help="regressed when the whole interval lies below -TOLERANCE (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--confidence", type=_confidence, default=0.95, help="interval confidence (default 0.95)")
    parser.add_argument("--resamples", type=positive_int, default=N_RESAMPLES,
                        help=f"bootstrap resamples (default {N_RESAMPLES})")
    parser.add_argument("--group-by", action="append", default=[], metavar="COLUMN",
                        help="also compare each group of this dataset column (repeatable; Holm-corrected)")
    parser.add_argument("-o", "--output", help="write the comparison to this file instead of stdout")
    return parser


def run(args: argparse.Namespace) -> int:
    """0 no regression, 1 a metric regressed, 2 bad input."""
    try:
        baseline = load_baseline(args.baseline)
        current = load_baseline(args.current)
    except BaselineError as exc:
        print(f"llmjudge compare: error: {exc}", file=sys.stderr)
        return 2
    comparison = compare(baseline, current, tolerance=args.tolerance, seed=args.seed,
                         confidence=args.confidence, n_resamples=args.resamples, group_by=args.group_by)
    text = (comparison.markdown() if args.format == "markdown"
            else "\n".join(comparison.lines(flipped_texts=True)) + "\n")
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"llmjudge compare: error: {args.output}: cannot write ({exc.strerror or exc})", file=sys.stderr)
            return 2
    else:
        sys.stdout.write(text)
    return 1 if comparison.regressed else 0


__all__ = ["DESCRIPTION", "HELP", "add_parser", "run"]
