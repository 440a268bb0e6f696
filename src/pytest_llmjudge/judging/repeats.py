"""Repeated judging: K samples per verdict, adaptive repeats, k-of-n gating, instability.

A verdict sampled several times gets the mean score; ``samples`` keeps every sample's score.
It is *unstable* when its samples fall on both sides of the threshold.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from ..judges.base import Sampling
from .verdict import Verdict

#: sample index offset of the noise-floor re-judgements, apart from the repeat samples
NOISE_INDEX_OFFSET = 1000


@dataclass(frozen=True)
class RepeatPlan:
    """How many samples a verdict gets and how it is decided."""

    samples: int = 1
    adaptive: bool = False
    max_samples: int = 5
    temperature: float = 0.7
    min_passes: int | None = None

    @property
    def repeated(self) -> bool:
        return self.adaptive or self.samples > 1 or self.min_passes is not None

    @property
    def budget(self) -> int:
        """The most samples this plan may take."""
        if self.adaptive:
            return max(self.max_samples, self.min_passes or 1)
        return max(self.samples, self.min_passes or 1)


SampleFn = Callable[[Sampling, int], Verdict]


def distribution_spread(verdict: Verdict) -> float | None:
    """Standard deviation (normalized) of the judge's own score distribution, if it gave one."""
    if not verdict.score_distribution:
        return None
    low, high = verdict.scale
    values = [(float(k) - low) / (high - low) for k in verdict.score_distribution]
    probs = list(verdict.score_distribution.values())
    mean = sum(v * p for v, p in zip(values, probs))
    return math.sqrt(max(0.0, sum(p * (v - mean) ** 2 for v, p in zip(values, probs))))


def _settled(scores: list[float], threshold: float, first: Verdict) -> bool:
    """True when the evidence so far puts the mean clearly on one side of the threshold."""
    if len(scores) == 1:
        spread = distribution_spread(first)
        # one call with logprobs: its own distribution says how sure the judge is
        return spread is not None and abs(scores[0] - threshold) > 2 * spread
    from ..analysis.stats import mean_interval

    _, low, high = mean_interval(scores, method="t")
    return not (low < threshold <= high) and not (low <= threshold < high)


def judge_repeated(sample: SampleFn, plan: RepeatPlan, threshold: float) -> Verdict:
    """Draw samples according to ``plan`` and combine them into one verdict."""
    sampling = Sampling(temperature=plan.temperature)
    verdicts = [sample(sampling, 0)]
    scores = [verdicts[0].score]
    budget = plan.budget
    while len(verdicts) < budget:
        if plan.adaptive:
            if plan.min_passes is not None:
                passes = sum(s >= threshold for s in scores)
                if passes >= plan.min_passes or len(scores) - passes > budget - plan.min_passes:
                    break  # decided either way
            elif _settled(scores, threshold, verdicts[0]):
                break
        verdicts.append(sample(sampling, len(verdicts)))
        scores.append(verdicts[-1].score)
    return combine(verdicts, plan, threshold)


def combine(verdicts: list[Verdict], plan: RepeatPlan, threshold: float) -> Verdict:
    """One verdict from several samples: mean score, all samples, k-of-n or mean decision."""
    scores = [v.score for v in verdicts]
    mean = statistics.fmean(scores)
    passes = sum(s >= threshold for s in scores)
    k_of_n = plan.min_passes is not None
    passed = passes >= plan.min_passes if plan.min_passes is not None else mean >= threshold
    # the reason of the sample closest to the mean speaks for the verdict
    representative = min(verdicts, key=lambda v: abs(v.score - mean))
    usage: dict[str, int] = {}
    for verdict in verdicts:
        for key, value in verdict.usage.items():
            usage[key] = usage.get(key, 0) + value
    raws = [v.raw_score for v in verdicts if v.raw_score is not None]
    return representative.model_copy(update={
        "score": mean,
        "raw_score": statistics.fmean(raws) if raws else None,
        "passed": passed,
        "threshold": threshold,
        "samples": scores,
        "unstable": passes not in (0, len(scores)),
        "decision_kind": "k_of_n" if k_of_n else "mean",
        "min_passes": plan.min_passes,
        "passes": passes,
        "adaptive": plan.adaptive,  # the summary's adaptive-repeats line counts these verdicts only
        "sample_budget": plan.budget if plan.adaptive else None,
        "cached": all(v.cached for v in verdicts),
        "judge_calls": sum(v.judge_calls for v in verdicts),
        "latency_s": sum(v.latency_s for v in verdicts),
        "usage": usage,
        "argmax_score": None,
        "score_distribution": None,
    })


def add_noise_samples(verdict: Verdict, sample: SampleFn, temperature: float, count: int = 3) -> None:
    """Re-judge the identical answer ``count`` times: the judge's own spread."""
    sampling = Sampling(temperature=temperature)
    for i in range(count):
        extra = sample(sampling, NOISE_INDEX_OFFSET + i)
        verdict.noise_samples.append(extra.score)
        verdict.judge_calls += extra.judge_calls
