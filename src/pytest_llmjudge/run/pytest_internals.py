"""The one place that touches pytest internals: what running several cases at once needs.

pytest runs one function item at a time: ``SetupState`` is a stack with room for a single
item, and a function-scoped ``FixtureDef`` caches one value. Concurrent cases (see
:mod:`pytest_llmjudge.run.concurrent_cases`) need each case set up on its own, so this module
gives each case private copies of its function-scoped fixture definitions and puts several
items on the setup stack side by side. Each internal name below says why it is used and the
pytest versions it was checked on (8.0 and 9.2). Anything missing makes :func:`supported`
false, and every case then runs pytest's own protocol, one at a time.

Public API everywhere else: hooks through ``item.ihook`` and pluggy's ``subset_hook_caller``,
``CallInfo.from_call``, ``pytest_runtest_makereport``, ``Item.add_report_section``.
"""

from __future__ import annotations

import copy
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

if sys.version_info < (3, 11):  # a pytest dependency on 3.10
    from exceptiongroup import BaseExceptionGroup

PYTEST_VERSION = tuple(pytest.version_tuple[:2])

#: Plugins whose per-phase hooks keep process-wide state (the current capture buffer, the
#: current log handler) and therefore cannot run for two cases at once; concurrent cases get
#: the same per-case sections from :mod:`pytest_llmjudge.run.case_output` instead. The names are
#: the ones pytest registers them under (public through ``pluginmanager.getplugin``).
_PER_PHASE_GLOBAL = ["capturemanager", "logging-plugin"]
if PYTEST_VERSION < (8, 4):
    # before 8.4 these swapped sys.unraisablehook / threading.excepthook around each phase
    _PER_PHASE_GLOBAL += ["unraisableexception", "threadexception"]


def supported(item: pytest.Item) -> bool:
    """Whether the internals below exist in this pytest, for this item."""
    state = getattr(item.session, "_setupstate", None)
    request = getattr(item, "_request", None)
    return (isinstance(getattr(state, "stack", None), dict) and hasattr(item, "_fixtureinfo")
            and (request is False or isinstance(getattr(request, "_arg2fixturedefs", None), dict)))


def phase_hooks(item: pytest.Item) -> dict[str, Any]:
    """``pytest_runtest_setup/call/teardown`` for ``item`` without the plugins above.

    Run setup and teardown inside :func:`case_setup_state`: pytest's runner (and, before 8.2,
    the nose plugin) reach ``SetupState`` from their own impls, in pluggy's order.
    """
    pm = item.config.pluginmanager
    excluded = {p for p in (pm.getplugin(name) for name in _PER_PHASE_GLOBAL) if p is not None}
    hooks = {}
    for when, name in (("setup", "pytest_runtest_setup"), ("call", "pytest_runtest_call"),
                       ("teardown", "pytest_runtest_teardown")):
        # item.ihook may already leave out conftest plugins of other directories: keep that
        everyone = {impl.plugin for impl in getattr(pm.hook, name).get_hookimpls()}
        for_item = {impl.plugin for impl in getattr(item.ihook, name).get_hookimpls()}
        hooks[when] = pm.subset_hook_caller(name, remove_plugins=list((everyone - for_item) | excluded))
    return hooks


class _CaseSetupState:
    """Stands in for ``Session._setupstate`` while one case is set up or torn down."""

    def __init__(self, real: Any, item: pytest.Item, cases: set[pytest.Item], last: bool) -> None:
        self._real, self._item, self._cases, self._last = real, item, cases, last

    def setup(self, item: pytest.Item) -> None:
        _setup_case(self._real, item, self._cases)

    def teardown_exact(self, nextitem: pytest.Item | None) -> None:
        _teardown_case(self._real, self._item, nextitem, self._last)

    def __getattr__(self, name: str) -> Any:  # addfinalizer, stack, is_node_active
        return getattr(self._real, name)


@contextmanager
def case_setup_state(item: pytest.Item, cases: set[pytest.Item], last: bool = False) -> Iterator[None]:
    """While the block runs (on the main thread), pytest's runner sets ``item`` up and tears it
    down beside the other ``cases`` of its group; the ``last`` case also tears down to the next item.

    Session._setupstate (pytest >= 7.0) is swapped for the block: setup() and teardown_exact()
    are the only calls that differ; addfinalizer() from the cases' threads still reaches the stack.
    """
    session = item.session
    real = session._setupstate
    session._setupstate = _CaseSetupState(real, item, cases, last)  # type: ignore[assignment]
    try:
        yield
    finally:
        session._setupstate = real


