"""The pytest11 entry point, a table of contents: our hooks, options, markers and fixtures.

The run's state and the hooks that act on it live on one plugin object,
:class:`~pytest_llmjudge.run.run_plugin.LLMJudgeRun`, registered here at configure time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from . import hookspecs
from .judges import Judge
from .run.assertion import assert_llm_score as _assert_llm_score
from .run.run_plugin import PLUGIN_NAME, LLMJudgeRun, get_run
from .run.settings import addoptions

MARKERS = (
    "llm_dataset(path, *, id_column=None, sample=None, seed=None, required=None, group_by=None, concurrent=True): "
    "parametrize the test's `case` argument with the rows of a CSV/JSON/JSONL dataset; "
    "its cases run concurrently unless concurrent=False",
    "llm_repeat(samples=None, *, min_passes=None): sample each verdict of the test `samples` "
    "times; with min_passes=k the test passes when at least k samples pass",
    "llm_concurrent(enabled=True): run the cases of this parametrized test concurrently "
    "(up to --llm-concurrency at once); llm_dataset cases do by default",
)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    addoptions(parser)


def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    run = LLMJudgeRun(config)  # settings are checked here: a bad option is a usage error
    config.pluginmanager.register(run, PLUGIN_NAME)
    run.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    run = config.pluginmanager.get_plugin(PLUGIN_NAME)
    if isinstance(run, LLMJudgeRun):
        run.close()
        config.pluginmanager.unregister(run)


# -- fixtures ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def llm_judge(pytestconfig: pytest.Config) -> Judge:
    """The configured default judge (``--llm-judge``), built once per session."""
    return get_run(pytestconfig).session.judge()


@pytest.fixture
def assert_llm_score(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """Judge an answer and fail the test when its score is below the threshold.

    Example::

        def test_capital(assert_llm_score):
            answer = my_app("What is the capital of France?")
            verdict = assert_llm_score(answer, metric="correctness",
                                       input="What is the capital of France?",
                                       expected="Paris", threshold=0.6)
            assert verdict.reason

    Signature: ``assert_llm_score(output, *, metric="correctness", input=None, expected=None,
    context=None, criteria=None, threshold=None, judge=None) -> Verdict``. Below threshold it
    raises LLMScoreError (an AssertionError); a judge that cannot answer raises JudgeError.
    In an ``async def`` test, ``await assert_llm_score.async_(...)`` does the same without
    blocking the event loop.
    """
    session = get_run(request.config).session
    item = request.node

    def assert_llm_score(output: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True
        return _assert_llm_score(session, item, output, **kwargs)

    async def async_(output: Any, **kwargs: Any) -> Any:
        """The awaitable form for ``async def`` tests: judging runs off the event loop."""
        __tracebackhide__ = True
        import asyncio

        return await asyncio.wrap_future(session.in_thread(lambda: _assert_llm_score(session, item, output, **kwargs)))

    assert_llm_score.async_ = async_  # type: ignore[attr-defined]
    return assert_llm_score
