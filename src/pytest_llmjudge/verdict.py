"""The Verdict: what a metric concluded about one answer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Verdict(BaseModel):
    """One graded answer. ``score`` is in [0, 1] and higher is better for every metric."""

    model_config = ConfigDict(frozen=False, extra="forbid")

    metric: str
    score: float = Field(ge=0.0, le=1.0)
    raw_score: float | None = None
    scale: tuple[float, float] = (0.0, 1.0)
    reason: str = ""
    threshold: float = 0.5
    passed: bool = False
    judge: str = ""
    cached: bool = False
    #: judge requests this verdict cost in this run (0 when it came from the cache)
    judge_calls: int = 0
    latency_s: float = 0.0
    usage: dict[str, int] = Field(default_factory=dict)
    #: argmax score (normalized) when ``score`` is probability-weighted, else None
    argmax_score: float | None = None
    #: probability of each allowed raw score, when the backend reported it
    score_distribution: dict[str, float] | None = None
    #: normalized scores of every sample when the verdict was sampled more than once
    samples: list[float] = Field(default_factory=list)
    #: samples fell on both sides of the threshold
    unstable: bool = False
    #: how pass/fail was decided ("single verdict", "mean of 5 samples", "3 of 5 samples passed ...")
    decision: str = "single verdict"
    #: scores of noise-floor re-judgements of this identical answer
    noise_samples: list[float] = Field(default_factory=list)
    #: extra details a metric wants to keep (statement-level verdicts, ...)
    details: dict[str, Any] = Field(default_factory=dict)

    def summary(self) -> str:
        """Short one-line form, e.g. ``correctness=0.80``."""
        return f"{self.metric}={self.score:.2f}"
