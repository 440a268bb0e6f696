"""Turn (metric, answer, judge) into a Verdict: render, call, validate, score."""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from pydantic import BaseModel, ValidationError

from ..errors import ConfigError, JudgeError
from ..judges.base import Judge, JudgeRequest, JudgeResponse, Sampling
from ..judges.parsing import extract_json_object
from ..metrics.base import AnyMetric, CheckMetric, Metric, MetricInputs, cut_repetition
from ..metrics.likelihood import LikelihoodModel, ReferenceGain, likelihood_model
from ..secrets import redact
from .verdict import Verdict

#: a reply that does not validate is retried this many times with the error shown to the judge
FORMAT_RETRIES = 1


def text_argument(where: str, name: str, value: Any) -> str | None:
    """A judged text argument: a string, None, or a finite number (converted with ``str``).

    Anything else (NaN, infinity, a bool, bytes, a dict...) is a ConfigError naming the
    argument and its type: a judge must never grade ``"nan"`` or a repr.
    """
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if math.isfinite(value):
            return str(value)
        problem = f"{value!r} (a missing value?)"
    else:
        problem = f"a {type(value).__name__}"
    raise ConfigError(f"{where}: {name} must be a string (or a finite number), got {problem}")


def context_argument(where: str, value: Any) -> str | None:
    """``context``: a text (see :func:`text_argument`) or a list of texts joined by blank lines."""
    if isinstance(value, (list, tuple)):
        parts = [text_argument(where, f"context[{i}]", part) for i, part in enumerate(value)]
        return "\n\n".join(part for part in parts if part is not None)
    return text_argument(where, "context", value)


def build_request(
    metric: Metric, inputs: MetricInputs, sampling: Sampling = Sampling(), sample_index: int = 0
) -> JudgeRequest:
    """The judge request for one metric on one answer."""
    return JudgeRequest(
        messages=metric.messages(inputs),
        schema=metric.schema,
        sampling=sampling,
        sample_index=sample_index,
        score_field=metric.score_field,
        score_values=metric.score_values(),
    )


ModelT = TypeVar("ModelT", bound=BaseModel)


def parse_reply(response: JudgeResponse, schema: type[ModelT]) -> ModelT:
    """The validated schema instance in a reply; ValueError says what is wrong with it."""
    if response.parsed is not None:
        return cast(ModelT, response.parsed)  # a backend validates with the request's schema
    try:
        data = extract_json_object(response.text)
    except ValueError as exc:
        raise ValueError(f"{exc}: {response.text[:200]!r}") from None
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise ValueError(f"the JSON does not match the schema: {problems}") from None


def judge_once(judge: Judge, metric: Metric, request: JudgeRequest) -> tuple[BaseModel, JudgeResponse, int]:
    """Call the judge; retry once with the validation error shown; JudgeError after that.

    A reply is valid when it matches the metric's schema and its score lies on the metric's
    scale. Returns the validated instance, the last response and how many judge calls it took.
    """
    current = request
    response = judge.judge(current)
    usage = dict(response.usage)
    for attempt in range(FORMAT_RETRIES + 1):
        problem: str | None
        try:
            parsed = parse_reply(response, metric.schema)
        except ValueError as exc:
            problem = str(exc)
        else:
            off_scale = scale_problem(metric, parsed)  # runs the metric's score function: its bugs propagate
            if off_scale is None:
                response.usage = usage
                return parsed, response, attempt + 1
            problem = off_scale
        if attempt == FORMAT_RETRIES:
            raise JudgeError(
                f"{judge.name} gave no valid verdict for {metric.name}: {redact(problem)}",
                judge=judge.name,
                metric=metric.name,
            )
        feedback = (
            f"Your reply was not valid: {problem}. Reply again with only the JSON object, "
            "valid for the schema."
        )
        current = JudgeRequest(
            messages=(*request.messages, {"role": "assistant", "content": response.text},
                      {"role": "user", "content": feedback}),
            schema=request.schema, sampling=request.sampling, sample_index=request.sample_index,
            score_field=request.score_field, score_values=request.score_values,
        )
        response = judge.judge(current)
        for key, value in response.usage.items():
            usage[key] = usage.get(key, 0) + value
    raise AssertionError("unreachable")


def scale_problem(metric: Metric, parsed: BaseModel) -> str | None:
    """Why the verdict's raw score is invalid (not a finite number on the metric's scale), or None."""
    raw = metric.score(parsed)
    low, high = metric.scale
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return f"the score {raw!r} is not a number"
    if not math.isfinite(value) or not low <= value <= high:
        return f"the score {raw!r} is outside the scale {low:g}-{high:g} of metric {metric.name}"
    return None


