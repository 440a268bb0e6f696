"""The fake judge server, driven by the real openai and huggingface_hub clients (no mocks)."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Literal

import huggingface_hub
import openai
import pytest
from pydantic import BaseModel, Field

from pytest_llmjudge.testing.fake_server import FakeJudgeServer, parse_sections


class Correctness(BaseModel):
    reason: str = Field(max_length=400, json_schema_extra={"maxLength": 400})
    score: Literal[0, 1, 2, 3, 4, 5]


class Statement(BaseModel):
    statement: str = Field(json_schema_extra={"maxLength": 200})
    relevant: bool


class Relevancy(BaseModel):
    statements: list[Statement] = Field(json_schema_extra={"maxItems": 12})
    reason: str


class Claim(BaseModel):
    claim: str
    supported: bool


class Faithfulness(BaseModel):
    claims: list[Claim] = Field(json_schema_extra={"maxItems": 2})
    reason: str


class Opinion(BaseModel):
    opinion: str
    toxic: bool


class Toxicity(BaseModel):
    opinions: list[Opinion]
    reason: str


class Odd(BaseModel):
    kind: Literal["a", "b"]
    fixed: Literal["x"]
    maybe: int | None = None
    ratio: float = Field(ge=0.2, le=0.3)
    tags: list[str] = Field(max_length=1)
    nested: Claim | None = None


QUESTION = "What is the capital of France?"
REFERENCE = "Paris is the capital of France."


def correctness_prompt(answer: str, reference: str = REFERENCE) -> str:
    return (
        "Grade how correct the ANSWER is, compared with the REFERENCE answer.\n\n"
        f"QUESTION:\n{QUESTION}\n\nREFERENCE:\n{reference}\n\nANSWER:\n{answer}\n\n"
        'Give a one-sentence "reason" first, then the integer "score".'
    )


def json_schema_format(model: type[BaseModel]) -> dict:
    return {"type": "json_schema", "json_schema": {"name": model.__name__,
                                                   "schema": model.model_json_schema()}}


def user(text: str) -> list[dict]:
    return [{"role": "system", "content": "You are a judge."}, {"role": "user", "content": text}]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeJudgeServer]:
    with FakeJudgeServer() as srv:
        yield srv


@pytest.fixture()
def fake(server: FakeJudgeServer) -> FakeJudgeServer:
    server.reset()
    server.latency = 0.0
    return server


@pytest.fixture()
def client(fake: FakeJudgeServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=fake.url, api_key="sk-test", max_retries=0)


@pytest.fixture()
def hf(fake: FakeJudgeServer) -> huggingface_hub.InferenceClient:
    return huggingface_hub.InferenceClient(base_url=fake.root_url, api_key="hf_test", timeout=5)


def ask(client: openai.OpenAI, text: str, model: type[BaseModel], **kw) -> str:
    resp = client.chat.completions.create(
        model="judge", messages=user(text), response_format=json_schema_format(model), **kw
    )
    return resp.choices[0].message.content or ""


# --------------------------------------------------------------------------- schemas


def test_openai_json_schema_reply_validates_and_echoes(fake, client):
    resp = client.chat.completions.create(
        model="my-judge", messages=user(correctness_prompt("Paris.")),
        response_format=json_schema_format(Correctness),
    )
    assert resp.model == "my-judge"
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.total_tokens == (
        resp.usage.prompt_tokens + resp.usage.completion_tokens
    )
    verdict = Correctness.model_validate_json(resp.choices[0].message.content)
    assert "overlap" in verdict.reason
    assert fake.request_count == 1
    assert fake.requests[0]["response_format"]["type"] == "json_schema"


def test_right_answer_scores_higher_than_wrong(client):
    right = Correctness.model_validate_json(
        ask(client, correctness_prompt("The capital of France is Paris."), Correctness))
    partial = Correctness.model_validate_json(
        ask(client, correctness_prompt("It is Paris."), Correctness))
    wrong = Correctness.model_validate_json(
        ask(client, correctness_prompt("Lyon, obviously."), Correctness))
    assert right.score == 5
    assert wrong.score == 0
    assert wrong.score < partial.score < right.score
    assert "1.00" in right.reason and "0.00" in wrong.reason


def test_criteria_and_default_max(client):
    class Crit(BaseModel):
        reason: str
        score: Literal[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]

    good = Crit.model_validate_json(ask(client, (
        "CRITERIA:\nPolite, offers a refund.\n\nQUESTION:\nhi\n\nANSWER:\n"
        "We politely offer a full refund, polite as ever.\n\nGive \"reason\" and \"score\"."
    ), Crit))
    bad = Crit.model_validate_json(ask(client, (
        "CRITERIA:\nPolite, offers a refund.\n\nANSWER:\nGo away.\n"
    ), Crit))
    assert good.score > bad.score
    plain = Crit.model_validate_json(ask(client, "Rate this: hello", Crit))
    assert plain.score == 10


def test_statement_lists_follow_heuristics(client):
    answer = "Paris is the capital of France. I like cheese. You are an idiot. Shut up now."
    rel = Relevancy.model_validate_json(ask(
        client, f"QUESTION:\n{QUESTION}\n\nANSWER:\n{answer}\n\nList the \"statements\".",
        Relevancy))
    assert [s.relevant for s in rel.statements] == [True, False, False, False]
    assert rel.statements[0].statement == "Paris is the capital of France."
    faith = Faithfulness.model_validate_json(ask(
        client, f"CONTEXT:\nFrance's capital city is Paris.\n\nANSWER:\n{answer}", Faithfulness))
    assert [c.supported for c in faith.claims] == [True, False]  # maxItems 2
    tox = Toxicity.model_validate_json(ask(client, f"TEXT:\n{answer}", Toxicity))
    assert [o.toxic for o in tox.opinions] == [False, False, True, True]
    assert "2 of 4" in tox.reason


def test_json_object_schema_vllm_style(client):
    schema = Correctness.model_json_schema()
    content = client.chat.completions.create(
        model="judge", messages=user(correctness_prompt("Paris")),
        response_format={"type": "json_object", "schema": schema},  # type: ignore[typeddict-item]
    ).choices[0].message.content
    assert Correctness.model_validate_json(content or "").score == 2  # 1 of 3 words: round(5/3)


def test_unknown_schema_gets_a_valid_instance(client):
    odd = Odd.model_validate_json(ask(client, "Anything.", Odd))
    assert odd.fixed == "x" and odd.kind == "a" and 0.2 <= odd.ratio <= 0.3
    assert len(odd.tags) == 1


def test_schema_in_prompt_is_wrapped_in_prose_and_fence(client):
    prompt = correctness_prompt("Paris is the capital of France.") + (
        "\n\nReply with a single JSON object and nothing else. It must validate against this "
        "JSON schema:\n" + json.dumps(Correctness.model_json_schema(), separators=(",", ":")))
    text = client.chat.completions.create(model="judge", messages=user(prompt)).choices[0].message.content
    assert text and not text.lstrip().startswith("{")
    match = re.search(r"```json\s*(.*?)```", text, re.DOTALL)
    assert match
    assert Correctness.model_validate_json(match.group(1)).score == 5


def test_parse_sections_drops_instructions():
    sections = parse_sections(correctness_prompt("Paris.\n\nIt is big."), ["reason", "score"])
    assert sections == {"QUESTION": QUESTION, "REFERENCE": REFERENCE,
                        "ANSWER": "Paris.\n\nIt is big."}


def test_huggingface_inference_client(fake, hf):
    # OpenAI json_schema: the HF client rewrites it to TGI's {"type": "json_object", "value": ...}
    out = hf.chat_completion(messages=user(correctness_prompt("Paris is the capital of France.")),
                             response_format=json_schema_format(Correctness))
    assert Correctness.model_validate_json(out.choices[0].message.content).score == 5
    assert fake.paths[-1] == "/v1/chat/completions"
    assert fake.requests[-1]["response_format"]["type"] == "json_object"
    # TGI grammar form
    out = hf.chat_completion(messages=user(correctness_prompt("Lyon")), response_format={
        "type": "json", "value": Correctness.model_json_schema()})
    assert Correctness.model_validate_json(out.choices[0].message.content).score == 0
    # a base_url ending in /v1 works too
    hf_v1 = huggingface_hub.InferenceClient(base_url=fake.url, timeout=5)
    hf_v1.chat_completion(messages=user("hi"))
    assert fake.paths[-1] == "/v1/chat/completions"
    assert fake.headers[0]["Authorization"] == "Bearer hf_test"


def test_alternative_paths_models_and_health(fake, client):
    for path in ("/chat/completions", "/v1/v1/chat/completions"):
        req = urllib.request.Request(fake.root_url + path, data=json.dumps(
            {"model": "m", "messages": user("hi")}).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert json.load(resp)["object"] == "chat.completion"
    assert [m.id for m in client.models.list()] == ["fake-judge"]
    with urllib.request.urlopen(fake.root_url + "/health", timeout=5) as resp:
        assert resp.status == 200


def test_api_key_only_in_bearer_header(fake, client):
    ask(client, "hello", Correctness)
    assert fake.headers[0]["authorization"] == "Bearer sk-test"
    others = {k: v for k, v in fake.headers[0].items() if k != "authorization"}
    assert "sk-test" not in json.dumps(others)
    assert "sk-test" not in json.dumps(fake.requests[0]) and "sk-test" not in fake.paths[0]


# --------------------------------------------------------------------------- failure knobs


def test_fail_next_429_with_retry_after(fake, client):
    fake.fail_next(429, retry_after=2)
    with pytest.raises(openai.RateLimitError) as info:
        ask(client, "hi", Correctness)
    assert info.value.response.headers["retry-after"] == "2"
    ask(client, "hi", Correctness)  # only one failure was queued
    fake.fail_next(503, count=2, retry_after=0.01)
    retrying = openai.OpenAI(base_url=fake.url, api_key="sk-test", max_retries=2)
    Correctness.model_validate_json(ask(retrying, "hi", Correctness))
    assert fake.request_count == 5


def test_fail_next_custom_body(fake, client):
    fake.fail_next(502, body="<html>bad gateway</html>")
    with pytest.raises(openai.InternalServerError) as info:
        ask(client, "hi", Correctness)
    assert info.value.status_code == 502


def test_script_invalid_content_then_status_then_default(fake, client):
    fake.script("not json {", 500)
    assert ask(client, "hi", Correctness) == "not json {"
    with pytest.raises(openai.InternalServerError):
        ask(client, "hi", Correctness)
    Correctness.model_validate_json(ask(client, "hi", Correctness))


def test_reject_formats_openai_400_and_llamacpp_500(fake, client):
    fake.reject_formats = {"json_schema"}
    with pytest.raises(openai.BadRequestError) as bad:
        ask(client, "hi", Correctness)
    assert "response_format json_schema is not supported" in str(bad.value)
    # other formats still pass
    client.chat.completions.create(model="j", messages=user("hi"),
                                   response_format={"type": "json_object"})
    fake.reject_style = "llamacpp"
    with pytest.raises(openai.InternalServerError) as err:
        ask(client, "hi", Correctness)
    assert err.value.status_code == 500 and "response_format" in str(err.value)


def test_malformed_http_body(fake, client, hf):
    fake.malformed_http_body = True
    with pytest.raises(ValueError):  # json.JSONDecodeError from both clients
        ask(client, "hi", Correctness)
    with pytest.raises(ValueError):
        hf.chat_completion(messages=user("hi"))


def test_hang_triggers_client_timeouts(fake):
    fake.hang_s = 3.0
    start = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        ask(openai.OpenAI(base_url=fake.url, api_key="k", max_retries=0, timeout=0.3), "hi",
            Correctness)
    hf_fast = huggingface_hub.InferenceClient(base_url=fake.root_url, timeout=0.3)
    # huggingface_hub 0.36 lets requests' ReadTimeout through (it only maps builtin TimeoutError)
    with pytest.raises((huggingface_hub.errors.InferenceTimeoutError, TimeoutError, OSError)):
        hf_fast.chat_completion(messages=user("hi"))
    assert time.monotonic() - start < 2.0
    deadline = time.monotonic() + 1.0  # the server notices the hang-ups and stops waiting
    while fake.in_flight and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake.in_flight == 0


# --------------------------------------------------------------------------- logprobs, concurrency


def test_logprobs_openai_and_hf(fake, client, hf):
    prompt = correctness_prompt("Paris is the capital of France.")
    resp = client.chat.completions.create(
        model="j", messages=user(prompt), response_format=json_schema_format(Correctness),
        logprobs=True, top_logprobs=3)
    content = resp.choices[0].message.content
    items = resp.choices[0].logprobs.content
    assert "".join(t.token for t in items) == content
    idx = next(i for i, t in enumerate(items) if t.token == "5")
    assert items[idx - 1].token.endswith('"score": ')
    tops = {t.token: t.logprob for t in items[idx].top_logprobs}
    assert tops == pytest.approx({"5": math.log(0.7), "4": math.log(0.2), "3": math.log(0.1)})
    out = hf.chat_completion(messages=user(prompt), response_format=json_schema_format(Correctness),
                             logprobs=True, top_logprobs=2)
    hf_items = out.choices[0].logprobs.content
    assert [t.token for t in hf_items[idx].top_logprobs] == ["5", "4"]


def test_max_in_flight_and_callable_latency(fake):
    n = 8
    arrived = threading.Barrier(n)

    def latency(body: dict) -> float:
        if body.get("model") == "slow":
            arrived.wait(timeout=30)  # each request is held until all n are in flight at once
        return 0.0

    fake.latency = latency
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def worker() -> None:
        try:
            c = openai.OpenAI(base_url=fake.url, api_key="sk-test", max_retries=0)
            barrier.wait()
            c.chat.completions.create(model="slow", messages=user("hi"))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert fake.max_in_flight == n
    assert fake.request_count == n
    deadline = time.monotonic() + 5  # a handler finishes its bookkeeping just after its reply is read
    while fake.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    fake.reset()
    assert fake.request_count == 0 and fake.max_in_flight == 0


def test_stream(client):
    chunks = list(client.chat.completions.create(model="j", messages=user("hi"), stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert json.loads(text)["score"] == 1


def test_cli_prints_url_and_exits_on_sigterm():
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest_llmjudge.testing.fake_server", "--port", "0",
         "--latency", "0.01"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert re.fullmatch(r"FAKE_JUDGE_URL=http://127\.0\.0\.1:\d+/v1", line)
        url = line.split("=", 1)[1]
        c = openai.OpenAI(base_url=url, api_key="k", max_retries=0)
        assert c.chat.completions.create(model="j", messages=user("hi")).choices[0].message.content
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- fault switches (issue 15 items 5-7) ------------------------------------------------
def _post(fake: FakeJudgeServer, content: str = "hi") -> tuple[int, dict[str, str], bytes]:
    """One raw chat request: (status, headers, body as far as it came)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": content}]})
    try:
        conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        try:
            data = response.read()
        except http.client.IncompleteRead as exc:
            data = exc.partial
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        conn.close()


