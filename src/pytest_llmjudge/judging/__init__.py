"""Judging one answer: evaluation, verdicts, repeats and the verdict cache."""
