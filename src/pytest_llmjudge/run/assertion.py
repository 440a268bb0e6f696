"""``assert_llm_score``: judge an answer, record the verdict on the test, fail below threshold."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any

import pytest

from ..errors import ConfigError, JudgeError, LLMScoreError
from ..judges.base import Judge
from ..judging.evaluation import context_argument, text_argument
from ..judging.verdict import Verdict
from ..metrics import get_metric
from ..metrics.base import AnyMetric, CheckMetric, MetricInputs
from ..report.texts import item_texts
from ..secrets import redact
from .session import LLMJudgeSession


@dataclass
class Entry:
    """One ``assert_llm_score`` call of a test: its verdict or its judge error."""

    metric: str
    judge: str
    soft: bool
    verdict: Verdict | None = None
    error: BaseException | None = None
    texts: dict[str, Any] = field(default_factory=dict)  # what was judged (report/texts.py)

    def as_record(self) -> dict[str, Any]:
        """Plain data for the test report (crosses xdist)."""
        if self.verdict is not None:
            record = self.verdict.model_dump(mode="json", exclude={"details"})
            record["error"] = None
        else:
            record = {"metric": self.metric, "judge": self.judge, "error": _error_text(self.error)}
        record["soft"] = self.soft
        record.update(self.texts)
        return record


#: every ``assert_llm_score`` call of one test item, in call order
entries_key = pytest.StashKey[list[Entry]]()


def item_entries(item: pytest.Item) -> list[Entry]:
    return item.stash.get(entries_key, [])


def assert_llm_score(
    session: LLMJudgeSession,
    item: pytest.Item,
    output: Any,
    *,
    metric: str | AnyMetric = "correctness",
    input: str | None = None,  # noqa: A002 - the public name of the argument
    expected: str | None = None,
    context: str | list[str] | None = None,
    criteria: str | None = None,
    threshold: float | None = None,
    judge: Judge | str | None = None,
    min_passes: int | None = None,
    samples: int | None = None,
) -> Verdict:
    """Judge ``output`` with ``metric``; raise LLMScoreError below ``threshold``.

    ``samples`` draws that many verdicts (default ``--llm-repeat``); ``min_passes=k`` passes
    when at least k of them pass. Both may also come from ``@pytest.mark.llm_repeat``.
    """
    __tracebackhide__ = True
    metric_obj = get_metric(metric)
    if not isinstance(output, str):
        raise ConfigError(
            f"assert_llm_score: output must be a string, got {type(output).__name__}; "
            "pass the application's answer text"
        )
    where = "assert_llm_score"
    inputs = MetricInputs(
        output=output, input=text_argument(where, "input", input),
        # a deterministic check's `expected` is a value, pattern or JSON schema, not a judged text
        expected=expected if isinstance(metric_obj, CheckMetric) else text_argument(where, "expected", expected),
        context=context_argument(where, context), criteria=text_argument(where, "criteria", criteria),
    )
    metric_obj.check_inputs(inputs)
    if threshold is None:
        threshold = session.settings.threshold
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0.0 <= threshold <= 1.0:
        raise ConfigError(
            f"assert_llm_score: threshold must be in [0, 1] (a number: scores are normalized), got {threshold!r}"
        )
    judge_obj = session.resolve_judge(judge) if metric_obj.needs_judge else None
    marker = item.get_closest_marker("llm_repeat")
    if marker is not None:
        unknown = sorted(set(marker.kwargs) - {"samples", "min_passes"})
        if unknown or len(marker.args) > 1 or (marker.args and "samples" in marker.kwargs):
            raise ConfigError(
                f"@pytest.mark.llm_repeat(samples=None, *, min_passes=None): got args {marker.args!r}"
                + (f", unknown keyword(s) {', '.join(unknown)}" if unknown else "")
            )
        marked = {"samples": marker.kwargs.get("samples", marker.args[0] if marker.args else None),
                  "min_passes": marker.kwargs.get("min_passes")}
        _check_counts("@pytest.mark.llm_repeat", marked)
        samples = marked["samples"] if samples is None else samples
        min_passes = marked["min_passes"] if min_passes is None else min_passes
    _check_counts("assert_llm_score", {"samples": samples, "min_passes": min_passes})
    if samples is not None and min_passes is not None and min_passes > samples:
        raise ConfigError(f"assert_llm_score: min_passes={min_passes} is more than samples={samples}")
    plan = session.settings.repeat_plan(min_passes=min_passes, samples=samples)
    entry = Entry(
        metric=metric_obj.name,
        judge=judge_obj.name if judge_obj is not None else getattr(metric_obj, "judge_name", "check"),
        soft=session.settings.soft,
        texts=item_texts(item, inputs.as_dict(), session.settings),
    )
    item.stash.setdefault(entries_key, []).append(entry)
    try:  # judged here and now: the row is written as the verdict completes
        entry.verdict = session.evaluate(metric_obj, inputs, judge_obj, float(threshold), item.nodeid, plan,
                                         texts=entry.texts)
    except JudgeError as exc:
        entry.error = exc
        raise
    except BaseException:
        # the user's own exception (a bug in a custom metric's score function, a test timeout):
        # no verdict and no judge fault; the test fails with it, traceback and all
        item.stash[entries_key].remove(entry)
        raise
    if not entry.verdict.passed and not entry.soft:
        raise LLMScoreError(entry.verdict)
    return entry.verdict


def _check_counts(where: str, counts: dict[str, Any]) -> None:
    for name, value in counts.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{where}: {name} must be a positive integer, got {value!r}")


def _error_text(error: BaseException | None) -> str:
    if error is None:
        return ""
    return redact(f"{type(error).__name__}: {error}")
