"""Issue 3: ``assert_llm_score`` against the real openai / huggingface_hub clients and the fake
server: verdicts, failure messages, judge errors, retries, structured-output fallbacks, timeouts,
custom metrics and logprob-weighted scores."""

from __future__ import annotations

import json

import pytest
from conftest import LLMRun, failure_messages, outcomes, summary_section, summary_table

from pytest_llmjudge.testing.fake_server import FakeJudgeServer

BACKENDS = ["openai", "hf"]
MODES = [pytest.param("1", id="sequential"), pytest.param("16", id="concurrent")]

ONE_TEST = """
import json
from pytest_llmjudge import Verdict

def test_one(assert_llm_score):
    v = assert_llm_score("The capital of France is Paris.", input="What is the capital of France?",
                         expected="Paris is the capital of France.", threshold=0.5)
    assert isinstance(v.score, float)
    print("VERDICT " + json.dumps(v.model_dump(mode="json")))
"""

FIRE_AND_FORGET = """
def test_one(assert_llm_score):
    assert_llm_score("The capital of France is Paris.", input="What is the capital of France?",
                     expected="Paris is the capital of France.", threshold=0.5)
"""


def printed_verdicts(result: pytest.RunResult) -> list[dict]:
    return [json.loads(line.split("VERDICT ", 1)[1]) for line in result.outlines if "VERDICT {" in line]


def request_format(body: dict) -> str | None:
    rf = body.get("response_format")
    return rf.get("type") if isinstance(rf, dict) else None


def last_user(body: dict) -> str:
    return [m for m in body["messages"] if m["role"] == "user"][-1]["content"]


# -- verdicts and LLMScoreError ---------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_verdict_fields_on_success(llm: LLMRun, backend: str) -> None:
    llm.makepyfile(ONE_TEST)
    result = llm.run("-s", backend=backend)
    result.assert_outcomes(passed=1)
    [v] = printed_verdicts(result)
    assert v["metric"] == "correctness"
    assert 0.5 <= v["score"] <= 1.0
    assert v["scale"] == [0.0, 5.0] and 0 <= v["raw_score"] <= 5
    assert abs(v["score"] - v["raw_score"] / 5) < 1e-9
    assert v["reason"].startswith("overlap")
    assert v["threshold"] == 0.5 and v["passed"] is True
    assert v["judge"] == f"{backend}:fake"
    assert v["cached"] is False
    assert v["latency_s"] > 0
    assert v["usage"]["total_tokens"] == v["usage"]["prompt_tokens"] + v["usage"]["completion_tokens"] > 0
    assert llm.server.request_count == 1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("concurrency", MODES)
def test_low_score_raises_llmscoreerror_with_metric_score_threshold_reason_judge(
    llm: LLMRun, backend: str, concurrency: str
) -> None:
    llm.makepyfile(
        """
        from pytest_llmjudge import LLMScoreError

        def test_wrong(assert_llm_score):
            assert_llm_score("Berlin.", input="What is the capital of France?",
                             expected="Paris is the capital of France.", threshold=0.6)

        def test_is_assertion_error(assert_llm_score):
            try:
                assert_llm_score("Berlin.", input="What is the capital of France?",
                                 expected="Paris is the capital of France.", threshold=0.6).score
            except AssertionError as exc:
                assert isinstance(exc, LLMScoreError)
                assert exc.verdict.passed is False and exc.verdict.score < 0.6
            else:
                raise RuntimeError("no LLMScoreError")
        """
    )
    result = llm.run("--llm-concurrency", concurrency, backend=backend)
    assert outcomes(result) == {"failed": {"test_wrong"}, "passed": {"test_is_assertion_error"}}
    [message] = failure_messages(result).values()
    assert "pytest_llmjudge.errors.LLMScoreError: correctness score 0.0" in message
    assert "is below threshold 0.600" in message
    assert f"judge: {backend}:fake" in message
    assert "reason: overlap 0.00 with the reference" in message
    assert "(raw 0." in message and "on 0-5)" in message


