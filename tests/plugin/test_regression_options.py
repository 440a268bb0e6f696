"""Issue 6 through real pytest runs: repeated judging (--llm-repeat K|auto, k-of-n gating,
instability), the judge-noise floor, the summary's intervals, saved baselines and regressions,
the HTML report and the judge preflight.

Most runs use an in-process ``FakeJudge`` whose score is a table lookup on the answer and the
sample index (``scores.json``), so every number below is computed by hand; the logprob path uses
the fake OpenAI-compatible server, which reports the score token's probabilities.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from typing import Any

import pytest
from conftest import (
    QA_PASS,
    QA_ROWS,
    LLMRun,
    case_properties,
    case_system_out,
    failure_messages,
    outcomes,
    summary_section,
    summary_table,
    write_jsonl,
)

from pytest_llmjudge.report.results_file import read_result_rows

# -- the noisy FakeJudge ----------------------------------------------------------------
#: conftest of the runs: judge ``fake:noisy`` answers ``scores.json[answer][index % len]`` (a
#: raw rubric score) and logs every call to ``calls.log`` (one JSON line; workers append too)
JUDGE_CONFTEST = '''
import json
from pathlib import Path

from pytest_llmjudge.judges import FakeJudge
from pytest_llmjudge.metrics import unfence

HERE = Path(__file__).parent


def handler(request):
    prompt = request.messages[-1]["content"]
    answer = unfence(prompt)["output"].strip()
    scores = json.loads((HERE / "scores.json").read_text())[answer]
    index = request.sample_index
    with open(HERE / "calls.log", "a") as log:
        log.write(json.dumps({"answer": answer, "index": index,
                              "temperature": request.sampling.temperature}) + "\\n")
    return {"reason": f"graded {answer} (sample {index})", "score": scores[index % len(scores)]}


def pytest_llmjudge_make_judge(config, spec):
    if spec == "fake:noisy":
        return FakeJudge(handler, name=spec)
'''

#: one test per entry of cases.json ({id: answer}), correctness on the 0-5 rubric
CASES_TEST = '''
import json
from pathlib import Path

import pytest

CASES = json.loads((Path(__file__).parent / "cases.json").read_text())


@pytest.mark.parametrize("answer", list(CASES.values()), ids=list(CASES))
def test_case(answer, assert_llm_score):
    assert_llm_score(answer, input="What is it?", expected="The reference answer.", threshold=0.5)
'''

#: raw 0-5 scores per sample index (cycled); normalized = raw / 5, threshold 0.5
SOLID, BAD, WOBBLY, WOBBLY_LOW, SETTLES = [5], [0], [3, 2, 3], [2, 3, 2], [5, 4, 5]


class Noisy:
    """Runs pytest in-process (or in a subprocess) on the ``fake:noisy`` judge."""

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        self.path = pytester.path
        pytester.makeconftest(JUDGE_CONFTEST)

    def suite(self, scores: dict[str, list[int]], cases: dict[str, str] | None = None,
              test: str = CASES_TEST) -> None:
        """``scores``: answer -> raw scores; ``cases``: test id -> answer (default: id = answer)."""
        (self.path / "scores.json").write_text(json.dumps(scores))
        self.set_cases(cases if cases is not None else {a: a for a in scores})
        self.pytester.makepyfile(test_suite=test)

    def set_cases(self, cases: dict[str, str]) -> None:
        (self.path / "cases.json").write_text(json.dumps(cases))

    def args(self, *extra: str, cache: str = "off") -> list[str]:
        return ["--llm-judge", "fake:noisy", "--llm-cache-mode", cache, "-p", "no:cacheprovider", *extra]

    def run(self, *extra: str, cache: str = "off") -> pytest.RunResult:
        (self.path / "calls.log").unlink(missing_ok=True)
        return self.pytester.runpytest_inprocess(*self.args(*extra, cache=cache))

    def run_subprocess(self, *extra: str, cache: str = "off") -> pytest.RunResult:
        (self.path / "calls.log").unlink(missing_ok=True)
        return self.pytester.runpytest_subprocess(*self.args(*extra, cache=cache), timeout=60)

    def calls(self) -> list[dict[str, Any]]:
        log = self.path / "calls.log"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def calls_per_answer(self) -> dict[str, list[int]]:
        """answer -> sorted sample indices the judge was called with."""
        out: dict[str, list[int]] = {}
        for call in self.calls():
            out.setdefault(call["answer"], []).append(call["index"])
        return {k: sorted(v) for k, v in out.items()}

    def results(self, name: str = "results.jsonl") -> dict[str, dict[str, Any]]:
        """test id (the parametrize id) -> its results-file row."""
        return {case_id(row["test_id"]): row for row in read_result_rows(self.path / name)}


@pytest.fixture
def noisy(pytester: pytest.Pytester) -> Noisy:
    return Noisy(pytester)


def normalized(raw: list[int], n: int) -> list[float]:
    return [raw[i % len(raw)] / 5 for i in range(n)]


def case_id(test_id: str) -> str:
    """``test_suite.py::test_case[wobbly]`` -> ``wobbly``; ``...::test_check_metric`` -> ``test_check_metric``."""
    name = test_id.split("::")[-1]
    return name.split("[", 1)[1][:-1] if name.endswith("]") else name


def by_case(values: dict[str, Any]) -> dict[str, Any]:
    """``test_case[wobbly]`` -> ``wobbly``."""
    return {case_id(name): value for name, value in values.items()}


def head(result: pytest.RunResult) -> str:
    return next(line for line in summary_section(result) if line.startswith("judge: "))


def calls_in_head(result: pytest.RunResult) -> int:
    return int(re.search(r"judge calls: (\d+)", head(result)).group(1))  # type: ignore[union-attr]


# -- --llm-repeat K ---------------------------------------------------------------------
REPEAT_SCORES = {"solid": SOLID, "bad": BAD, "wobbly": WOBBLY, "wobblylow": WOBBLY_LOW}


@pytest.mark.parametrize("concurrency", ["1", "16"])
def test_repeat_k_samples_mean_calls_and_reports(noisy: Noisy, concurrency: str) -> None:
    noisy.suite(REPEAT_SCORES)
    result = noisy.run("--llm-repeat", "3", "--llm-results", "results.jsonl", "--junitxml", "junit.xml",
                       "-o", "junit_family=xunit1", "--llm-concurrency", concurrency)
    # mean of (.6, .4, .6) = .533 passes at .5; mean of (.4, .6, .4) = .467 fails
    assert outcomes(result) == {"passed": {"solid", "wobbly"}, "failed": {"bad", "wobblylow"}}
    # three judge calls per case, sample indices 0-2, all at the repeat temperature
    assert noisy.calls_per_answer() == {a: [0, 1, 2] for a in REPEAT_SCORES}
    assert {c["temperature"] for c in noisy.calls()} == {0.7}
    assert calls_in_head(result) == 12 and "verdicts: 4" in head(result)
    rows = noisy.results()
    props = by_case(case_properties(ET.parse(noisy.path / "junit.xml").getroot()))
    for answer, raw in REPEAT_SCORES.items():
        samples = normalized(raw, 3)
        row = rows[answer]
        assert row["samples"] == pytest.approx(samples)
        assert row["score"] == pytest.approx(sum(samples) / 3, abs=1e-6)
        assert row["passed"] is (sum(samples) / 3 >= 0.5)
        assert props[answer]["llm.correctness.samples"] == ",".join(f"{s:.4f}" for s in samples)
        assert props[answer]["llm.correctness.score"] == f"{sum(samples) / 3:.4f}"


def test_repeat_samples_are_cached_per_sample_index(noisy: Noisy) -> None:
    noisy.suite(REPEAT_SCORES)
    noisy.run("--llm-repeat", "2", cache="rw")
    assert noisy.calls_per_answer() == {a: [0, 1] for a in REPEAT_SCORES}
    # K=3 after K=2: samples 0 and 1 come from the cache, only sample 2 is asked for
    result = noisy.run("--llm-repeat", "3", "--llm-results", "results.jsonl", cache="rw")
    assert noisy.calls_per_answer() == {a: [2] for a in REPEAT_SCORES}
    assert calls_in_head(result) == 4
    assert all(row["samples"] == pytest.approx(normalized(REPEAT_SCORES[a], 3))
               for a, row in noisy.results().items())
    # and a rerun is all cache: no judge call, every verdict cached
    again = noisy.run("--llm-repeat", "3", "--llm-results", "results.jsonl", cache="rw")
    assert noisy.calls() == []
    assert calls_in_head(again) == 0 and "from cache: 4" in head(again)
    assert all(row["cached"] is True for row in noisy.results().values())
    assert outcomes(again) == outcomes(result)


LATE_CALLBACKS = """
import time
from concurrent.futures import Future

