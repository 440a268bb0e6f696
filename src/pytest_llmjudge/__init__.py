"""pytest-llmjudge: LLM regression testing with pytest. An LLM judge grades each answer."""

from __future__ import annotations

from .datasets import Case, load_cases
from .errors import ConfigError, DatasetError, JudgeError, LLMJudgeError, LLMScoreError
from .judges.base import Judge, JudgeRequest, JudgeResponse, Sampling
from .judging.verdict import Verdict
from .metrics import CheckMetric, Metric, MetricInputs, register_metric
from .report.results_file import read_results

__version__ = "0.1.0"

__all__ = [
    "Case", "CheckMetric", "ConfigError", "DatasetError", "Judge", "JudgeError", "JudgeRequest",
    "JudgeResponse", "LLMJudgeError", "LLMScoreError", "Metric", "MetricInputs", "Sampling",
    "Verdict", "load_cases", "read_results", "register_metric",
]
