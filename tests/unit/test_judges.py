"""The judge backends against the fake server, with the real openai and huggingface_hub clients:
request shapes, usage, score distributions, the structured-output ladder and its memory, errors.
Plus the in-process FakeJudge, spec parsing and the tolerant JSON extraction."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator

import pytest

from pytest_llmjudge.errors import ConfigError, JudgeError
from pytest_llmjudge.judges import FakeJudge, default_judge_spec, make_judge, retry
from pytest_llmjudge.judges.base import JudgeResponse, Sampling
from pytest_llmjudge.judges.hf_inference import HFInferenceJudge
from pytest_llmjudge.judges.openai_compat import OpenAIJudge
from pytest_llmjudge.judges.parsing import extract_json_object, score_distribution_from_top_logprobs
from pytest_llmjudge.judging.evaluation import build_request, judge_once, parse_reply
from pytest_llmjudge.metrics import get_metric, unfence
from pytest_llmjudge.metrics.base import MetricInputs
from pytest_llmjudge.metrics.builtin import CorrectnessVerdict
from pytest_llmjudge.secrets import redact, redact_url
from pytest_llmjudge.testing.fake_server import FakeJudgeServer

CORRECTNESS = get_metric("correctness")
CRITERIA = get_metric("criteria")
RIGHT = MetricInputs(output="The capital of France is Paris.", input="What is the capital of France?",
                     expected="Paris is the capital of France.")
WRONG = MetricInputs(output="Berlin.", input="What is the capital of France?",
                     expected="Paris is the capital of France.")


@pytest.fixture
def server() -> Iterator[FakeJudgeServer]:
    with FakeJudgeServer() as srv:
        yield srv


def make(backend: str, server: FakeJudgeServer, **kw) -> OpenAIJudge | HFInferenceJudge:
    kw.setdefault("timeout", 10)
    if backend == "openai":
        return OpenAIJudge("fake", base_url=server.url, **kw)
    return HFInferenceJudge("fake", base_url=server.root_url, **kw)


def fmt(body: dict) -> str | None:
    rf = body.get("response_format")
    return rf.get("type") if isinstance(rf, dict) else None


BACKENDS = ["openai", "hf"]


# -- both backends -------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_judge_returns_text_usage_latency_and_score_distribution(server: FakeJudgeServer, backend: str) -> None:
    judge = make(backend, server)
    assert judge.name == f"{backend}:fake" and judge.endpoint == f"127.0.0.1:{server.port}"
    response = judge.judge(build_request(CORRECTNESS, RIGHT))
    parsed = CorrectnessVerdict.model_validate_json(response.text)
    assert parsed.score >= 4
    assert response.usage["total_tokens"] == response.usage["prompt_tokens"] + response.usage["completion_tokens"] > 0
    assert response.latency_s > 0
    dist = response.score_distribution
    assert dist is not None and set(dist) <= set(range(6)) and math.isclose(sum(dist.values()), 1.0)
    assert max(dist, key=dist.get) == parsed.score
    body = server.requests[0]
    assert body["logprobs"] is True and body["temperature"] == 0
    assert body["messages"][0]["role"] == "system"
    assert unfence(body["messages"][-1]["content"])["expected"] == "Paris is the capital of France."


@pytest.mark.parametrize("backend", BACKENDS)
def test_sampling_parameters_are_sent(server: FakeJudgeServer, backend: str) -> None:
    judge = make(backend, server)
    judge.judge(build_request(CORRECTNESS, RIGHT, Sampling(temperature=0.7, top_p=0.9, max_tokens=300, seed=11)))
    body = server.requests[0]
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (0.7, 0.9, 300, 11)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_logprobs_asked_for_metrics_without_a_score_field(server: FakeJudgeServer, backend: str) -> None:
    metric = get_metric("toxicity")
    response = make(backend, server).judge(build_request(metric, MetricInputs(output="Fine. You idiot.")))
    assert "logprobs" not in server.requests[0] or not server.requests[0]["logprobs"]
    assert response.score_distribution is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_structured_output_ladder_falls_back_and_remembers(server: FakeJudgeServer, backend: str) -> None:
    first = "json_schema" if backend == "openai" else "json"
    server.reject_formats = {first}
    judge = make(backend, server)
    judge.judge(build_request(CORRECTNESS, RIGHT))
    judge.judge(build_request(CORRECTNESS, WRONG))
    kinds = [fmt(b) for b in server.requests]
    assert kinds[0] == first and kinds[1] != first and kinds[2] == kinds[1]
    # the memory is the judge object's own: a new one starts from the strictest mode again
    make(backend, server).judge(build_request(CORRECTNESS, RIGHT))
    assert fmt(server.requests[3]) == first


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("style", ["openai", "llamacpp"])
def test_every_format_rejected_ends_in_plain_text(server: FakeJudgeServer, backend: str, style: str) -> None:
    server.reject_formats = {"json_schema", "json_object", "json"}
    server.reject_style = style
    response = make(backend, server, max_retries=3).judge(build_request(CORRECTNESS, RIGHT))
    assert fmt(server.requests[-1]) is None
    assert "JSON schema:" in server.requests[-1]["messages"][-1]["content"]
    assert "```json" in response.text  # prose around it: parse_reply extracts it
    assert parse_reply(response, CorrectnessVerdict).score >= 4
    assert server.request_count == (3 if backend == "openai" else 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_429_retry_after_then_success(server: FakeJudgeServer, backend: str) -> None:
    server.fail_next(429, 2, retry_after=0.01)
    make(backend, server, max_retries=2).judge(build_request(CORRECTNESS, RIGHT))
    assert server.request_count == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_5xx_exhausts_bounded_retries(server: FakeJudgeServer, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "BASE_DELAY_S", 0.001)
    server.fail_next(502, 50)
    with pytest.raises(JudgeError, match=r"server error 502.*after 3 attempts") as info:
        make(backend, server, max_retries=2).judge(build_request(CORRECTNESS, RIGHT))
    assert server.request_count == 3
    assert not isinstance(info.value, AssertionError)


@pytest.mark.parametrize("backend", BACKENDS)
def test_timeout(server: FakeJudgeServer, backend: str) -> None:
    server.hang_s = 1.0
    with pytest.raises(JudgeError, match="the request timed out"):
        make(backend, server, timeout=0.2, max_retries=0).judge(build_request(CORRECTNESS, RIGHT))


@pytest.mark.parametrize("backend", BACKENDS)
def test_malformed_http_body_is_retried_then_a_judge_error(server: FakeJudgeServer, backend: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "BASE_DELAY_S", 0.001)
    server.malformed_http_body = True
    with pytest.raises(JudgeError, match="malformed reply"):
        make(backend, server, max_retries=1).judge(build_request(CORRECTNESS, RIGHT))
    assert server.request_count == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_reply_is_a_judge_error(server: FakeJudgeServer, backend: str) -> None:
    server.script("")
    with pytest.raises(JudgeError, match="empty reply"):
        make(backend, server).judge(build_request(CORRECTNESS, RIGHT))


@pytest.mark.parametrize("backend", BACKENDS)
def test_connection_refused(backend: str) -> None:
    with FakeJudgeServer() as gone:
        pass
    with pytest.raises(JudgeError, match="cannot connect"):
        make(backend, gone, max_retries=0).judge(build_request(CORRECTNESS, RIGHT))


@pytest.mark.parametrize("backend", BACKENDS)
def test_credentials_are_sent_as_bearer_and_redacted_from_errors(server: FakeJudgeServer, backend: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-test-SECRET9876543210" if backend == "openai" else "hf_SECRET9876543210abc"
    monkeypatch.setenv("OPENAI_API_KEY" if backend == "openai" else "HF_TOKEN", secret)
    make(backend, server).judge(build_request(CORRECTNESS, RIGHT))
    assert server.headers[0]["authorization"] == f"Bearer {secret}"
    server.fail_next(400, 1, body=json.dumps({"error": {"message": f"bad key {secret} in request"}}))
    server.reject_formats = set()
    with pytest.raises(JudgeError) as info:
        judge = make(backend, server, max_retries=0)
        judge.complete([{"role": "user", "content": "hi"}])  # free text: a 400 is not a fallback
    assert secret not in str(info.value) and "***" in str(info.value)


# -- OpenAI specifics -----------------------------------------------------------------
def test_openai_request_shape(server: FakeJudgeServer) -> None:
    OpenAIJudge("my-model", base_url=server.url).judge(build_request(CORRECTNESS, RIGHT))
    body = server.requests[0]
    assert body["model"] == "my-model"
    rf = body["response_format"]
    assert rf["type"] == "json_schema" and rf["json_schema"]["name"] == "CorrectnessVerdict"
    assert rf["json_schema"]["schema"] == CorrectnessVerdict.model_json_schema()
    assert server.paths[0] == "/v1/chat/completions"


def test_openai_memory_is_per_model(server: FakeJudgeServer) -> None:
    server.reject_formats = {"json_schema"}
    OpenAIJudge("a", base_url=server.url).judge(build_request(CORRECTNESS, RIGHT))
    OpenAIJudge("b", base_url=server.url).judge(build_request(CORRECTNESS, RIGHT))
    assert [fmt(b) for b in server.requests] == ["json_schema", "json_object", "json_schema", "json_object"]


def test_openai_logprobs_rejected_are_turned_off_and_remembered(server: FakeJudgeServer) -> None:
    server.fail_next(400, 1, body=json.dumps({"error": {"message": "logprobs are not supported by this model"}}))
    judge = OpenAIJudge("fake", base_url=server.url)
    response = judge.judge(build_request(CORRECTNESS, RIGHT))
    assert response.score_distribution is None
    assert server.requests[0]["logprobs"] is True and "logprobs" not in server.requests[1]
    assert fmt(server.requests[1]) == "json_schema"  # the format was not given up for it
    judge.judge(build_request(CORRECTNESS, RIGHT))
    assert "logprobs" not in server.requests[2]


def test_openai_500_not_naming_the_format_is_retried_in_the_same_mode(server: FakeJudgeServer,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "BASE_DELAY_S", 0.001)
    server.fail_next(500, 1)
    OpenAIJudge("fake", base_url=server.url).judge(build_request(CORRECTNESS, RIGHT))
    assert [fmt(b) for b in server.requests] == ["json_schema", "json_schema"]


def test_openai_needs_a_key_or_a_base_url() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIJudge("gpt-4o-mini")
    assert OpenAIJudge("gpt-4o-mini", require_key=False).endpoint == "api.openai.com"


def test_openai_base_url_from_environment(server: FakeJudgeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    OpenAIJudge("fake").judge(build_request(CORRECTNESS, RIGHT))
    assert server.request_count == 1


# -- HF specifics ---------------------------------------------------------------------
def test_hf_tgi_grammar_request_shape(server: FakeJudgeServer) -> None:
    HFInferenceJudge("my-model", base_url=server.root_url).judge(build_request(CORRECTNESS, RIGHT))
    body = server.requests[0]
    assert body["response_format"] == {"type": "json", "value": CorrectnessVerdict.model_json_schema()}
    assert body["model"] == "my-model"
    assert body["max_tokens"] >= 512
    assert server.paths[0].endswith("/chat/completions")


def test_hf_without_base_url_targets_the_inference_api() -> None:
    judge = HFInferenceJudge("org/model")
    assert judge.name == "hf:org/model" and judge.endpoint == "router.huggingface.co"


# -- criteria: G-Eval with logprobs ------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_criteria_distribution_over_0_to_10(server: FakeJudgeServer, backend: str) -> None:
    inputs = MetricInputs(output="Paris is the capital of France.", input="Paris?",
                          criteria="States that Paris is the capital of France and gives its population.")
    response = make(backend, server).judge(build_request(CRITERIA, inputs))
    dist = response.score_distribution
    assert dist is not None and set(dist) <= set(range(11)) and len(dist) >= 3
    assert math.isclose(sum(dist.values()), 1.0)


# -- FakeJudge, specs ----------------------------------------------------------------
def test_fake_judge_replies_and_records() -> None:
    replies = iter(
        [{"reason": "a", "score": 4}, '{"reason": "b", "score": 3}', CorrectnessVerdict(reason="c", score=2)]
    )
    judge = FakeJudge(lambda request: next(replies), name="fake:x")
    request = build_request(CORRECTNESS, RIGHT)
    texts = [judge.judge(request).text for _ in range(3)]
    assert [json.loads(t)["reason"] for t in texts] == ["a", "b", "c"]
    assert len(judge.calls) == 3 and judge.calls[0] is request
    assert judge.name == "fake:x" and judge.endpoint == "in-process"


def test_judge_once_retries_once_with_the_validation_error() -> None:
    replies = iter(['{"reason": "no score"}', {"reason": "fixed", "score": 5}])
    judge = FakeJudge(lambda request: next(replies))
    parsed, response, calls = judge_once(judge, CORRECTNESS, build_request(CORRECTNESS, RIGHT))
    assert parsed.score == 5 and calls == 2
    feedback = judge.calls[1].messages[-1]["content"]
    assert "Your reply was not valid" in feedback and "score: Field required" in feedback
    assert judge.calls[1].messages[-2] == {"role": "assistant", "content": '{"reason": "no score"}'}

    bad = FakeJudge(lambda request: {"reason": "x", "score": 9})
    with pytest.raises(JudgeError, match="gave no valid verdict for correctness.*score") as info:
        judge_once(bad, CORRECTNESS, build_request(CORRECTNESS, RIGHT))
    assert len(bad.calls) == 2 and info.value.metric == "correctness"


@pytest.mark.parametrize("spec,message", [
    ("gpt-4o", "invalid judge spec 'gpt-4o'"),
    ("openai:", "invalid judge spec 'openai:'"),
    ("claude:opus", "unknown judge backend 'claude'"),
])
def test_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_judge(spec)


def test_make_judge_builds_backends(server: FakeJudgeServer) -> None:
    judge = make_judge("openai:fake", base_url=server.url, timeout=3, max_retries=1)
    assert isinstance(judge, OpenAIJudge) and judge.max_retries == 1 and judge.timeout == 3
    judge = make_judge("hf:fake", base_url=server.root_url)
    assert isinstance(judge, HFInferenceJudge) and judge.name == "hf:fake"


def test_default_judge_spec(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_judge_spec() == "local:smollm2-135m"
    assert default_judge_spec("http://localhost:8000/v1") == "openai:gpt-4o-mini"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-x")
    assert default_judge_spec() == "openai:gpt-4o-mini"


# -- tolerant extraction and score probabilities -------------------------------------
@pytest.mark.parametrize("text", [
    '{"reason": "ok", "score": 4}',
    '  \n{"reason": "ok", "score": 4}\n',
    'Here you go:\n```json\n{"reason": "ok", "score": 4}\n```',
    '```\n{"reason": "ok", "score": 4}\n```\nanything after',
    'My verdict is {"reason": "ok", "score": 4} as requested.',
    'Thinking {not json} ... final: {"reason": "ok", "score": 4}',
    '```json\n{broken\n```\n{"reason": "ok", "score": 4}',
    '[{"reason": "ok", "score": 4}]',
    '"a string"\n\n{"reason": "ok", "score": 4}',
])
def test_extract_json_object(text: str) -> None:
    assert extract_json_object(text) == {"reason": "ok", "score": 4}


@pytest.mark.parametrize("text", ["", "no json here", "[1, 2, 3]", "42", "{'single': 'quotes'}"])
def test_extract_json_object_fails_clearly(text: str) -> None:
    with pytest.raises(ValueError, match="no JSON object"):
        extract_json_object(text)


def test_parse_reply_names_the_schema_problems() -> None:
    with pytest.raises(ValueError, match=r"score: Input should be 0, 1, 2, 3, 4 or 5"):
        parse_reply(JudgeResponse(text='{"reason": "x", "score": 7}'), CorrectnessVerdict)
    with pytest.raises(ValueError, match="no JSON object"):
        parse_reply(JudgeResponse(text="nope"), CorrectnessVerdict)


def test_score_distribution_from_top_logprobs() -> None:
    tokens = ['{"', 'reason', '":', ' "', 'ok', '",', ' "', 'score', '":', ' ', '4', '}']
    top = [[(t, 0.0)] for t in tokens]
    top[10] = [("4", math.log(0.6)), ("3", math.log(0.3)), ("x", math.log(0.05)), ("5", math.log(0.05))]
    dist = score_distribution_from_top_logprobs(tokens, top, "score", range(6))
    assert dist is not None and list(dist) == [3, 4, 5]
    assert dist[4] == pytest.approx(0.6 / 0.95) and sum(dist.values()) == pytest.approx(1.0)
    assert score_distribution_from_top_logprobs(tokens, top, "missing", range(6)) is None
    top[10] = [("x", 0.0)]
    assert score_distribution_from_top_logprobs(tokens, top, "score", range(6)) is None


# -- whole-request timeout, broken responses, credentials in the URL (issue 15 items 6, 7, 14)
@pytest.mark.parametrize("backend", BACKENDS)
def test_timeout_bounds_the_whole_request_not_each_read(server: FakeJudgeServer, backend: str) -> None:
    server.drip_s = 0.05  # one byte every 50 ms: each read is quick, the body takes ~20 s
    judge = make(backend, server, timeout=1.0, max_retries=0)
    started = time.monotonic()
    with pytest.raises(JudgeError, match=r"timed out \(--llm-timeout 1 s\)"):
        judge.judge(build_request(CORRECTNESS, RIGHT))
    assert time.monotonic() - started < 3.0  # the budget plus a chunk, not the whole drip


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_truncated_body_says_so(server: FakeJudgeServer, backend: str) -> None:
    server.truncate_next(keep=10)
    with pytest.raises(JudgeError) as info:
        make(backend, server, max_retries=0).judge(build_request(CORRECTNESS, RIGHT))
    message = str(info.value)
    assert re.search(r"connection closed mid-response after 10 of \d+ bytes", message), message
    assert "cannot connect" not in message


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_dropped_connection_says_so(server: FakeJudgeServer, backend: str) -> None:
    server.drop_next()
    with pytest.raises(JudgeError, match="closed the connection without a response") as info:
        make(backend, server, max_retries=0).judge(build_request(CORRECTNESS, RIGHT))
    assert "cannot connect" not in str(info.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_broken_responses_are_retried(server: FakeJudgeServer, backend: str) -> None:
    server.drop_next()
    server.truncate_next(keep=5)
    make(backend, server, max_retries=2).judge(build_request(CORRECTNESS, RIGHT))
    assert server.request_count == 3


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fault", ["refused", "truncated", "dropped", "status"])
def test_url_credentials_never_appear_in_errors(server: FakeJudgeServer, backend: str, fault: str) -> None:
    port = server.port
    if fault == "refused":
        server.stop()
    elif fault == "truncated":
        server.truncate_next(keep=3)
    elif fault == "dropped":
        server.drop_next()
    else:
        server.fail_next(404, body="not found")
    path = "/v1" if backend == "openai" else ""
    url = f"http://user:PW-s3cr3t@127.0.0.1:{port}{path}?key=QS-s3cr3t"
    judge = OpenAIJudge("fake", base_url=url, max_retries=0) if backend == "openai" else \
        HFInferenceJudge("fake", base_url=url, max_retries=0)
    assert "s3cr3t" not in judge.endpoint + judge.name
    with pytest.raises(JudgeError) as info:
        judge.complete([{"role": "user", "content": "hi"}])
    assert "s3cr3t" not in str(info.value) and "s3cr3t" not in repr(info.value)


def test_redact_removes_url_credentials_from_any_text() -> None:
    text = ("cannot connect to http://user:PW@host:8/v1?key=QS&x=1 (HTTPConnectionPool(host='host', "
            "port=8): Max retries exceeded with url: /v1/chat/completions?key=QS)")
    out = redact(text)
    assert "PW" not in out and "QS" not in out
    assert "http://***@host:8/v1?key=***&x=***" in out and "/v1/chat/completions?key=***" in out
    assert redact("a plain sentence? yes.") == "a plain sentence? yes."
    assert redact_url("https://u:p@h/v1?token=abc") == "https://***@h/v1?token=***"


# -- the public complete() (issue 13 item 6) -------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_complete_free_text_and_structured(server: FakeJudgeServer, backend: str) -> None:
    judge = make(backend, server)
    server.script("Just words.")
    reply = judge.complete([{"role": "user", "content": "Say something."}], sampling=Sampling(max_tokens=20))
    assert reply.text == "Just words." and reply.finish_reason == "stop"
    assert "response_format" not in server.requests[-1] and server.requests[-1]["max_tokens"] == 20
    structured = judge.complete(build_request(CORRECTNESS, RIGHT).messages, schema=CorrectnessVerdict)
    assert CorrectnessVerdict.model_validate_json(structured.text).score >= 4
    assert server.requests[-1].get("response_format")


def test_generation_uses_complete_and_falls_back_to_json_for_verdict_only_judges() -> None:
    from pytest_llmjudge.workflows.generation import generate_text, generation_mode

    fake = FakeJudge(lambda request: {"text": "free answer"})
    generated = generate_text(fake, [{"role": "user", "content": "Q?"}], Sampling())
    assert (generated.text, generated.mode) == ("free answer", "text")

    class VerdictOnly:  # a custom judge from a pytest_llmjudge_make_judge hook, judge() only
        name, endpoint = "custom:x", "in-process"

        def judge(self, request):
            return JudgeResponse(text=json.dumps({"answer": "structured answer"}))

    assert generation_mode(VerdictOnly()) == "json"
    generated = generate_text(VerdictOnly(), [{"role": "user", "content": "Q?"}], Sampling())
    assert (generated.text, generated.mode) == ("structured answer", "json")
