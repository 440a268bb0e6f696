"""Judge backends, chosen by a spec string: ``openai:MODEL``, ``hf:MODEL``, ``local:MODEL``."""

from __future__ import annotations

import os
from typing import Any

from ..errors import ConfigError
from .base import Judge, JudgeRequest, JudgeResponse, Sampling
from .fake import FakeJudge
from .retry import DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_S

BACKENDS = ("openai", "hf", "local")
DEFAULT_OPENAI_MODEL = "gpt-4o-mini"
DEFAULT_LOCAL_SPEC = "local:smollm2-135m"


def default_judge_spec(base_url: str | None = None) -> str:
    """The judge used when none is configured: OpenAI with a key or a base URL, else the local one."""
    if os.environ.get("OPENAI_API_KEY") or base_url or os.environ.get("OPENAI_BASE_URL"):
        return f"openai:{DEFAULT_OPENAI_MODEL}"
    return DEFAULT_LOCAL_SPEC


def judge_options(
    *, base_url: str | None, timeout: float, max_retries: int, batch_size: int, cache_mode: str,
    concurrency: int | None = None,
) -> dict[str, Any]:
    """:func:`make_judge`'s options from the plugin's settings or a command's flags.

    In replay mode the judge is never called, so no API key is required.
    """
    options: dict[str, Any] = {
        "base_url": base_url, "timeout": timeout, "max_retries": max_retries, "batch_size": batch_size,
        "require_key": cache_mode != "replay",
    }
    if concurrency is not None:
        options["concurrency"] = concurrency
    return options


def make_judge(spec: str, **options: Any) -> Judge:
    """Build a judge from its spec. ``options``: base_url, timeout, max_retries, batch_size, ...;
    ``gates`` (an :class:`~pytest_llmjudge.judges.retry.EndpointGates`) shares endpoint limits
    with other judges of a run (the plugin passes its run's)."""
    backend, sep, model = spec.partition(":")
    if not sep or not model:
        raise ConfigError(
            f"invalid judge spec {spec!r}: use BACKEND:MODEL with BACKEND one of "
            f"{', '.join(BACKENDS)}, e.g. openai:gpt-4o-mini or local:smollm2-135m"
        )
    base_url = options.get("base_url")
    timeout = float(options.get("timeout", DEFAULT_TIMEOUT_S))
    max_retries = int(options.get("max_retries", DEFAULT_MAX_RETRIES))
    # requests in flight per endpoint before a 429 lowers it (the run's --llm-concurrency)
    max_in_flight = int(options.get("concurrency") or DEFAULT_MAX_IN_FLIGHT)
    gates = options.pop("gates", None)
    if backend == "openai":
        from .openai_compat import OpenAIJudge

        return OpenAIJudge(
            model, base_url=base_url, timeout=timeout, max_retries=max_retries,
            require_key=bool(options.get("require_key", True)), max_in_flight=max_in_flight, gates=gates,
        )
    if backend == "hf":
        from .hf_inference import HFInferenceJudge

        return HFInferenceJudge(model, base_url=base_url, timeout=timeout, max_retries=max_retries,
                                max_in_flight=max_in_flight, gates=gates)
    if backend == "local":
        from .local import make_local_judge

        return make_local_judge(model, **options)
    raise ConfigError(f"unknown judge backend {backend!r} in {spec!r}; use one of {', '.join(BACKENDS)}")


__all__ = [
    "DEFAULT_LOCAL_SPEC", "DEFAULT_MAX_RETRIES", "DEFAULT_TIMEOUT_S", "FakeJudge", "Judge", "JudgeRequest",
    "JudgeResponse", "Sampling", "default_judge_spec", "judge_options", "make_judge",
]