_original = Future._invoke_callbacks


def _late(self):
    time.sleep(0.05)  # a loaded machine: the worker thread runs the done-callbacks late
    _original(self)


def pytest_configure(config):
    Future._invoke_callbacks = _late


def pytest_unconfigure(config):
    Future._invoke_callbacks = _original
"""


def test_results_rows_do_not_wait_for_late_done_callbacks(noisy: Noisy) -> None:
    """With concurrent judging the rows were written only by each verdict's done-callback on the
    worker thread: one that ran after the session closed the results file lost its row."""
    noisy.suite(KOFN_SCORES)
    noisy.pytester.makepyfile(conftest=JUDGE_CONFTEST + LATE_CALLBACKS)
    result = noisy.run("--llm-repeat", "3", "--llm-results", "results.jsonl", "--llm-concurrency", "4")
    assert outcomes(result)["passed"] == {"wobbly", "spiky"}  # by the mean: .533 and .6
    rows = noisy.results()
    assert set(rows) == set(KOFN_SCORES) and all(len(r["samples"]) == 3 for r in rows.values())


def test_repeat_temperature_option(noisy: Noisy) -> None:
    noisy.suite({"solid": SOLID})
    noisy.run("--llm-repeat", "2", "--llm-repeat-temperature", "0.3")
    assert [c["temperature"] for c in noisy.calls()] == [0.3, 0.3]
    noisy.run()  # without repeats: one greedy call
    assert [(c["index"], c["temperature"]) for c in noisy.calls()] == [(0, 0.0)]


# -- instability ------------------------------------------------------------------------
@pytest.mark.parametrize("family", ["xunit1", "xunit2"])
def test_unstable_cases_in_summary_junit_and_results(noisy: Noisy, family: str) -> None:
    noisy.suite(REPEAT_SCORES)
    result = noisy.run("--llm-repeat", "3", "--llm-results", "results.jsonl", "--junitxml", "junit.xml",
                       "-o", f"junit_family={family}")
    unstable = {"wobbly", "wobblylow"}  # samples on both sides of 0.5; solid and bad agree
    assert summary_table(result)["correctness"]["unstable"] == "2"
    rows = noisy.results()
    assert {a for a, row in rows.items() if row["unstable"] is True} == unstable
    assert {a for a, row in rows.items() if row["unstable"] is False} == {"solid", "bad"}
    assert all(row["decision"] == "mean of 3 samples" for row in rows.values())
    root = ET.parse(noisy.path / "junit.xml").getroot()
    props = by_case(case_properties(root) if family == "xunit1" else case_system_out(root))
    assert {a for a, p in props.items() if p["llm.correctness.unstable"] == "true"} == unstable
    assert {a for a, p in props.items() if p["llm.correctness.unstable"] == "false"} == {"solid", "bad"}
    assert all(p["llm.correctness.decision"] == "mean of 3 samples" for p in props.values())


def test_unstable_column_in_csv_results(noisy: Noisy) -> None:
    noisy.suite(REPEAT_SCORES)
    noisy.run("--llm-repeat", "3", "--llm-results", "results.csv")
    rows = {case_id(r["test_id"]): r for r in read_result_rows(noisy.path / "results.csv")}
    assert {a: r["unstable"] for a, r in rows.items()} == {
        "solid": "False", "bad": "False", "wobbly": "True", "wobblylow": "True"}
    assert json.loads(rows["wobbly"]["samples"]) == pytest.approx([0.6, 0.4, 0.6])
    assert rows["wobbly"]["decision"] == "mean of 3 samples"


def test_single_verdicts_are_never_unstable(noisy: Noisy) -> None:
    noisy.suite(REPEAT_SCORES)
    result = noisy.run("--llm-results", "results.jsonl", "--junitxml", "junit.xml", "-o", "junit_family=xunit1")
    assert summary_table(result)["correctness"]["unstable"] == "0"
    rows = noisy.results()
    assert all(row["unstable"] is False and row["samples"] is None for row in rows.values())
    assert all(row["decision"] == "single verdict" for row in rows.values())
    props = by_case(case_properties(ET.parse(noisy.path / "junit.xml").getroot()))
    assert all("llm.correctness.samples" not in p and "llm.correctness.unstable" not in p for p in props.values())


# -- --llm-repeat auto ------------------------------------------------------------------
AUTO_SCORES = {"solid": SOLID, "bad": BAD, "wobbly": WOBBLY, "wobblylow": WOBBLY_LOW, "settles": SETTLES}

AUTO_TEST = CASES_TEST + '''

def test_check_metric(assert_llm_score):
    assert_llm_score("Paris", metric="contains", expected="Paris")  # no judge: never repeated


def test_fixed_samples(assert_llm_score):
    assert_llm_score("fixed", input="What is it?", expected="The reference answer.", samples=2)  # not adaptive
'''


@pytest.mark.parametrize(("repeat_max", "drawn"), [
    # a judge without logprobs gives no spread with one sample, so every case takes 2; then the
    # t interval of the samples decides: solid (1.0, 1.0) and bad (0, 0) are settled at 2;
    # settles (1.0, .8) straddles at 2 (t=12.7) but not at 3 (.933 +- .287); wobbly and
    # wobblylow straddle up to the budget
    ("5", {"solid": 2, "bad": 2, "settles": 3, "wobbly": 5, "wobblylow": 5}),
    ("3", {"solid": 2, "bad": 2, "settles": 3, "wobbly": 3, "wobblylow": 3}),
])
def test_adaptive_repeats_sample_only_straddling_cases(noisy: Noisy, repeat_max: str, drawn: dict[str, int]) -> None:
    noisy.suite({**AUTO_SCORES, "fixed": SOLID}, cases={a: a for a in AUTO_SCORES}, test=AUTO_TEST)
    result = noisy.run("--llm-repeat", "auto", "--llm-repeat-max", repeat_max, "--llm-results", "results.jsonl")
    assert noisy.calls_per_answer() == {"fixed": [0, 1], **{a: list(range(n)) for a, n in drawn.items()}}
    rows = noisy.results()
    for answer, n in drawn.items():
        assert rows[answer]["samples"] == pytest.approx(normalized(AUTO_SCORES[answer], n))
        assert rows[answer]["decision"] == f"mean of {n} samples, adaptive (at most {repeat_max})"
    assert rows["test_fixed_samples"]["decision"] == "mean of 2 samples"
    assert rows["test_check_metric"]["decision"] == "single verdict"
    total = sum(drawn.values())
    # the check metric costs nothing either way; samples=2 is fixed by the test, not adaptive
    budget = int(repeat_max) * len(drawn)
    assert calls_in_head(result) == total + 2
    lines = summary_section(result)
    assert (f"adaptive repeats: {total} samples drawn; a fixed {repeat_max} per verdict would take "
            f"{budget} ({budget - total} judge calls saved)") in lines
    assert summary_table(result)["correctness"]["unstable"] == "2"


def test_adaptive_line_only_with_auto(noisy: Noisy) -> None:
    noisy.suite(AUTO_SCORES)
    result = noisy.run("--llm-repeat", "3")
    assert not any(line.startswith("adaptive repeats") for line in summary_section(result))


NEAR_ROWS = [
    *QA_ROWS[:3],  # capital (5), boil (1), planet (5): clearly decided
    {"id": "near", "input": "What is the capital of France?", "expected_output": "Paris is the capital of France.",
     "answer": "Paris is a capital city."},  # overlap 2/3 -> rubric 3, weighted 2.9 -> .58 vs .6
]


def test_adaptive_with_logprobs_clear_cases_take_one_sample(llm: LLMRun) -> None:
    """The fake server reports the score token's probabilities (.7 / .2 / .1 around its pick):
    a probability-weighted score more than two of its own standard deviations from the threshold
    is settled by one call; the near case (.58 +- .11 vs .6) takes a second sample."""
    llm.qa_suite(rows=NEAR_ROWS)
    result = llm.run("--llm-repeat", "auto", "--llm-results", "results.jsonl")
    assert llm.server.request_count == 5
    assert all(body.get("logprobs") for body in llm.server.requests)
    rows = {case_id(r["test_id"]): r for r in llm.results()}
    assert {k: len(r["samples"]) for k, r in rows.items()} == {"capital": 1, "boil": 1, "planet": 1, "near": 2}
    assert rows["near"]["score"] == pytest.approx(0.58, abs=2e-3)
    assert rows["capital"]["score"] == pytest.approx(0.918, abs=1e-3)  # (5*.7 + 4*.2 + 3*.1) / 5 / ~1
    assert outcomes(result) == {"passed": {"capital", "planet"}, "failed": {"boil", "near"}}
    assert ("adaptive repeats: 5 samples drawn; a fixed 5 per verdict would take 20 (15 judge calls saved)"
            in summary_section(result))


# -- k-of-n gating ----------------------------------------------------------------------
#: with samples=3, min_passes=2 at threshold .5: spiky's mean (.6) passes but only 1 sample does;
#: dips' mean (.4) fails but 2 samples pass
KOFN_SCORES = {"wobbly": WOBBLY, "spiky": [5, 2, 2], "dips": [3, 3, 0], "bad": BAD}
KOFN_PASSES = {"wobbly": 2, "spiky": 1, "dips": 2, "bad": 0}

KOFN_ARGUMENT = CASES_TEST.replace('threshold=0.5)', 'threshold=0.5, samples=3, min_passes=2)')
KOFN_MARKER = CASES_TEST.replace(
    "@pytest.mark.parametrize", "@pytest.mark.llm_repeat(3, min_passes=2)\n@pytest.mark.parametrize")
KOFN_MARKER_KWARGS = CASES_TEST.replace(
    "@pytest.mark.parametrize", "@pytest.mark.llm_repeat(samples=3, min_passes=2)\n@pytest.mark.parametrize")
KOFN_MARKER_CLI = CASES_TEST.replace(
    "@pytest.mark.parametrize", "@pytest.mark.llm_repeat(min_passes=2)\n@pytest.mark.parametrize")


@pytest.mark.parametrize(("test", "extra"), [
    pytest.param(KOFN_ARGUMENT, [], id="argument"),
    pytest.param(KOFN_MARKER, [], id="marker"),
    pytest.param(KOFN_MARKER_KWARGS, [], id="marker-kwargs"),
    pytest.param(KOFN_MARKER_CLI, ["--llm-repeat", "3"], id="marker-min-passes-and-cli-repeat"),
])
def test_min_passes_decides_k_of_n(noisy: Noisy, test: str, extra: list[str]) -> None:
    assert test != CASES_TEST
    noisy.suite(KOFN_SCORES, test=test)
    result = noisy.run("--llm-results", "results.jsonl", "-v", *extra)  # -v: the k-of-n block
    assert outcomes(result) == {"passed": {"wobbly", "dips"}, "failed": {"spiky", "bad"}}
    assert noisy.calls_per_answer() == {a: [0, 1, 2] for a in KOFN_SCORES}
    rows = noisy.results()
    for answer, passes in KOFN_PASSES.items():
        samples = normalized(KOFN_SCORES[answer], 3)
        assert rows[answer]["samples"] == pytest.approx(samples)
        assert rows[answer]["score"] == pytest.approx(sum(samples) / 3, abs=1e-6)  # the score stays the mean
        assert rows[answer]["decision"] == f"{passes} of 3 samples passed (need 2)"
        assert rows[answer]["passed"] is (passes >= 2)
    # the failure says how it was decided, not that a mean of .6 is "below" .5
    spiky = failure_messages(result)["test_suite.py::test_case[spiky]"]
    assert "1 of 3 samples passed (need 2)" in spiky and "below threshold" not in spiky
    assert "samples: 1.00, 0.40, 0.40" in spiky
    # and so does the summary, for every case decided k-of-n
    lines = summary_section(result)
    start = lines.index("decided k-of-n (min_passes) (4):")
    decided = {case_id(line.split()[0]): line for line in lines[start + 1:start + 5]}
    assert decided["dips"].split()[1:] == ["correctness=0.40", "passed:", "2", "of", "3", "samples", "passed",
                                           "(need", "2)"]
    assert "failed: 1 of 3 samples passed (need 2)" in decided["spiky"]
    failures = lines[lines.index("lowest-scoring failures (2 of 2):") + 1:]
    assert any("test_case[spiky]" in line and "[1 of 3 samples passed (need 2)]" in line for line in failures)


def test_min_passes_more_than_cli_repeat_takes_min_passes_samples(noisy: Noisy) -> None:
    noisy.suite({"wobbly": WOBBLY}, test=KOFN_MARKER_CLI)
    result = noisy.run("--llm-results", "results.jsonl")  # --llm-repeat 1: min_passes=2 needs 2 samples
    assert noisy.calls_per_answer() == {"wobbly": [0, 1]}
    assert noisy.results()["wobbly"]["decision"] == "1 of 2 samples passed (need 2)"
    assert outcomes(result) == {"failed": {"wobbly"}}


INVALID = '''
import pytest

@pytest.mark.parametrize("kwargs", [
    {"samples": 0}, {"samples": "3"}, {"samples": True}, {"min_passes": 0}, {"min_passes": 2.5},
    {"samples": 3, "min_passes": 4},
], ids=["samples0", "samples-str", "samples-bool", "min0", "min-float", "min-over-samples"])
def test_bad(kwargs, assert_llm_score):
    assert_llm_score("solid", input="q", expected="r", **kwargs)


@pytest.mark.llm_repeat(0)
def test_marker_zero(assert_llm_score):
    assert_llm_score("solid", input="q", expected="r")


@pytest.mark.llm_repeat(3, min_pass=2)
def test_marker_typo(assert_llm_score):
    assert_llm_score("solid", input="q", expected="r")


@pytest.mark.llm_repeat(2, 3)
def test_marker_two_args(assert_llm_score):
    assert_llm_score("solid", input="q", expected="r")
'''


def test_invalid_samples_and_min_passes_are_clear_errors(noisy: Noisy) -> None:
    noisy.suite({"solid": SOLID}, test=INVALID)
    result = noisy.run()
    assert noisy.calls() == []  # nothing judged
    messages = {case_id(k): v for k, v in failure_messages(result).items()}
    assert set(messages) == {"samples0", "samples-str", "samples-bool", "min0", "min-float", "min-over-samples",
                             "test_marker_zero", "test_marker_typo", "test_marker_two_args"}
    assert all("ConfigError" in m for m in messages.values()), messages
    assert "samples must be a positive integer, got 0" in messages["samples0"]
    assert "samples must be a positive integer, got '3'" in messages["samples-str"]
    assert "samples must be a positive integer, got True" in messages["samples-bool"]
    assert "min_passes must be a positive integer, got 0" in messages["min0"]
    assert "min_passes must be a positive integer, got 2.5" in messages["min-float"]
    assert "min_passes=4 is more than samples=3" in messages["min-over-samples"]
    assert "llm_repeat" in messages["test_marker_zero"] and "got 0" in messages["test_marker_zero"]
    assert "llm_repeat" in messages["test_marker_typo"] and "min_pass" in messages["test_marker_typo"]
    assert "llm_repeat" in messages["test_marker_two_args"]


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--llm-repeat", "0", "expected a positive integer, got '0'"),
    ("--llm-repeat", "often", "expected a positive integer, got 'often'"),
    ("--llm-repeat-max", "0", "expected a positive integer, got '0'"),
    ("--llm-repeat-temperature", "-1", "expected a number >= 0, got '-1'"),
    ("--llm-noise-floor", "-2", "expected an integer >= 0, got '-2'"),
    ("--llm-regression-tolerance", "x", "expected a number >= 0, got 'x'"),
    ("--llm-preflight-min", "1.5", "expected a number between 0 and 1, got '1.5'"),
])
def test_invalid_option_values_are_usage_errors(noisy: Noisy, option: str, value: str, message: str) -> None:
    noisy.suite({"solid": SOLID})
    result = noisy.run(option, value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"argument {option}: {message}" in result.stderr.str()


# -- --llm-noise-floor ------------------------------------------------------------------
NOISE_TEST = CASES_TEST + '''

@pytest.mark.parametrize("answer", ["c1", "c2", "c3"])
def test_criteria(answer, assert_llm_score):
    assert_llm_score(answer, metric="criteria", criteria="Is it good?", input="What is it?", threshold=0.5)
'''
#: noise re-judgements are sample indices 1000-1002: WOBBLY gives raw 2, 3, 3 (of 5) -> sd .1155;
#: [6, 9, 6] (criteria, of 10) gives 9, 6, 6 -> sd .1732
NOISE_SCORES = {"n1": WOBBLY, "n2": WOBBLY, "n3": WOBBLY, "c1": [6, 9, 6], "c2": [6, 9, 6], "c3": [6, 9, 6]}


@pytest.mark.parametrize("concurrency", ["1", "16"])
def test_noise_floor_rejudges_n_cases_per_metric(noisy: Noisy, concurrency: str) -> None:
    noisy.suite(NOISE_SCORES, cases={k: k for k in ("n1", "n2", "n3")}, test=NOISE_TEST)
    result = noisy.run("--llm-noise-floor", "2", "--llm-concurrency", concurrency)
    calls = noisy.calls()
    # one verdict per case (greedy), plus 3 re-judgements (at the repeat temperature) of 2 cases per metric
    assert sorted((c["index"], c["temperature"]) for c in calls if c["index"] < 1000) == [(0, 0.0)] * 6
    rejudged = noisy.calls_per_answer()
    rejudged = {a: [i for i in v if i >= 1000] for a, v in rejudged.items()}
    assert sorted(len(v) for v in rejudged.values()) == [0, 0, 3, 3, 3, 3]
    assert all(v in ([], [1000, 1001, 1002]) for v in rejudged.values())
    assert sum(1 for a, v in rejudged.items() if v and a.startswith("n")) == 2
    assert {c["temperature"] for c in calls if c["index"] >= 1000} == {0.7}
    assert calls_in_head(result) == 6 + 2 * 2 * 3
    expected = (f"judge noise floor (sd of re-judging identical answers): correctness "
                f"{math.sqrt(((0.4 - 8 / 15) ** 2 + 2 * (0.6 - 8 / 15) ** 2) / 2):.3f} over 2 cases, criteria "
                f"{math.sqrt(((0.9 - 0.7) ** 2 + 2 * (0.6 - 0.7) ** 2) / 2):.3f} over 2 cases")
    assert expected == ("judge noise floor (sd of re-judging identical answers): correctness 0.115 over 2 cases, "
                        "criteria 0.173 over 2 cases")
    assert expected in summary_section(result)
    # the noise samples do not change the verdicts: sample 0 decides (.6 and .6 pass)
    assert outcomes(result) == {"passed": {"n1", "n2", "n3", "c1", "c2", "c3"}}


def test_noise_floor_with_repeats_uses_its_own_sample_indices(noisy: Noisy) -> None:
    noisy.suite({"n1": WOBBLY, "n2": WOBBLY}, test=CASES_TEST)
    result = noisy.run("--llm-noise-floor", "1", "--llm-repeat", "3", "--llm-concurrency", "1")
    assert noisy.calls_per_answer() == {"n1": [0, 1, 2, 1000, 1001, 1002], "n2": [0, 1, 2]}
    assert calls_in_head(result) == 9
    assert "judge noise floor (sd of re-judging identical answers): correctness 0.115 over 1 cases" \
        in summary_section(result)


def test_no_noise_line_without_the_option(noisy: Noisy) -> None:
    noisy.suite({"n1": WOBBLY})
    result = noisy.run()
    assert not any("noise floor" in line for line in summary_section(result))
    assert all(c["index"] < 1000 for c in noisy.calls())


# -- the summary's intervals ------------------------------------------------------------
INTERVAL_TEST = CASES_TEST + '''

@pytest.mark.parametrize("answer", ["c1", "c2"])
def test_criteria(answer, assert_llm_score):
    assert_llm_score(answer, metric="criteria", criteria="Is it good?", input="What is it?", threshold=0.5)


def test_check_metric(assert_llm_score):
    assert_llm_score("Paris", metric="contains", expected="Paris")
'''
T_975 = {4: 2.776445, 1: 12.706205}  # Student t quantiles


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    p = k / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return center - half, center + half


def t_interval(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = T_975[n - 1] * sd / math.sqrt(n)
    return max(0.0, mean - half), min(1.0, mean + half)


def test_summary_intervals_per_metric(noisy: Noisy) -> None:
    scores = {"s5": [5], "s4": [4], "s3": [3], "s2": [2], "s0": [0], "c1": [10], "c2": [0]}
    noisy.suite(scores, cases={k: k for k in ("s5", "s4", "s3", "s2", "s0")}, test=INTERVAL_TEST)
    result = noisy.run()
    table = summary_table(result)
    correctness = [1.0, 0.8, 0.6, 0.4, 0.0]  # 3 of 5 pass at .5
    low, high = wilson(3, 5)
    assert (round(low, 2), round(high, 2)) == (0.23, 0.88)  # by hand
    assert table["correctness"]["pass rate"] == f"60% [{low:.0%}, {high:.0%}]" == "60% [23%, 88%]"
    low, high = t_interval(correctness)
    assert table["correctness"]["mean score"] == f"0.56 [{low:.2f}, {high:.2f}]" == "0.56 [0.08, 1.00]"
    low, high = wilson(1, 2)
    assert table["criteria"]["pass rate"] == f"50% [{low:.0%}, {high:.0%}]" == "50% [9%, 91%]"
    assert table["criteria"]["mean score"] == "0.50 [0.00, 1.00]"  # t(1) = 12.7: the whole range
    # one case: a Wilson interval, but no interval of the mean
    assert table["contains"]["pass rate"] == f"100% [{wilson(1, 1)[0]:.0%}, 100%]" == "100% [21%, 100%]"
    assert table["contains"]["mean score"] == "1.00"
    assert ("(pass rate: Wilson interval; mean score: Student-t interval over cases; "
            "unstable: samples on both sides of the threshold)") in summary_section(result)


# -- baselines --------------------------------------------------------------------------
#: 15 cases all at 5 of 5; the worse app's answers to a third of them (5) get 4 of 5: still
#: passing at .5, so only the regression check can fail the session
BASE_CASES = {f"q{i:02d}": f"a{i:02d}" for i in range(1, 16)}
BASE_SCORES = {**{a: [5] for a in BASE_CASES.values()}, **{f"{a}-worse": [4] for a in BASE_CASES.values()}}
WORSE_CASES = {k: (f"{a}-worse" if int(k[1:]) <= 5 else a) for k, a in BASE_CASES.items()}


def test_save_baseline_then_compare_same_and_worse_app(noisy: Noisy) -> None:
    noisy.suite(BASE_SCORES, cases=BASE_CASES)
    saved = noisy.run("--llm-save-baseline", "out/base.json")
    assert saved.ret == pytest.ExitCode.OK
    path = noisy.path / "out" / "base.json"
    assert f"baseline saved to {path}" in summary_section(saved)
    data = json.loads(path.read_text())
    assert data["format"] == "pytest-llmjudge-baseline" and data["version"] == 1
    assert data["settings"]["judge"] == "fake:noisy" and data["settings"]["repeat"] == "1"
    assert {case_id(c["test_id"]) for c in data["cases"]} == set(BASE_CASES)
    assert all(c["metric"] == "correctness" and c["score"] == 1.0 and c["passed"] is True and c["samples"] is None
               and c["threshold"] == 0.5 for c in data["cases"])

    same = noisy.run("--llm-baseline", "out/base.json")
    assert same.ret == pytest.ExitCode.OK
    lines = summary_section(same)
    assert f"llmjudge baseline: no regression in 1 metric(s) against {path} (tolerance 0)" in lines
    assert not any("REGRESSED" in line for line in lines)

    noisy.set_cases(WORSE_CASES)
    worse = noisy.run("--llm-baseline", "out/base.json", "-v")  # -v: the comparison table
    worse.assert_outcomes(passed=15)  # every test passes: the session fails on the regression
    assert worse.ret == pytest.ExitCode.TESTS_FAILED
    lines = summary_section(worse)
    [regressed] = [line for line in lines if line.startswith("FAILED")]
    assert regressed.startswith(f"FAILED llmjudge baseline: REGRESSED against {path}: correctness 1.000 -> 0.933, "
                                "diff -0.067 [")
    table = next(line for line in lines if line.startswith("correctness ") and line.endswith("REGRESSED"))
    assert table.split()[1:5] == ["15", "1.000", "0.933", "-0.067"]
    # within a tolerance of .1 the same drop passes
    tolerant = noisy.run("--llm-baseline", "out/base.json", "--llm-regression-tolerance", "0.1")
    assert tolerant.ret == pytest.ExitCode.OK
    assert not any("REGRESSED" in line for line in summary_section(tolerant))


def test_baseline_from_repeated_run_keeps_samples_and_flags_flips(noisy: Noisy) -> None:
    noisy.suite(REPEAT_SCORES)
    noisy.run("--llm-repeat", "3", "--llm-save-baseline", "base.json")
    data = json.loads((noisy.path / "base.json").read_text())
    samples = {case_id(c["test_id"]): c["samples"] for c in data["cases"]}
    assert set(samples) == set(REPEAT_SCORES)
    assert all(samples[a] == pytest.approx(normalized(raw, 3)) for a, raw in REPEAT_SCORES.items())
    noisy.set_cases({"solid": "bad", "bad": "bad", "wobbly": "wobbly", "wobblylow": "solid"})
    result = noisy.run("--llm-repeat", "3", "--llm-baseline", "base.json", "-v")  # -v: flipped cases
    lines = summary_section(result)
    assert "correctness pass->fail (1): test_suite.py::test_case[solid]" in lines
    assert "correctness fail->pass (1): test_suite.py::test_case[wobblylow]" in lines


@pytest.mark.parametrize(("content", "message"), [
    (None, "no such file"),
    ("{not json", "line 1: not valid JSON"),
    ('{"format": "pytest-llmjudge-baseline", "version": 1, "cases": [{"test_id": "t", "metric": "m", "score": 7}]}',
     "cases[0]: score 7.0 is outside 0..1"),
])
def test_bad_baseline_is_a_usage_error_naming_the_file(noisy: Noisy, content: str | None, message: str) -> None:
    noisy.suite({"solid": SOLID})
    if content is not None:
        (noisy.path / "base.json").write_text(content)
    result = noisy.run("--llm-baseline", "base.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert noisy.calls() == []  # before any test ran
    err = result.stderr.str()
    assert f"--llm-baseline: {noisy.path / 'base.json'}: " in err and message in err, err


# -- --llm-html -------------------------------------------------------------------------
class _Tags(HTMLParser):
    """Every start tag with its attributes, and the text of each case row's cells."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.rows: list[dict[str, Any]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "tr" and "data-index" in attributes:
            self.rows.append({"attrs": attributes, "cells": []})
        elif tag == "td" and self.rows and self._cell is None and "data-index" in self.rows[-1]["attrs"]:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.rows[-1]["cells"].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self.rows:
            self.rows[-1]["attrs"]["data-index-done"] = "1"

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data + " ")