def verdict_from_reply(
    metric: Metric, parsed: BaseModel, response: JudgeResponse, *, judge_name: str, threshold: float
) -> Verdict:
    """Score a validated reply. With a score distribution the score is its expectation."""
    raw = float(metric.score(parsed))
    argmax_score = None
    distribution = None
    if response.score_distribution:
        weighted = sum(value * p for value, p in response.score_distribution.items())
        argmax_score = metric.normalize(raw)
        distribution = {str(k): round(v, 6) for k, v in response.score_distribution.items()}
        raw = weighted
    score = metric.normalize(raw)
    reason = metric.reason_of(parsed)
    if judge_name.startswith("local:"):  # a small model's reason may loop: keep it up to the loop
        reason = cut_repetition(reason)
    return Verdict(
        metric=metric.name,
        score=score,
        raw_score=raw,
        scale=(float(metric.scale[0]), float(metric.scale[1])),
        reason=redact(reason),  # judge text: redacted before it is stored or shown
        threshold=threshold,
        passed=score >= threshold,
        judge=judge_name,
        latency_s=response.latency_s,
        usage=response.usage,
        argmax_score=argmax_score,
        score_distribution=distribution,
        details=redact_data(metric.details(parsed)) if metric.details else {},
    )


def run_check(metric: CheckMetric, inputs: MetricInputs, threshold: float) -> Verdict:
    """Evaluate a deterministic metric."""
    started = time.perf_counter()
    score, reason = metric.check(inputs)
    score = min(1.0, max(0.0, float(score)))
    return Verdict(
        metric=metric.name, score=score, raw_score=score, reason=redact(reason), threshold=threshold,
        passed=score >= threshold, judge=metric.judge_name, latency_s=time.perf_counter() - started,
    )


def evaluate(
    metric: AnyMetric,
    inputs: MetricInputs,
    judge: Judge | None,
    *,
    threshold: float,
    sampling: Sampling = Sampling(),
    sample_index: int = 0,
    cache: Any = None,
) -> Verdict:
    """Grade one answer with one metric: a cached verdict when there is one, else the judge's."""
    if isinstance(metric, CheckMetric):
        return run_check(metric, inputs, threshold)
    if judge is None:
        raise JudgeError(f"metric {metric.name} needs a judge and none is configured", metric=metric.name)
    if metric.likelihood is not None and judge.name.startswith("local:"):
        model = likelihood_model(judge)
        if model is not None:
            return likelihood_verdict(metric, metric.likelihood, model, inputs, judge, threshold=threshold,
                                      cache=cache)
    metric = metric.for_judge(judge.name)
    request = build_request(metric, inputs, sampling, sample_index)

    def grade() -> Verdict:
        parsed, response, calls = judge_once(judge, metric, request)
        verdict = verdict_from_reply(metric, parsed, response, judge_name=judge.name, threshold=threshold)
        verdict.judge_calls = calls
        return verdict

    return through_cache(cache, judge, metric, request, threshold, grade)


def through_cache(cache: Any, judge: Judge, form: Any, request: JudgeRequest, threshold: float,
                  grade: Callable[[], Verdict]) -> Verdict:
    """The cached verdict of ``judge`` on ``request`` under ``form``'s fingerprint, else ``grade()``'s,
    which is then cached (no cache: ``grade()``)."""
    if cache is None:
        return grade()
    key = cache.key(judge, form, request)
    hit = cache.get(key, threshold)
    if hit is not None:
        return hit
    verdict = grade()
    cache.put(key, verdict)
    return verdict


def likelihood_verdict(metric: Metric, form: ReferenceGain, model: LikelihoodModel, inputs: MetricInputs,
                       judge: Judge, *, threshold: float, cache: Any = None) -> Verdict:
    """``metric``'s verdict scored by its likelihood ``form`` from ``model`` (:mod:`..metrics.likelihood`);
    deterministic, so every sample of it is the same, and cached like a reply."""
    metric.check_inputs(inputs)

    def grade() -> Verdict:
        started = time.perf_counter()
        score, reason, details = form.score(model, inputs)
        return Verdict(
            metric=metric.name, score=score, raw_score=score, reason=reason, threshold=threshold,
            passed=score >= threshold, judge=judge.name, latency_s=time.perf_counter() - started,
            details=details, judge_calls=1,
        )

    # cached under the request a reply-judge would get, with the likelihood form's own fingerprint
    return through_cache(cache, judge, form, build_request(metric.for_judge(judge.name), inputs), threshold, grade)


def redact_data(value: Any) -> Any:
    """``value`` with every string in it (nested lists and dicts too) passed through ``redact``."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_data(item) for item in value]
    return value
