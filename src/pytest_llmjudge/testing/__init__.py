"""Helpers for testing a judge's wiring: :class:`FakeJudgeServer`, a fake OpenAI-compatible /
TGI chat-completions server with fault switches (see the README's "Testing your judge wiring").

The server module (standard library only) loads when one of its names is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .fake_server import FakeJudgeServer, Latency

__all__ = ["FakeJudgeServer", "Latency"]


def __getattr__(name: str) -> Any:
    # lazy, so that `python -m pytest_llmjudge.testing.fake_server` runs the module only once
    if name in __all__:
        from . import fake_server

        return getattr(fake_server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
