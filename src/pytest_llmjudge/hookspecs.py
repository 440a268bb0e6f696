"""pytest-llmjudge's own hooks; implement them in a ``conftest.py`` or a plugin."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookspec(firstresult=True)
def pytest_llmjudge_make_judge(config: pytest.Config, spec: str) -> Any:
    """Return the Judge for ``spec`` (e.g. ``openai:gpt-4o-mini``), or None to let others try.

    Example, a conftest.py that grades with an in-process fake::

        from pytest_llmjudge.judges import FakeJudge

        def pytest_llmjudge_make_judge(config, spec):
            if spec == "fake:always-5":
                return FakeJudge(lambda request: {"reason": "ok", "score": 5}, name=spec)
    """