def test_html_report_is_self_contained_with_rows_and_comparison(noisy: Noisy) -> None:
    noisy.suite(REPEAT_SCORES)
    noisy.run("--llm-repeat", "3", "--llm-save-baseline", "base.json")
    noisy.set_cases({"solid": "bad", "bad": "bad", "wobbly": "wobbly", "wobblylow": "wobblylow"})
    result = noisy.run("--llm-repeat", "3", "--llm-baseline", "base.json", "--llm-html", "reports/run.html")
    path = noisy.path / "reports" / "run.html"
    assert f"HTML report written to {path}" in summary_section(result)
    html = path.read_text(encoding="utf-8")
    # self-contained: no network reference of any kind, no external stylesheet, script or image
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    parser = _Tags()
    parser.feed(html)
    assert not [t for t, _ in parser.tags if t in ("link", "iframe", "object", "embed")]
    for tag, attrs in parser.tags:
        for name in ("src", "href", "action"):
            value = attrs.get(name)
            assert value is None or value.startswith(("#", "data:")), (tag, attrs)
    assert "@import" not in html and not re.search(r"url\((?!\s*['\"]?data:)", html)
    assert sum(1 for t, a in parser.tags if t == "style") >= 1 and ("script", {}) in parser.tags  # inline
    # one row per verdict: test id, output, samples, decision, unstable badge
    rows = {case_id(r["cells"][0]): r for r in parser.rows if r["cells"] and "::" in r["cells"][0]}
    assert set(rows) == set(REPEAT_SCORES)
    cells = dict(zip(["test_id", "metric", "score", "samples", "passed", "unstable", "input", "output",
                      "reference", "reason"], rows["wobbly"]["cells"]))
    assert cells["metric"] == "correctness" and cells["score"].startswith("0.533")
    assert cells["samples"] == "0.60 0.40 0.60"
    assert cells["passed"] == "passed mean of 3 samples" and cells["unstable"] == "unstable"
    assert cells["input"] == "What is it?" and cells["output"] == "wobbly"
    assert cells["reference"] == "The reference answer."
    assert cells["reason"].startswith("graded wobbly (sample")
    assert rows["solid"]["cells"][7] == "bad" and rows["solid"]["attrs"]["data-passed"] == "false"
    assert {a for a, r in rows.items() if r["attrs"]["data-unstable"] == "true"} == {"wobbly", "wobblylow"}
    # the comparison with the baseline, with the flipped case
    assert 'id="comparison"' in html and "test_suite.py::test_case[solid]" in html.split('id="comparison"')[1]