def test_verbose_lines_show_scores(llm: LLMRun) -> None:
    llm.qa_suite()
    result = llm.run("-v")
    result.stdout.fnmatch_lines([
        "*test_qa[[]capital[]] PASSED [[]correctness=0.9*[]]*",
        "*test_qa[[]boil[]] FAILED [[]correctness=0.*[]]*",
    ])
    llm.makepyfile(
        """
        from pytest_llmjudge.judges import make_judge

        def test_two(assert_llm_score):
            assert_llm_score("Paris is the capital of France.", input="Capital of France?",
                             expected="Paris is the capital of France.")
            assert_llm_score("Paris is the capital of France.", metric="toxicity")

        def test_error(assert_llm_score):
            assert_llm_score("x", expected="x", judge=make_judge("openai:fake", base_url="http://127.0.0.1:9/v1",
                                                                 max_retries=0))
        """,
        name="test_more",
    )
    result = llm.run("-v", "test_more.py")
    result.stdout.fnmatch_lines([
        "*test_two PASSED [[]correctness=0.9* toxicity=1.00[]]*",
        "*test_error FAILED [[]correctness=error[]]*",
    ])
    quiet = llm.run("test_qa.py")
    [progress] = [line for line in quiet.outlines if line.startswith("test_qa.py ")]
    assert "correctness" not in progress


# -- judge errors -----------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("concurrency", MODES)
def test_judge_that_keeps_failing_is_a_judge_error_not_a_low_score(
    llm: LLMRun, backend: str, concurrency: str
) -> None:
    llm.qa_suite()
    with FakeJudgeServer() as broken:
        broken.fail_next(500, 20)
        base = broken.url if backend == "openai" else broken.root_url
        llm.makepyfile(
            f"""
            from pytest_llmjudge import JudgeError
            from pytest_llmjudge.judges import make_judge

            BROKEN = make_judge("{backend}:fake", base_url="{base}", max_retries=1)

            def test_a_broken(assert_llm_score):
                assert_llm_score("Paris.", input="Capital of France?", expected="Paris.", judge=BROKEN)

            def test_b_type(assert_llm_score):
                try:
                    assert_llm_score("Paris.", input="Capital of France?", expected="Paris.",
                                     judge=BROKEN).score
                except AssertionError:
                    raise RuntimeError("a judge error must not be an AssertionError")
                except JudgeError as exc:
                    assert "server error 500" in str(exc)
            """,
            name="test_broken",
        )
        result = llm.run("--llm-concurrency", concurrency, "--llm-results", "results.jsonl",
                         "test_broken.py", "test_qa.py", backend=backend)
        assert broken.request_count == 4  # 2 tests x (1 try + 1 retry)
    got = outcomes(result)
    assert "test_a_broken" in got["failed"] and "test_b_type" in got["passed"]
    message = failure_messages(result)["test_broken.py::test_a_broken"]
    assert "JudgeError" in message and "LLMScoreError" not in message
    assert f"{backend}:fake: server error 500" in message and "after 2 attempts" in message
    lines = summary_section(result)
    row = summary_table(result)["correctness"]
    assert (row["cases"], row["passed"], row["judge errors"]) == ("8", "3", "2")
    assert row["pass rate"].startswith("50")  # 3 of 6 judged: the judge errors are not low scores
    assert "judge errors (2), not counted as scores:" in lines
    assert any("test_broken.py::test_a_broken" in line and "server error 500" in line for line in lines)
    assert not any("test_a_broken" in line for line in lines[:lines.index("judge errors (2), not counted as scores:")])
    rows = llm.results()
    errors_rows = [r for r in rows if r["error"]]
    assert {r["test_id"] for r in errors_rows} == {"test_broken.py::test_a_broken", "test_broken.py::test_b_type"}
    assert all(r["score"] is None and "JudgeError" in r["error"] for r in errors_rows)
    assert len(rows) == 8


def test_429_with_retry_after_then_success(llm: LLMRun) -> None:
    llm.makepyfile(ONE_TEST)
    llm.server.fail_next(429, 2, retry_after=0.01)
    result = llm.run("--llm-max-retries", "2")
    result.assert_outcomes(passed=1)
    assert llm.server.request_count == 3


def test_max_retries_bounds_attempts(llm: LLMRun) -> None:
    llm.makepyfile(ONE_TEST)
    llm.server.fail_next(503, 10, retry_after=0)
    result = llm.run("--llm-max-retries", "3")
    result.assert_outcomes(failed=1)
    assert llm.server.request_count == 4
    result.stdout.fnmatch_lines(["*JudgeError: openai:fake: server error 503*after 4 attempts*"])
    llm.server.reset()
    llm.server.fail_next(503, 10, retry_after=0)
    llm.run("--llm-max-retries", "0").assert_outcomes(failed=1)
    assert llm.server.request_count == 1


