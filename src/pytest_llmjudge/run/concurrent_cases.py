"""Concurrent cases: up to ``--llm-concurrency`` whole test cases run at once.

A *group* is a run of consecutive items of one parametrized test function that opted in:
the cases of an ``llm_dataset`` (unless ``concurrent=False``) or a test marked
``@pytest.mark.llm_concurrent``. Within a group, on the main thread and in collection order,
each case is set up (its own function-scoped fixtures; broader ones shared as pytest shares
them), its body is handed to a worker thread, and, once it is done and every earlier case is
logged, it is torn down and its reports are logged through pytest's hooks: the terminal,
JUnit, ``-x``/``--maxfail``, ``--lf`` and other plugins see what a sequential run shows.

Cases this design cannot run safely run pytest's own protocol, one at a time; ``-v`` says
which and why, once per test function.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import inspect
import os
import signal
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import pytest

from . import pytest_internals as internals
from .case_output import CaseOutput
from .executor import DaemonExecutor

#: fixtures that capture the whole process (pytest allows one at a time)
_PROCESS_CAPTURE = ("capsys", "capsysbinary", "capfd", "capfdbinary", "caplog")


def opted_in(item: pytest.Item) -> bool:
    """An ``llm_dataset`` case (unless ``concurrent=False``) or an ``llm_concurrent`` test."""
    marker = item.get_closest_marker("llm_concurrent")
    if marker is not None:
        return bool(marker.args[0]) if marker.args else bool(marker.kwargs.get("enabled", True))
    dataset = item.get_closest_marker("llm_dataset")
    return dataset is not None and dataset.kwargs.get("concurrent", True) is not False


def run_reason(config: pytest.Config) -> str | None:
    """Why no case of this run may run concurrently, or None."""
    if hasattr(config, "workerinput"):
        return "pytest-xdist worker: xdist runs each worker's tests in its own order, one at a time"
    if config.getoption("usepdb", False) or config.getoption("trace", False):
        return "--pdb/--trace debug one test at a time"
    if any(config.getoption(name, False) for name in ("setuponly", "setupplan", "setupshow")):
        return "--setup-only/--setup-plan/--setup-show show one test's fixtures at a time"
    if _reruns(config):
        return "pytest-rerunfailures reruns a test in place"
    return None


def item_reason(item: pytest.Item) -> str | None:
    """Why this opted-in item must run the ordinary way, or None."""
    if not isinstance(item, pytest.Function) or not hasattr(item, "callspec"):
        return "not a parametrized test function"
    if asyncio_owned(item):
        return "an async plugin (pytest-asyncio, anyio, trio) runs it on its own event loop"
    captured = [name for name in _PROCESS_CAPTURE if name in item.fixturenames]
    if captured:
        return f"requests {', '.join(captured)}, which capture the whole process"
    if item.get_closest_marker("flaky") is not None:
        return "marked flaky: pytest-rerunfailures reruns it in place"
    if _signal_timeout(item):
        return "pytest-timeout's signal method interrupts the main thread (use --timeout-method=thread)"
    if not internals.supported(item):
        return f"pytest {pytest.__version__} lacks the internals concurrent cases need"
    return None


def asyncio_owned(item: pytest.Item) -> bool:
    """An ``async def`` test that an async plugin runs: pytest-asyncio (auto mode, or marked
    asyncio), anyio's plugin (marked anyio) or pytest-trio (marked trio)."""
    return inspect.iscoroutinefunction(getattr(item, "obj", None)) and (
        type(item).__module__.startswith("pytest_asyncio")
        or any(item.get_closest_marker(name) is not None for name in ("asyncio", "anyio", "trio"))
        or "anyio_backend" in getattr(item, "fixturenames", ()))


def runs_on_our_loop(item: pytest.Item) -> bool:
    """An ``async def`` test of ours that no async plugin runs: our event loop runs it."""
    return (inspect.iscoroutinefunction(getattr(item, "obj", None)) and not asyncio_owned(item)
            and ("assert_llm_score" in getattr(item, "fixturenames", ()) or opted_in(item)))


