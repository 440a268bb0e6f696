"""Metrics by name: the built-in judged ones and the deterministic checks."""

from __future__ import annotations

from ..errors import ConfigError
from .base import AnyMetric, CheckMetric, MaxChars, MaxItems, Metric, MetricInputs, bounded_list, bounded_str
from .builtin import BUILTIN_METRICS
from .checks import CHECK_METRICS
from .fencing import split_fenced, unfence

_registry: dict[str, AnyMetric] = {**BUILTIN_METRICS, **CHECK_METRICS}


def register_metric(metric: AnyMetric) -> None:
    """Make ``metric`` available by name to ``assert_llm_score(metric="name")``."""
    _registry[metric.name] = metric


def get_metric(metric: str | AnyMetric) -> AnyMetric:
    """Resolve a metric name (or pass a Metric through)."""
    if isinstance(metric, (Metric, CheckMetric)):
        return metric
    try:
        return _registry[metric]
    except KeyError:
        raise ConfigError(
            f"unknown metric {metric!r}; built in: {', '.join(sorted(_registry))}, "
            "or pass a Metric(...) object"
        ) from None


__all__ = [
    "AnyMetric", "CheckMetric", "MaxChars", "MaxItems", "Metric", "MetricInputs", "bounded_list", "bounded_str",
    "get_metric", "register_metric", "split_fenced", "unfence",
]