# -- --llm-preflight --------------------------------------------------------------------
def preflight_rows(**labels: Any) -> list[dict[str, Any]]:
    """The QA rows (``answer`` is graded) with a label column per row id."""
    rows = []
    for row in QA_ROWS:
        out = dict(row)
        for column, values in labels.items():
            out[column] = values[row["id"]]
        rows.append(out)
    return rows


AGREE = {r["id"]: ("pass" if r["id"] in QA_PASS else "fail") for r in QA_ROWS}
#: normalized, except planet's 4 (on the 0-5 rubric: .8); the fake server scores .92 / .18 / .08
SCORES_AGREE = {"capital": 1.0, "boil": 0.2, "planet": 4, "author": 0.2, "speed": 1.0, "river": 0.0}


@pytest.mark.parametrize("column", ["label", "expected_score"])
def test_preflight_agreeing_judge_runs_the_suite(llm: LLMRun, column: str) -> None:
    llm.qa_suite()
    labels = AGREE if column == "label" else SCORES_AGREE
    write_jsonl(llm.path / "preflight.jsonl", preflight_rows(**{column: labels}))
    result = llm.run("--llm-preflight", "preflight.jsonl")
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the suite ran: three of its cases fail
    assert outcomes(result) == {"passed": QA_PASS, "failed": {"boil", "author", "river"}}
    assert llm.server.request_count == 12  # six preflight rows, then six tests
    assert (f"llmjudge preflight: judge openai:fake agreed with 6 of 6 labelled cases in "
            f"{llm.path / 'preflight.jsonl'} (100%; minimum 80%)") in summary_section(result)