def _isolate_function_fixtures(item: pytest.Item) -> None:
    # item._request._arg2fixturedefs (pytest >= 8.0): argname -> FixtureDefs the request
    # resolves; pytest 9 shares this dict between all items of one function. The case gets its
    # own dict holding fresh copies of the function-scoped FixtureDefs, whose cached_result and
    # _finalizers (pytest >= 8.0) would otherwise hold another case's value.
    request = item._request  # type: ignore[attr-defined]
    own = {}
    for name, defs in request._arg2fixturedefs.items():
        own[name] = tuple(_fresh(d) if d.scope == "function" else d for d in defs)
    request._arg2fixturedefs = own


def _fresh(fixturedef: Any) -> Any:
    twin = copy.copy(fixturedef)
    twin.cached_result = None
    twin._finalizers = []
    return twin


def _setup_case(real: Any, item: pytest.Item, cases: set[pytest.Item]) -> None:
    if getattr(item, "_request", None) is False:  # torn down once already (a rerun): a new request
        item._initrequest()  # type: ignore[attr-defined]  # Function._initrequest (pytest >= 7.0)
    _isolate_function_fixtures(item)
    # SetupState.stack (pytest >= 7.0): {node: ([finalizers], exc_info or None)} in setup order;
    # the collectors above the cases (module, class) stay on it for the whole group
    stack = real.stack
    if not any(node in cases for node in stack if node is not item):
        real.setup(item)  # the parents too, as pytest does
        return
    for node, (_, exc) in list(stack.items()):
        if exc and node not in cases:  # a parent failed its setup: every item under it fails alike
            raise exc[0].with_traceback(exc[1])
    stack[item] = ([item.teardown], None)
    item.setup()


def _teardown_case(real: Any, item: pytest.Item, nextitem: pytest.Item | None, last: bool) -> None:
    finalizers, _ = real.stack.pop(item, ([], None))
    errors: list[BaseException] = []
    while finalizers:
        try:
            finalizers.pop()()
        except (Exception, pytest.skip.Exception, pytest.fail.Exception) as exc:  # noqa: BLE001 - as pytest does:
            errors.append(exc)  # all run, then raised together
    if last:
        try:
            real.teardown_exact(nextitem)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise BaseExceptionGroup("errors during test teardown", errors[::-1])


def forget_case(item: pytest.Item) -> None:
    """Drop an interrupted case from the setup stack without running its finalizers."""
    item.session._setupstate.stack.pop(item, None)


def release_request(item: pytest.Item) -> None:
    # as runtestprotocol does after teardown: the fixture values can be freed
    if hasattr(item, "_request"):
        item._request = False
        item.funcargs = None  # type: ignore[attr-defined]


def test_arguments(item: pytest.Item) -> dict[str, Any]:
    # Function._fixtureinfo.argnames (pytest >= 7.0): the test function's own arguments, as
    # pytest's pytest_pyfunc_call passes them
    return {arg: item.funcargs[arg] for arg in item._fixtureinfo.argnames}  # type: ignore[attr-defined]


def fixture_scope(item: pytest.Item, argname: str) -> str:
    # Function._fixtureinfo.name2fixturedefs (pytest >= 7.0): which scope a parametrized
    # argument lives in; a broader one is shared and must be equal across a group
    defs = item._fixtureinfo.name2fixturedefs.get(argname)  # type: ignore[attr-defined]
    return str(defs[-1].scope) if defs else "function"


def reraised(item: pytest.Item) -> tuple[type[BaseException], ...]:
    """What escapes a phase instead of failing the test, as in pytest's runner."""
    if item.config.getoption("usepdb", False):
        return (pytest.exit.Exception,)
    return (pytest.exit.Exception, KeyboardInterrupt)


def interactive(call: Any, report: pytest.TestReport) -> bool:
    """Whether pytest would call ``pytest_exception_interact`` (as runner.check_interactive_exception)."""
    if call.excinfo is None or hasattr(report, "wasxfail"):
        return False
    import bdb

    return not isinstance(call.excinfo.value, (pytest.skip.Exception, bdb.BdbQuit))


def log_formatter(config: pytest.Config) -> logging.Formatter:
    # LoggingPlugin.formatter (pytest >= 6.0): the formatter of its "Captured log" sections
    formatter = getattr(config.pluginmanager.getplugin("logging-plugin"), "formatter", None)
    if isinstance(formatter, logging.Formatter):
        return formatter
    return logging.Formatter(config.getini("log_format"), config.getini("log_date_format"))