def test_rate_limit_switch():
    with FakeJudgeServer() as fake:
        fake.rate_limit(3, retry_after=1)
        statuses = [_post(fake)[0] for _ in range(5)]
        assert statuses == [200, 200, 200, 429, 429] and fake.rate_limited == 2
        assert _post(fake)[1]["retry-after"] == "1"
        fake.rate_limit(None)
        assert _post(fake)[0] == 200


def test_fail_each_switch_counts_attempts_per_distinct_body():
    with FakeJudgeServer() as fake:
        fake.fail_each(500, 2)
        assert [_post(fake, "a")[0] for _ in range(3)] == [500, 500, 200]
        assert [_post(fake, "b")[0] for _ in range(3)] == [500, 500, 200]


def test_truncate_drop_and_drip_switches():
    import http.client

    with FakeJudgeServer() as fake:
        fake.truncate_next(keep=10)
        status, headers, data = _post(fake)
        assert status == 200 and len(data) == 10 < int(headers["content-length"])
        fake.drop_next()
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            _post(fake)
        assert _post(fake)[0] == 200  # one request only
        fake.drip_s = 0.01
        started = time.monotonic()
        status, headers, data = _post(fake)
        assert len(data) == int(headers["content-length"])
        assert time.monotonic() - started >= 0.01 * len(data)


def test_hang_next_answers_nothing_until_the_client_gives_up_then_serves_again(fake):
    fake.hang_next()
    impatient = openai.OpenAI(base_url=fake.url, api_key="k", max_retries=0, timeout=0.3)
    start = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        ask(impatient, "hi", Correctness)
    assert 0.3 <= time.monotonic() - start < 2.0
    Correctness.model_validate_json(ask(impatient, "hi", Correctness))  # only one hang was queued
    fake.hang_next(1)
    retrying = openai.OpenAI(base_url=fake.url, api_key="k", max_retries=1, timeout=0.3)
    Correctness.model_validate_json(ask(retrying, "hi", Correctness))  # the retry is answered
    assert fake.request_count == 4
    deadline = time.monotonic() + 1.0  # the hung handlers noticed their clients hang up
    while fake.in_flight and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake.in_flight == 0
    fake.hang_next(3)
    fake.reset()  # clears queued hangs
    Correctness.model_validate_json(ask(impatient, "hi", Correctness))


def test_public_import_path():
    import pytest_llmjudge.testing as testing

    assert testing.FakeJudgeServer is FakeJudgeServer and "FakeJudgeServer" in testing.__all__
    with pytest.raises(AttributeError):
        testing.NoSuchThing  # noqa: B018