@pytest.mark.parametrize(("column", "labels"), [
    ("label", {**AGREE, "capital": "fail", "boil": "pass"}),
    ("expected_score", {**SCORES_AGREE, "capital": 0.2, "boil": 5}),
])
def test_preflight_disagreeing_judge_stops_before_any_test(llm: LLMRun, column: str, labels: dict) -> None:
    llm.qa_suite()
    write_jsonl(llm.path / "preflight.jsonl", preflight_rows(**{column: labels}))
    result = llm.run("--llm-preflight", "preflight.jsonl", "--llm-results", "results.jsonl")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert not result.reprec.getreports("pytest_runtest_logreport")  # type: ignore[attr-defined]
    assert llm.server.request_count == 6  # the preflight only
    assert not llm.results()
    out = result.stdout.str() + result.stderr.str()
    assert "agreed with 4 of 6 labelled cases" in out and "(67%; minimum 80%)" in out
    assert "stopping before any test runs" in out
    lines = out.splitlines()
    start = lines.index("cases it got wrong:")
    wrong = lines[start + 1:start + 3]  # by the id column, with the row
    assert wrong[0].startswith("  capital (row1) [correctness]: ")
    assert wrong[1].startswith("  boil (row2) [correctness]: ")
    assert ("labelled fail, judge scored 0.92 (pass at 0.50)" if column == "label"
            else "expected score 0.20, judge scored 0.92") in wrong[0]
    assert lines[start + 3].startswith("fix: ")


