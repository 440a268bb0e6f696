"""Judge preflight: before any test runs, the judge grades a small labelled dataset.

Each row is graded like a test case (``input``, ``output``/``answer``, ``expected_output``,
``context``, ``criteria``; ``metric`` per row, default correctness) and carries the human
judgement: ``label`` (pass/fail, true/false, yes/no, 1/0) or ``expected_score`` (0-1, or on
the metric's own scale when above 1). The judge agrees with a row as
:func:`pytest_llmjudge.analysis.agreement.label_agrees` says: its pass/fail matches the label, or its
score is within ``SCORE_TOLERANCE`` of the expected score.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..datasets import Case, load_cases
from ..errors import ConfigError, DatasetError, JudgeError
from ..judges.base import Judge
from ..judging.evaluation import evaluate
from ..metrics import get_metric
from ..metrics.base import Metric, MetricInputs
from ..run.executor import DaemonExecutor
from .agreement import SCORE_TOLERANCE, label_agrees, pass_fail_word

__all__ = ["SCORE_TOLERANCE", "PreflightCase", "PreflightResult", "run_preflight"]
#: a label may also be 1 or 0 here (calibrate reads digits as grades)
_DIGITS = {"1": True, "0": False}


@dataclass
class PreflightCase:
    case_id: str
    metric: str
    agreed: bool
    detail: str


@dataclass
class PreflightResult:
    path: str
    judge: str
    cases: list[PreflightCase]
    minimum: float

    @property
    def agreement(self) -> float:
        return sum(c.agreed for c in self.cases) / len(self.cases) if self.cases else 0.0

    @property
    def ok(self) -> bool:
        return self.agreement >= self.minimum

    def describe(self) -> str:
        agreed = sum(c.agreed for c in self.cases)
        head = (f"llmjudge preflight: judge {self.judge} agreed with {agreed} of {len(self.cases)} "
                f"labelled cases in {self.path} ({self.agreement:.0%}; minimum {self.minimum:.0%})")
        if self.ok:
            return head
        wrong = [c for c in self.cases if not c.agreed]
        lines = [head + " - stopping before any test runs: this judge cannot grade reliably.",
                 "cases it got wrong:"]
        lines += [f"  {c.case_id} [{c.metric}]: {c.detail}" for c in wrong]
        lines.append("fix: use a stronger judge (--llm-judge), adjust the metric, or lower --llm-preflight-min")
        return "\n".join(lines)


def _label(case: Case, where: str) -> tuple[bool | None, float | None]:
    label = case.get("label")
    if label not in (None, ""):
        text = str(label).strip()
        word = pass_fail_word(text)
        if word is None:
            word = _DIGITS.get(text)
        if word is not None:
            return word, None
        raise DatasetError(f"{where}: label {label!r} is not pass/fail, true/false, yes/no or 1/0")
    expected = case.get("expected_score")
    if expected not in (None, ""):
        try:
            return None, float(expected)
        except (TypeError, ValueError):
            raise DatasetError(f"{where}: expected_score {expected!r} is not a number") from None
    raise DatasetError(f"{where}: needs a `label` or an `expected_score` column value")


def _threshold(value: object, default: float, where: str) -> float:
    if value in (None, ""):
        return default
    try:
        number = float(value) if isinstance(value, (str, int, float)) else -1.0
    except (TypeError, ValueError):
        number = -1.0
    if isinstance(value, bool) or not 0.0 <= number <= 1.0:
        raise DatasetError(f"{where}: threshold {value!r} is not a number between 0 and 1")
    return number


def run_preflight(path: Path, judge: Judge, *, threshold: float, minimum: float, workers: int,
                  cache: object = None) -> PreflightResult:
    """Grade every labelled row and measure agreement."""
    cases = load_cases(path)
    plans = []
    for case in cases:
        where = f"{path.name} row {case.row}"
        try:
            metric = get_metric(str(case.get("metric") or "correctness"))
        except ConfigError as exc:
            raise DatasetError(f"{where}: {exc}") from None
        label, expected_score = _label(case, where)
        output = case.get("output") or case.get("answer") or case.get("actual_output")
        if not output:
            raise DatasetError(f"{where}: needs the answer to grade in an `output` (or `answer`) column")
        inputs = MetricInputs(
            output=str(output), input=case.get("input"), expected=case.get("expected_output"),
            context=case.get("context"), criteria=case.get("criteria"),
        )
        row_threshold = _threshold(case.get("threshold"), threshold, where)
        if expected_score is not None and expected_score > 1 and isinstance(metric, Metric):
            expected_score = metric.normalize(expected_score)
        plans.append((case, metric, inputs, row_threshold, label, expected_score))
    executor = DaemonExecutor(workers, name="llmjudge-preflight")
    futures = [
        executor.submit(lambda m=m, i=i, t=t: evaluate(m, i, judge, threshold=t, cache=cache))
        for _, m, i, t, _, _ in plans
    ]
    results = []
    for (case, metric, _, row_threshold, label, expected_score), future in zip(plans, futures):
        name = f"{case['id']} ({case.id})" if case.get("id") not in (None, "") else case.id
        try:
            verdict = future.result()
        except JudgeError as exc:
            results.append(PreflightCase(name, metric.name, False, f"judge error: {exc}"))
            continue
        agreed = label_agrees(verdict.passed, verdict.score, label=label, expected_score=expected_score)
        if label is not None:
            detail = (f"labelled {'pass' if label else 'fail'}, judge scored {verdict.score:.2f} "
                      f"({'pass' if verdict.passed else 'fail'} at {row_threshold:.2f}): {verdict.reason}")
        else:
            detail = f"expected score {expected_score:.2f}, judge scored {verdict.score:.2f}: {verdict.reason}"
        results.append(PreflightCase(name, metric.name, agreed, detail))
    executor.shutdown()
    return PreflightResult(str(path), judge.name, results, minimum)
