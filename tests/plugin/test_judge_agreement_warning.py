"""Issue 14: a run graded by a judge measured to agree poorly says so in its summary's first line.

The figures come from the shipped data file the agreement bench writes, never from the code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_llmjudge.analysis.judge_agreement import TRUSTED_AUC, load_measured, low_agreement_warning, worst_by_judge
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
    measured = worst_by_judge(load_measured())["local:smollm2-135m"]
    assert first.startswith("WEAK JUDGE (local:smollm2-135m: ROC AUC")
    assert f"ROC AUC {measured.auc:.2f}, pairwise accuracy {measured.pairwise:.2f}" in first
    assert measured.dataset in first and "smoke tests" in first
    assert "--llm-judge" in first and "--llm-preflight" in first


def test_a_judge_without_a_low_figure_gets_no_warning(pytester: pytest.Pytester) -> None:
    assert summary(pytester, "openai:gpt-4o-mini")[0].startswith("judge: openai:gpt-4o-mini")


def test_shipped_figures_come_from_the_bench_on_held_out_sets() -> None:
    records = load_measured()
    assert {r.dataset for r in records if r.judge == "local:smollm2-135m"} >= {"truthfulqa_test", "halueval_qa_test"}
    for r in records:
        assert 0.0 < r.auc < 1.0 and 0.0 < r.pairwise < 1.0, r
        assert r.command.startswith("python bench/judge_agreement.py") and r.date and r.verdicts > 0, r
        assert "dev" not in r.dataset, r


def record(judge: str, dataset: str, auc: float, pairwise: float) -> dict:
    return {"judge": judge, "metric": "correctness", "dataset": dataset, "auc": auc, "auc_interval": None,
            "pairwise": pairwise, "pairwise_interval": None, "verdicts": 40,
            "command": "python bench/judge_agreement.py x", "date": "2026-12-01T00:00Z"}


def test_the_line_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "agreement.json"
    path.write_text(json.dumps({"records": [
        record("local:x", "set_a", 0.61, 0.66), record("local:x", "set_b", 0.58, 0.71),
        record("openai:good", "set_a", 0.91, 0.95),
        {**record("", "set_a", 0.2, 0.2), "judge": None},  # a check (similarity): no judge
    ]}))
    records = load_measured(path)
    line = low_agreement_warning(["local:x"], records)
    assert line is not None and "local:x: ROC AUC 0.58, pairwise accuracy 0.71 (correctness on set_b" in line
    assert low_agreement_warning(["openai:good"], records) is None
    assert low_agreement_warning(["local:smollm2-135m"], records) is None  # not in this file
    path.write_text(json.dumps({"records": [record("local:x", "set_a", 0.75, 0.8)]}))
    assert low_agreement_warning(["local:x"], load_measured(path)) is None
    assert TRUSTED_AUC == 0.7


def test_summary_lines_without_verdicts_use_the_default_judge() -> None:
    lines = summary_lines(RunSummary(), [], default_judge="local:smollm2-135m")
    assert lines[0] == low_agreement_warning(["local:smollm2-135m"])
    assert summary_lines(RunSummary(), [], default_judge="openai:x")[0].startswith("judge: openai:x")


def test_the_data_file_ships_with_the_package() -> None:
    tomllib = pytest.importorskip("tomllib")
    from fnmatch import fnmatch

    import pytest_llmjudge
    from pytest_llmjudge.analysis.judge_agreement import DATA_FILE

    root = Path(__file__).resolve().parents[2]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert any(fnmatch(DATA_FILE, pattern) for pattern in globs["pytest_llmjudge"])
    assert (Path(pytest_llmjudge.__file__).parent / DATA_FILE).is_file()