def test_preflight_minimum_option(llm: LLMRun) -> None:
    llm.qa_suite()
    write_jsonl(llm.path / "preflight.jsonl", preflight_rows(label={**AGREE, "capital": "fail", "boil": "pass"}))
    result = llm.run("--llm-preflight", "preflight.jsonl", "--llm-preflight-min", "0.6")
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # 67% >= 60%: the suite runs
    assert any("agreed with 4 of 6 labelled cases" in line and "(67%; minimum 60%)" in line
               for line in summary_section(result))


@pytest.mark.parametrize(("rows", "message"), [
    ([{"answer": "a", "label": "pass"}, {"answer": "b"}],
     "preflight.jsonl row 2: needs a `label` or an `expected_score`"),
    ([{"answer": "a", "label": "maybe"}], "preflight.jsonl row 1: label 'maybe' is not pass/fail"),
    ([{"answer": "a", "expected_score": "high"}], "preflight.jsonl row 1: expected_score 'high' is not a number"),
    ([{"input": "q", "label": "pass"}], "preflight.jsonl row 1: needs the answer to grade"),
    ([{"answer": "a", "label": "pass"}, {"answer": "a", "label": "pass", "metric": "corectness"}],
     "preflight.jsonl row 2: unknown metric 'corectness'"),
    ([{"answer": "a", "label": "pass", "threshold": "high"}], "preflight.jsonl row 1: threshold 'high' is not"),
    ([{"answer": "a", "label": "pass", "threshold": 7}], "preflight.jsonl row 1: threshold 7 is not"),
    (None, "preflight.jsonl"),
])
def test_malformed_preflight_file_is_a_usage_error(llm: LLMRun, rows: list | None, message: str) -> None:
    llm.qa_suite()
    if rows is not None:
        write_jsonl(llm.path / "preflight.jsonl", rows)
    result = llm.run("--llm-preflight", "preflight.jsonl")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert not result.reprec.getreports("pytest_runtest_logreport")  # type: ignore[attr-defined]
    err = result.stderr.str()
    assert "--llm-preflight:" in err and message in err, err