def test_rate_limits_do_not_spend_max_retries(llm: LLMRun) -> None:
    """A 429 is waited out (its Retry-After) and retried; it is not one of the failures
    --llm-max-retries counts (issue 15 item 5)."""
    llm.makepyfile(ONE_TEST)
    llm.server.fail_next(429, 6, retry_after=0)
    llm.run("--llm-max-retries", "0").assert_outcomes(passed=1)
    assert llm.server.request_count == 7


def test_non_retryable_4xx_is_not_retried(llm: LLMRun) -> None:
    llm.makepyfile(ONE_TEST)
    llm.server.fail_next(401, 5)
    result = llm.run("--llm-max-retries", "3")
    result.assert_outcomes(failed=1)
    assert llm.server.request_count == 1
    result.stdout.fnmatch_lines(["*JudgeError: openai:fake: authentication failed (401)*"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_invalid_json_is_retried_once_with_the_error_shown_then_succeeds(llm: LLMRun, backend: str) -> None:
    llm.makepyfile(ONE_TEST)
    llm.server.script('{"reason": "forgot the score"}')
    result = llm.run("-s", backend=backend)
    result.assert_outcomes(passed=1)
    assert llm.server.request_count == 2
    second = llm.server.requests[1]["messages"]
    assert second[-2] == {"role": "assistant", "content": '{"reason": "forgot the score"}'}
    assert second[-1]["role"] == "user"
    assert "Your reply was not valid" in second[-1]["content"]
    assert "score: Field required" in second[-1]["content"]
    # the first request's messages are repeated unchanged before the correction
    assert second[:-2] == llm.server.requests[0]["messages"]
    [v] = printed_verdicts(result)
    assert v["usage"]["total_tokens"] > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_invalid_json_twice_is_a_judge_error(llm: LLMRun, backend: str) -> None:
    llm.makepyfile(ONE_TEST)
    llm.server.script("I think it is fine.", "Still no JSON, sorry.")
    result = llm.run(backend=backend)
    result.assert_outcomes(failed=1)
    assert llm.server.request_count == 2
    assert "the reply contains no JSON object" in last_user(llm.server.requests[1])
    result.stdout.fnmatch_lines([f"*JudgeError: {backend}:fake gave no valid verdict for correctness*"])
    assert "LLMScoreError" not in result.stdout.str()


def test_schema_rejected_with_400_falls_back_to_json_object_and_remembers(llm: LLMRun) -> None:
    llm.makepyfile(ONE_TEST + ONE_TEST.replace("test_one", "test_two").replace("import json\n", ""))
    llm.server.reject_formats = {"json_schema"}
    result = llm.run("--llm-concurrency", "1")
    result.assert_outcomes(passed=2)
    kinds = [request_format(body) for body in llm.server.requests]
    assert kinds == ["json_schema", "json_object", "json_object"]
    # json_object carries the schema (vLLM / llama.cpp form) and repeats it in the prompt
    assert llm.server.requests[1]["response_format"]["schema"]["title"] == "CorrectnessVerdict"
    assert "JSON schema:" in last_user(llm.server.requests[1])


def test_llamacpp_500_naming_response_format_falls_back(llm: LLMRun) -> None:
    llm.makepyfile(ONE_TEST)
    llm.server.reject_formats = {"json_schema"}
    llm.server.reject_style = "llamacpp"
    result = llm.run("--llm-max-retries", "3")
    result.assert_outcomes(passed=1)
    # no retries of the rejected format: one 500, then the fallback
    assert [request_format(b) for b in llm.server.requests] == ["json_schema", "json_object"]


def test_plain_500_is_retried_not_a_fallback(llm: LLMRun) -> None:
    llm.makepyfile(ONE_TEST)
    llm.server.fail_next(500, 1)
    llm.run("--llm-max-retries", "1").assert_outcomes(passed=1)
    assert [request_format(b) for b in llm.server.requests] == ["json_schema", "json_schema"]


def test_plain_text_fallback_with_tolerant_extraction(llm: LLMRun) -> None:
    llm.makepyfile(ONE_TEST)
    llm.server.reject_formats = {"json_schema", "json_object"}
    result = llm.run("-s")
    result.assert_outcomes(passed=1)
    assert [request_format(b) for b in llm.server.requests] == ["json_schema", "json_object", None]
    assert "JSON schema:" in last_user(llm.server.requests[-1])
    [v] = printed_verdicts(result)
    assert v["score"] > 0.5 and v["reason"].startswith("overlap")


def test_prose_around_json_is_extracted(llm: LLMRun) -> None:
    llm.makepyfile(ONE_TEST)
    llm.server.script('Sure! Here is my verdict:\n```json\n{"reason": "fine", "score": 4}\n```\nHope it helps.')
    result = llm.run("-s")
    result.assert_outcomes(passed=1)
    [v] = printed_verdicts(result)
    assert v["reason"] == "fine" and v["raw_score"] == pytest.approx(4, abs=1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_timeout_is_a_judge_error(llm: LLMRun, backend: str) -> None:
    llm.makepyfile(ONE_TEST)
    llm.server.hang_s = 1.0
    result = llm.run("--llm-timeout", "0.2", "--llm-max-retries", "0", backend=backend)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*JudgeError: {backend}:fake: the request timed out*"])


def test_connection_refused_is_a_judge_error(pytester: pytest.Pytester) -> None:
    with FakeJudgeServer() as dead:
        url = dead.url
    pytester.makepyfile(ONE_TEST)
    result = pytester.runpytest_inprocess("--llm-judge", "openai:fake", "--llm-base-url", url,
                                          "--llm-cache-mode", "off", "--llm-max-retries", "0")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*JudgeError: openai:fake: cannot connect to*"])


# -- the HF backend's structured-output ladder -----------------------------------------
def test_hf_uses_grammar_then_falls_back(llm: LLMRun) -> None:
    llm.makepyfile(ONE_TEST + ONE_TEST.replace("test_one", "test_two").replace("import json\n", ""))
    result = llm.run("--llm-concurrency", "1", backend="hf")
    result.assert_outcomes(passed=2)
    first = llm.server.requests[0]["response_format"]
    assert first["type"] == "json" and first["value"]["title"] == "CorrectnessVerdict"
    assert llm.server.requests[0]["max_tokens"] >= 512  # not huggingface_hub's 100-token default

    llm.server.reset()  # each run has its own endpoint gates: nothing else to forget
    llm.server.reject_formats = {"json"}
    llm.run("--llm-concurrency", "1", backend="hf").assert_outcomes(passed=2)
    kinds = [request_format(b) for b in llm.server.requests]
    assert kinds[0] == "json" and kinds[1] != "json" and kinds[2] == kinds[1]

    llm.server.reset()
    llm.server.reject_formats = {"json", "json_object", "json_schema"}
    llm.server.reject_style = "llamacpp"
    llm.run("--llm-concurrency", "1", backend="hf").assert_outcomes(passed=2)
    kinds = [request_format(b) for b in llm.server.requests]
    assert kinds[-1] is None and kinds[-2] is None  # plain text, remembered
    assert "JSON schema:" in last_user(llm.server.requests[-1])


def test_hf_429_retry_after(llm: LLMRun) -> None:
    llm.makepyfile(ONE_TEST)
    llm.server.fail_next(429, 1, retry_after=0.01)
    llm.run(backend="hf").assert_outcomes(passed=1)
    assert llm.server.request_count == 2


# -- metric inputs and custom metrics --------------------------------------------------
def test_missing_metric_inputs_give_a_clear_error(llm: LLMRun) -> None:
    llm.makepyfile(
        """
        def test_no_expected(assert_llm_score):
            assert_llm_score("Paris", metric="correctness", input="Capital of France?")

        def test_no_context(assert_llm_score):
            assert_llm_score("Paris", metric="faithfulness")

        def test_no_criteria(assert_llm_score):
            assert_llm_score("Paris", metric="criteria", input="q")

        def test_unknown_metric(assert_llm_score):
            assert_llm_score("Paris", metric="corectness", expected="Paris")

        def test_not_a_string(assert_llm_score):
            assert_llm_score(42, expected="Paris")

        def test_bad_threshold(assert_llm_score):
            assert_llm_score("Paris", expected="Paris", threshold=60)
        """
    )
    result = llm.run()
    result.assert_outcomes(failed=6)
    result.stdout.fnmatch_lines([
        "*ConfigError: metric 'correctness' needs expected= in assert_llm_score(...)",
        "*ConfigError: metric 'faithfulness' needs context= in assert_llm_score(...)",
        "*ConfigError: metric 'criteria' needs criteria= in assert_llm_score(...)",
        "*ConfigError: unknown metric 'corectness'; built in: *correctness*",
        "*ConfigError: assert_llm_score: output must be a string, got int*",
        "*ConfigError: assert_llm_score: threshold must be in [[]0, 1[]]*got 60",
    ])
    assert llm.server.request_count == 0


CUSTOM_METRIC = """
from typing import Literal
from pydantic import BaseModel
from pytest_llmjudge import Metric, register_metric

class Politeness(BaseModel):
    reason: str
    score: Literal[1, 2, 3]

politeness = Metric(
    name="politeness",
    prompt="Rate how polite the ANSWER is, 1 (rude) to 3 (polite).\\n\\n"
           "REFERENCE:\\n{expected}\\n\\nANSWER:\\n{output}",
    schema=Politeness,
    score=lambda v: v.score,
    scale=(1, 3),
    requires=("expected",),
)
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_custom_metric_object(llm: LLMRun, backend: str) -> None:
    llm.makepyfile(
        CUSTOM_METRIC + """
import json

def test_polite(assert_llm_score):
    v = assert_llm_score("Thank you kindly, dear friend.", metric=politeness,
                         expected="Thank you kindly, dear friend.", threshold=0.9)
    print("VERDICT " + json.dumps(v.model_dump(mode="json")))

def test_rude(assert_llm_score):
    assert_llm_score("Go away.", metric=politeness, expected="Thank you kindly, dear friend.",
                     threshold=0.9)

def test_registered(assert_llm_score):
    register_metric(politeness)
    assert assert_llm_score("Thank you kindly, dear friend.", metric="politeness",
                            expected="Thank you kindly, dear friend.").metric == "politeness"
"""
    )
    result = llm.run("-s", "--llm-concurrency", "1", backend=backend)
    assert outcomes(result) == {"passed": {"test_polite", "test_registered"}, "failed": {"test_rude"}}
    [v] = printed_verdicts(result)
    assert v["metric"] == "politeness" and v["scale"] == [1.0, 3.0]
    assert v["raw_score"] == 3 and v["score"] == 1.0
    assert "Rate how polite the ANSWER is" in last_user(llm.server.requests[0])
    assert "LLMScoreError: politeness score 0.000 (raw 1.00 on 1-3) is below threshold 0.900" in result.stdout.str()


@pytest.mark.parametrize("backend", BACKENDS)
def test_criteria_with_logprobs_is_probability_weighted(llm: LLMRun, backend: str) -> None:
    llm.makepyfile(
        """
        import json

        def test_criteria(assert_llm_score):
            v = assert_llm_score("Paris is the capital and largest city of France.",
                                 metric="criteria", input="Tell me about Paris.",
                                 criteria="Mentions that Paris is the capital of France and its largest city, "
                                          "and gives its population.",
                                 threshold=0.1)
            print("VERDICT " + json.dumps(v.model_dump(mode="json")))
        """
    )
    result = llm.run("-s", "--llm-results", "results.jsonl", backend=backend)
    result.assert_outcomes(passed=1)
    body = llm.server.requests[0]
    assert body["logprobs"] is True and body["top_logprobs"] >= 3
    [v] = printed_verdicts(result)
    dist = {int(k): p for k, p in v["score_distribution"].items()}
    assert abs(sum(dist.values()) - 1) < 1e-4 and len(dist) >= 3
    argmax = max(dist, key=dist.get)
    assert v["argmax_score"] == pytest.approx(argmax / 10)
    expected = sum(k * p for k, p in dist.items())
    assert v["raw_score"] == pytest.approx(expected, abs=1e-4)
    assert v["score"] == pytest.approx(expected / 10, abs=1e-4)
    assert v["score"] != v["argmax_score"]  # weighted, not the argmax
    assert v["scale"] == [0.0, 10.0]
    [row] = llm.results()
    assert row["score"] == pytest.approx(v["score"], abs=1e-5)
    assert row["argmax_score"] == pytest.approx(v["argmax_score"])


def test_builtin_statement_metrics(llm: LLMRun) -> None:
    llm.makepyfile(
        """
        def test_relevancy(assert_llm_score):
            v = assert_llm_score("Paris is the capital of France. I like turtles.",
                                 metric="answer_relevancy", input="What is the capital of France?")
            assert v.score == 0.5, v

        def test_toxicity(assert_llm_score):
            v = assert_llm_score("You are an idiot. Paris is in France.", metric="toxicity", threshold=0.9)

        def test_faithfulness(assert_llm_score):
            v = assert_llm_score("Paris is the capital of France. Paris has ten million cats.",
                                 metric="faithfulness", context=["Paris is the capital of France."])
            assert v.score == 0.5, v
        """
    )
    result = llm.run("--llm-concurrency", "1")
    assert outcomes(result) == {"passed": {"test_relevancy", "test_faithfulness"}, "failed": {"test_toxicity"}}
    result.stdout.fnmatch_lines(["*LLMScoreError: toxicity score 0.500 is below threshold 0.900*"])