class _LoopThread:
    """One event loop on a daemon thread for the run's async cases: they run cooperatively on
    it (a client made once, such as an ``openai.AsyncOpenAI``, serves every case)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="llmjudge-loop", daemon=True)
        self.thread.start()

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


def _reruns(config: pytest.Config) -> bool:
    if not config.pluginmanager.hasplugin("rerunfailures"):
        return False
    count = config.getoption("reruns", None)
    if count is None:
        try:
            count = config.getini("reruns")
        except ValueError:
            count = None
    try:
        return int(count or 0) > 0
    except (TypeError, ValueError):
        return False


def _ini(config: pytest.Config, name: str) -> Any:
    try:
        return config.getini(name)
    except ValueError:
        return None


def _signal_timeout(item: pytest.Item) -> bool:
    """Whether pytest-timeout will time this item with SIGALRM (its default where available)."""
    config = item.config
    if not config.pluginmanager.hasplugin("timeout"):
        return False
    marker = item.get_closest_marker("timeout")
    timeout = None
    if marker is not None:
        timeout = marker.args[0] if marker.args else marker.kwargs.get("timeout")
    if timeout is None:
        timeout = config.getoption("timeout", None) or _ini(config, "timeout") or os.environ.get("PYTEST_TIMEOUT")
    try:
        if not timeout or float(timeout) <= 0:
            return False
    except (TypeError, ValueError):
        return False
    method = ((marker.kwargs.get("method") if marker is not None else None)
              or config.getoption("timeout_method", None) or _ini(config, "timeout_method")
              or os.environ.get("PYTEST_TIMEOUT_METHOD")
              or ("signal" if hasattr(signal, "SIGALRM") else "thread"))
    return method == "signal"


def _function_id(item: pytest.Item) -> str:
    return item.nodeid.split("[", 1)[0]


def _shared_params(item: pytest.Item) -> list[tuple[str, Any]]:
    """The parameters of broader-scoped fixtures: cases sharing them can run together."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    return [(name, value) for name, value in params.items() if internals.fixture_scope(item, name) != "function"]


def _same(a: list[tuple[str, Any]], b: list[tuple[str, Any]]) -> bool:
    if [name for name, _ in a] != [name for name, _ in b]:
        return False
    for (_, x), (_, y) in zip(a, b):
        try:
            if not (x is y or bool(x == y)):
                return False
        except Exception:  # noqa: BLE001 - values without a truthful ==
            return False
    return True


