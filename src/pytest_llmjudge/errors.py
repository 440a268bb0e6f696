"""The exceptions pytest-llmjudge raises.

    LLMJudgeError                 base of everything below except LLMScoreError
    ├── JudgeError                the judge could not produce a verdict (after retries)
    │   └── ReplayMissError       --llm-cache-mode replay and the verdict is not cached
    ├── DatasetError              a dataset file is missing or malformed (collection error)
    ├── ConfigError               a bad option, judge spec or metric argument
    ├── BaselineError             a baseline or results file cannot be read (--llm-baseline, compare)
    └── CLIError                  bad input or usage of the ``llmjudge`` command line (exit status 2)
    LLMScoreError(AssertionError) a verdict scored below its threshold: a test failure

A JudgeError is never an AssertionError: a judge fault is reported as a judge error,
not as a low score.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .judging.verdict import Verdict


class LLMJudgeError(Exception):
    """Base class of pytest-llmjudge errors."""


class JudgeError(LLMJudgeError):
    """The judge could not produce a valid verdict."""

    def __init__(self, message: str, *, judge: str = "", metric: str = "") -> None:
        super().__init__(message)
        self.judge = judge
        self.metric = metric


class ReplayMissError(JudgeError):
    """Replay mode found no cached verdict for a request."""


class DatasetError(LLMJudgeError):
    """A dataset cannot be loaded; the message names the file, row or line, and the problem."""


class ConfigError(LLMJudgeError):
    """An invalid option, judge spec or metric argument."""


class BaselineError(LLMJudgeError):
    """A baseline or results file cannot be read; the one-line message names the file."""


class CLIError(LLMJudgeError):
    """Bad input or usage: printed as ``llmjudge: error: MESSAGE``; exit status 2."""


class LLMScoreError(AssertionError):
    """A verdict scored below its threshold."""

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        super().__init__(score_failure_message(verdict))


def score_failure_message(verdict: Verdict) -> str:
    """One message naming metric, score, threshold, the judge's reason and the judge."""
    raw = ""
    if verdict.raw_score is not None and verdict.scale != (0.0, 1.0):
        raw = f" (raw {verdict.raw_score:.2f} on {verdict.scale[0]:g}-{verdict.scale[1]:g})"
    if verdict.decision_kind == "k_of_n":  # k-of-n gating: the mean may even be above the threshold
        head = (f"{verdict.metric}: {verdict.decision} at threshold {verdict.threshold:.3f} "
                f"(mean score {verdict.score:.3f}{raw})")
    else:
        head = f"{verdict.metric} score {verdict.score:.3f}{raw} is below threshold {verdict.threshold:.3f}"
    if verdict.samples:
        head += f"\n  samples: {', '.join(f'{s:.2f}' for s in verdict.samples)} ({verdict.decision})"
    return f"{head}\n  judge: {verdict.judge}\n  reason: {verdict.reason}"
