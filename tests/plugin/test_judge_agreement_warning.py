"""Issue 14: a run graded by a judge measured to agree poorly says so in its summary's first line."""

from __future__ import annotations

import pytest

from pytest_llmjudge.analysis.judge_agreement import MEASURED, TRUSTED_AUC, low_agreement_warning
from pytest_llmjudge.report.collect import RunSummary
from pytest_llmjudge.report.terminal import summary_lines

CONFTEST = '''
from pytest_llmjudge.judges import FakeJudge

def pytest_llmjudge_make_judge(config, spec):
    # stands in for the judge named by spec, so the run is fast and needs no model
    # (a local: name gets the compact correctness form: {"score": 0 or 1})
    return FakeJudge(lambda request: {"score": 1} if spec.startswith("local:") else {"reason": "ok", "score": 5},
                     name=spec)
'''
TEST = '''
def test_answer(assert_llm_score):
    assert_llm_score("Paris", metric="correctness", input="Capital of France?", expected="Paris")
'''


def summary(pytester: pytest.Pytester, judge: str) -> list[str]:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_it=TEST)
    result = pytester.runpytest("-p", "no:randomly", f"--llm-judge={judge}", "--llm-cache-mode=off")
    result.assert_outcomes(passed=1)
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if "llm judge summary" in line)
    return [line for line in lines[start + 1:] if line.strip()]


def test_the_embedded_judge_is_called_weak_in_the_first_line(pytester: pytest.Pytester) -> None:
    first = summary(pytester, "local:smollm2-135m")[0]
    measured = MEASURED["local:smollm2-135m"]
    assert first.startswith("WEAK JUDGE (local:smollm2-135m: ROC AUC")
    assert f"{measured.auc:.2f}" in first and "smoke tests" in first
    assert "--llm-judge" in first and "--llm-preflight" in first


def test_a_judge_without_a_low_figure_gets_no_warning(pytester: pytest.Pytester) -> None:
    assert summary(pytester, "openai:gpt-4o-mini")[0].startswith("judge: openai:gpt-4o-mini")


def test_measured_figures_are_real_and_below_the_bar() -> None:
    for name, measured in MEASURED.items():
        assert 0.0 < measured.auc < 1.0 and 0.0 < measured.pairwise < 1.0, name
    assert MEASURED["local:smollm2-135m"].auc < TRUSTED_AUC


def test_summary_lines_without_verdicts_use_the_default_judge() -> None:
    lines = summary_lines(RunSummary(), [], default_judge="local:smollm2-135m")
    assert lines[0] == low_agreement_warning(["local:smollm2-135m"])
    assert summary_lines(RunSummary(), [], default_judge="openai:x")[0].startswith("judge: openai:x")
