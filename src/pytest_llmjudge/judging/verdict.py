"""The Verdict: what a metric concluded about one answer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

#: how pass/fail was decided: one verdict, the mean of samples, or k of n samples passing
DecisionKind = Literal["single", "mean", "k_of_n"]


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
    #: how pass/fail was decided (``decision`` says it in words)
    decision_kind: DecisionKind = "single"
    #: the samples were drawn adaptively (``--llm-repeat auto``), at most ``sample_budget`` of them
    adaptive: bool = False
    sample_budget: int | None = None
    #: k-of-n gating: samples that had to pass, and samples that did (``decision_kind == "k_of_n"``)
    min_passes: int | None = None
    passes: int | None = None
    #: scores of noise-floor re-judgements of this identical answer
    noise_samples: list[float] = Field(default_factory=list)
    #: extra details a metric wants to keep (statement-level verdicts, ...)
    details: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _drop_rendered_decision(cls, data: Any) -> Any:
        # ``decision`` is rendered from the fields above; a dump (cache entry, record) carries it
        if isinstance(data, dict) and "decision" in data:
            data = {k: v for k, v in data.items() if k != "decision"}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def decision(self) -> str:
        """How pass/fail was decided, in words: "single verdict", "mean of 5 samples",
        "3 of 5 samples passed (need 3)", each repeated one with ", adaptive (at most N)"."""
        if self.decision_kind == "k_of_n":
            text = f"{self.passes} of {len(self.samples)} samples passed (need {self.min_passes})"
        elif self.decision_kind == "mean":
            text = f"mean of {len(self.samples)} samples"
        else:
            text = "single verdict"
        if self.adaptive:
            text += f", adaptive (at most {self.sample_budget})"
        return text

    def summary(self) -> str:
        """Short one-line form, e.g. ``correctness=0.80``."""
        return f"{self.metric}={self.score:.2f}"