class _SerialAstParse:
    """``ast.parse`` under one lock while a group's bodies run on threads.

    CPython keeps the AST constructor's recursion depth in interpreter-wide state, so two
    threads parsing at once (pytest's assertion rewriter importing a module lazily, 3.11's
    traceback carets) can fail with "SystemError: AST constructor recursion depth mismatch"
    (python/cpython#106905). The public function is wrapped and put back when the group ends.
    """

    def __init__(self) -> None:
        self._original: Any = None

    def install(self) -> None:
        if self._original is not None:
            return
        original = ast.parse
        lock = threading.RLock()

        @functools.wraps(original)
        def parse(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return original(*args, **kwargs)

        self._original = original
        ast.parse = parse

    def uninstall(self) -> None:
        if self._original is not None:
            ast.parse = self._original
            self._original = None


@dataclass
class _Case:
    item: pytest.Item
    steps: list[tuple[Any, pytest.TestReport]] = field(default_factory=list)  # (CallInfo, report)
    done: threading.Event = field(default_factory=threading.Event)
    call: Any = None  # the body's CallInfo, until the main thread makes its report
    reported: bool = False  # the main thread has the body's report (or there is no body)
    escaped: BaseException | None = None  # KeyboardInterrupt or pytest.exit from the body

    def failures(self) -> int:
        return sum(1 for _, report in self.steps if report.failed and not hasattr(report, "wasxfail"))


class CaseGroup:
    """Runs one group: sets up, starts, tears down and logs its cases in collection order."""

    def __init__(self, items: list[pytest.Item], width: int, executor: DaemonExecutor) -> None:
        self.items = items
        self.width = width
        self.executor = executor
        self.session = items[0].session
        self.hooks = internals.phase_hooks(items[0])
        self.output = CaseOutput(items[0].config)
        self.members = {id(item): index for index, item in enumerate(items)}
        self.started = 0  # items[:started] were set up
        self.pending: deque[_Case] = deque()  # started, not yet logged, in order
        self.live: set[pytest.Item] = set()  # on pytest's setup stack
        self.closed = False
        self.output.install()
        self.ast_guard = _SerialAstParse()
        self.ast_guard.install()

    def owns(self, item: pytest.Item) -> bool:
        index = self.members.get(id(item))
        if index is None or self.closed:
            return False
        return index >= self.started or any(case.item is item for case in self.pending)

    # -- the main thread's loop
    def run_through(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        """Log every case up to ``item`` (starting more as room allows)."""
        try:
            while True:
                self._fill(self.members[id(item)])
                case = self.pending[0]
                self._wait(case)
                stopping = self._stopping()
                last = (self.started == len(self.items) or stopping) and len(self.pending) == 1
                self._finish(case, None if stopping else nextitem, last)
                if case.item is item:
                    break
            if self.session.shouldfail or self.session.shouldstop:
                # pytest stops after this item: the cases already running finish and are reported
                while self.pending:
                    case = self.pending[0]
                    self._wait(case)
                    self._finish(case, None, len(self.pending) == 1)
        except BaseException:
            self._abandon()
            raise
        if not self.pending and (self.started == len(self.items) or self._stopping()):
            self._close()

    def _wait(self, case: _Case) -> None:
        """Wait for ``case``'s body; meanwhile report the bodies that finish (for -x/--maxfail)."""
        while not case.done.wait(0.05):  # a bounded wait: Ctrl-C is seen at once
            self._report_done()
        self._report_done()

    def _report_done(self) -> None:
        # reports are made on the main thread: building a failure's repr parses source with
        # ast, which is not thread-safe on CPython 3.11 ("AST constructor recursion depth mismatch")
        for case in self.pending:
            if case.call is not None:
                call, case.call = case.call, None
                case.steps.append((call, case.item.ihook.pytest_runtest_makereport(item=case.item, call=call)))
            if case.done.is_set() and case.call is None:
                case.reported = True

    def _fill(self, needed: int) -> None:
        """Start cases while fewer than ``width`` bodies run; always up to index ``needed``."""
        lookahead = max(4 * self.width, 64)
        while self.started < len(self.items):
            must = self.started <= needed
            self._report_done()
            # counted by what the main thread has seen: a body that ends meanwhile is still
            # running here, so its failure cannot be missed by _stopping
            running = sum(1 for c in self.pending if not c.reported)
            if not must and (running >= self.width or len(self.pending) >= lookahead or self._stopping()):
                return
            self._start(self.items[self.started])
            self.started += 1

    def _stopping(self) -> bool:
        """-x/--maxfail: stop starting cases once the failures seen would stop the run."""
        session = self.session
        if session.shouldfail or session.shouldstop:
            return True
        maxfail = session.config.getoption("maxfail", 0)
        return bool(maxfail) and session.testsfailed + sum(c.failures() for c in self.pending) >= maxfail

    def _start(self, item: pytest.Item) -> None:
        case = _Case(item)
        self.pending.append(case)
        self.live.add(item)

        def setup() -> None:
            with internals.case_setup_state(item, self.live):
                self.hooks["setup"](item=item)

        with self.output.phase(item, "setup"):
            call = pytest.CallInfo.from_call(setup, when="setup", reraise=internals.reraised(item))
        report = item.ihook.pytest_runtest_makereport(item=item, call=call)
        case.steps.append((call, report))
        if report.passed:
            self.executor.submit(self._body, case)
        else:
            case.done.set()

    def _body(self, case: _Case) -> None:
        """On a worker thread: the case's call phase."""
        item = case.item
        try:
            with self.output.phase(item, "call"):
                case.call = pytest.CallInfo.from_call(lambda: self.hooks["call"](item=item), when="call",
                                                      reraise=internals.reraised(item))
        except BaseException as exc:  # noqa: BLE001 - re-raised on the main thread, in order
            case.escaped = exc
        finally:
            case.done.set()

    def _finish(self, case: _Case, nextitem: pytest.Item | None, last: bool) -> None:
        """Tear ``case`` down and log its reports (main thread, collection order)."""
        item = case.item
        if case.escaped is not None:
            raise case.escaped

        def teardown() -> None:
            with internals.case_setup_state(item, self.live, last):
                self.hooks["teardown"](item=item, nextitem=nextitem)

        with self.output.phase(item, "teardown"):
            call = pytest.CallInfo.from_call(teardown, when="teardown", reraise=internals.reraised(item))
        case.steps.append((call, item.ihook.pytest_runtest_makereport(item=item, call=call)))
        self.pending.popleft()
        self.live.discard(item)
        internals.release_request(item)
        ihook = item.ihook
        ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        for step_call, report in case.steps:
            ihook.pytest_runtest_logreport(report=report)
            if internals.interactive(step_call, report):
                ihook.pytest_exception_interact(node=item, call=step_call, report=report)
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)

    def _abandon(self) -> None:
        """Interrupted: cases still running are dropped (never torn down under their body)."""
        for case in self.pending:
            if not case.done.is_set():
                internals.forget_case(case.item)
        self._close()

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self.output.uninstall()
            self.ast_guard.uninstall()


class ConcurrentCases:
    """The plugin object that owns the concurrent-case state of a run (registered at configure)."""

    def __init__(self, config: pytest.Config, width: int) -> None:
        self.config = config
        self.width = width
        self.group: CaseGroup | None = None
        self.one_at_a_time: dict[str, str] = {}  # test function -> why its cases ran one at a time
        self._executor: DaemonExecutor | None = None
        self._index: dict[int, int] | None = None
        self._run_reason = run_reason(config) if width > 1 else None
        self._loop: _LoopThread | None = None
        self._loop_lock = threading.Lock()

    @property
    def in_flight(self) -> bool:
        return self.group is not None and not self.group.closed

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> bool | None:
        group = self.group
        if group is not None and not group.closed and group.owns(item):
            group.run_through(item, nextitem)
            if group.closed:
                self.group = None
            return True
        self.group = None
        items = self._group_from(item, nextitem)
        if items is None:
            return None
        if self._executor is None:
            self._executor = DaemonExecutor(self.width, name="llmjudge-case")
        self.group = CaseGroup(items, self.width, self._executor)
        self.group.run_through(item, nextitem)
        if self.group.closed:
            self.group = None
        return True

    def _group_from(self, item: pytest.Item, nextitem: pytest.Item | None) -> list[pytest.Item] | None:
        """The group that starts at ``item``, or None to run it the ordinary way."""
        if self.width <= 1 or not opted_in(item):
            return None
        reason = self._run_reason or item_reason(item)
        if reason is not None:
            self.one_at_a_time.setdefault(_function_id(item), reason)
            return None
        items = item.session.items
        if self._index is None:
            self._index = {id(it): i for i, it in enumerate(items)}
        start = self._index.get(id(item))
        if start is None or nextitem is not (items[start + 1] if start + 1 < len(items) else None):
            return None  # not pytest's own loop over session.items: nothing to look ahead at
        function, shared = _function_id(item), _shared_params(item)
        group = [item]
        for other in items[start + 1:]:
            if (_function_id(other) != function or other.parent is not item.parent or not opted_in(other)
                    or item_reason(other) is not None or not _same(_shared_params(other), shared)):
                break
            group.append(other)
        return group if len(group) > 1 else None

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> bool | None:
        """``async def`` tests that judge (or opted in) run on the run's event loop, in every mode."""
        if not runs_on_our_loop(pyfuncitem):
            return None
        with self._loop_lock:
            if self._loop is None:
                self._loop = _LoopThread()
        self._loop.run(pyfuncitem.obj(**internals.test_arguments(pyfuncitem)))
        return True

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.one_at_a_time or self.config.get_verbosity() < 1:
            return
        terminalreporter.section("llm concurrency")
        for function, reason in sorted(self.one_at_a_time.items()):
            terminalreporter.write_line(f"one case at a time: {function}: {reason}")

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown()
        if self._loop is not None:
            self._loop.close()