# -- xdist ------------------------------------------------------------------------------
def test_xdist_repeat_and_baseline(noisy: Noisy) -> None:
    """-n 2: every worker samples 3 times per case; the controller writes the baseline from all
    workers' verdicts and compares against it."""
    pytest.importorskip("xdist")
    noisy.suite(BASE_SCORES, cases=BASE_CASES)
    args = ("-n", "2", "-v", "--llm-repeat", "3", "--llm-results", "results.jsonl")
    saved = noisy.run_subprocess(*args, "--llm-save-baseline", "base.json")
    saved.assert_outcomes(passed=15)
    assert saved.ret == pytest.ExitCode.OK
    out = saved.stdout.str()
    assert re.search(r"^\[gw0\] .*PASSED", out, re.M) and re.search(r"^\[gw1\] .*PASSED", out, re.M)  # both judged
    assert noisy.calls_per_answer() == {a: [0, 1, 2] for a in BASE_CASES.values()}
    assert calls_in_head(saved) == 45 and "verdicts: 15" in head(saved)
    assert all(len(row["samples"]) == 3 for row in noisy.results().values())
    data = json.loads((noisy.path / "base.json").read_text())
    assert sorted(case_id(c["test_id"]) for c in data["cases"]) == sorted(BASE_CASES)
    assert all(c["samples"] == [1.0, 1.0, 1.0] for c in data["cases"])

    noisy.set_cases(WORSE_CASES)
    worse = noisy.run_subprocess(*args, "--llm-baseline", "base.json")
    worse.assert_outcomes(passed=15)
    assert worse.ret == pytest.ExitCode.TESTS_FAILED
    assert any(line.startswith("FAILED llmjudge baseline: REGRESSED against ") and "1.000 -> 0.933" in line
               for line in summary_section(worse))
