"""The run: one plugin object per pytest config that owns the run's state, its hooks as methods.

``plugin.pytest_configure`` builds an :class:`LLMJudgeRun` and registers it under
:data:`PLUGIN_NAME`; ``pytest_unconfigure`` closes and unregisters it. It holds the resolved
settings, the judging session (judges, cache, results file), the concurrent-cases scheduler
(registered beside it as ``llmjudge-cases``, so ``-p no:llmjudge-cases`` still turns it off)
and, on the xdist controller or a plain run, the run's summary, baseline and reporters.
Fixtures find it with :func:`get_run` (``config.pluginmanager.get_plugin``); several configs in
one process (pytester) each have their own.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from ..errors import DatasetError, LLMJudgeError
from ..heap import freeze_if_pending
from ..judges import Judge, judge_options, make_judge
from ..report import junit
from ..report.collect import RunSummary
from ..report.reporters import BUILTIN_REPORTERS, Reporter, TerminalReport
from .assertion import entries_key, item_entries
from .concurrent_cases import ConcurrentCases
from .session import LLMJudgeSession
from .settings import Settings, check_output_paths, separate_path_argument_warnings

PLUGIN_NAME = "llmjudge-run"
CASES_PLUGIN = "llmjudge-cases"

#: a test using one of these fixtures needs the default judge
JUDGING_FIXTURES = frozenset({"assert_llm_score", "llm_judge"})


def get_run(config: pytest.Config) -> LLMJudgeRun:
    """The run of ``config`` (registered in ``pytest_configure``)."""
    run = config.pluginmanager.get_plugin(PLUGIN_NAME)
    if not isinstance(run, LLMJudgeRun):
        raise RuntimeError(f"pytest-llmjudge is not configured for this pytest run (no {PLUGIN_NAME!r} plugin)")
    return run


class LLMJudgeRun:
    """The state of one pytest run (one config) and the hooks that act on it."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.settings = Settings.from_config(config)
        #: an xdist worker judges and records; the controller (or a plain run) reports
        self.is_worker = hasattr(config, "workerinput")
        if not self.is_worker:
            check_output_paths(self.settings)  # a usage error before any test runs, not a lost report after
        self.session = LLMJudgeSession(config, self.settings)
        self.cases = ConcurrentCases(config, self.settings.concurrency)
        self.summary = RunSummary(prices=dict(self.settings.prices), settings=self.settings.public(),
                                  adaptive_budget=self.settings.repeat_max if self.settings.repeat == "auto" else None)
        self.reporters: list[Any] = []
        self.terminal: TerminalReport | None = None
        self.baseline: Any = None
        #: report writers that failed, as error lines for the end of the run
        self.report_errors: list[str] = []
        self._cache_problems_printed = 0

    def start(self) -> None:
        """Registered: add the neighbour plugins, start the reports, check the baseline and cache."""
        config = self.config
        config.pluginmanager.register(self.cases, CASES_PLUGIN)
        if not self.is_worker:
            from ..report import pytest_html

            pytest_html.register(config)
            self._start_reporters()
            if self.settings.baseline is not None:
                from ..analysis.regression import load_baseline

                try:  # a bad baseline is a usage error now, not a surprise after the run
                    self.baseline = load_baseline(self.settings.baseline)
                except LLMJudgeError as exc:
                    raise pytest.UsageError(f"--llm-baseline: {exc}") from None
        cache = self.session.cache
        if cache is not None and not self.is_worker:  # workers start after this
            if self.settings.cache_clear:
                cache.clear()  # removes the file: works on a corrupt cache too
            else:
                cache.check()  # a corrupt cache is set aside, with a warning at session start

    def _start_reporters(self) -> None:
        reporters = [factory() for factory in BUILTIN_REPORTERS]
        for extra in self.config.hook.pytest_llmjudge_reporters(config=self.config):
            for reporter in extra or ():
                if not isinstance(reporter, Reporter):
                    raise pytest.UsageError(
                        f"pytest_llmjudge_reporters returned {reporter!r}: a reporter needs the methods "
                        "start(run), verdict(row) and finish(summary)"
                    )
                reporters.append(reporter)
        # the terminal section comes last: it shows what the other reports noted
        reporters.sort(key=lambda reporter: isinstance(reporter, TerminalReport))
        for reporter in reporters:
            reporter.start(self)
            if isinstance(reporter, TerminalReport):
                self.terminal = reporter
        self.reporters = reporters

    def close(self) -> None:
        """Unconfigured: stop the scheduler's threads, close judges, cache and results file."""
        self.cases.close()
        if self.config.pluginmanager.get_plugin(CASES_PLUGIN) is self.cases:
            self.config.pluginmanager.unregister(self.cases)
        self.session.close()

    # -- xdist and judges -----------------------------------------------------------------
    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """xdist: workers share the controller's run id."""
        node.workerinput["llmjudge_run_id"] = self.session.run_id

    @pytest.hookimpl(trylast=True)
    def pytest_llmjudge_make_judge(self, config: pytest.Config, spec: str) -> Judge:
        settings = self.settings
        options = judge_options(
            base_url=settings.base_url, timeout=settings.timeout, max_retries=settings.max_retries,
            batch_size=settings.batch_size, cache_mode=settings.cache_mode, concurrency=settings.concurrency,
        )
        return make_judge(spec, **options, gates=self.session.gates)

    # -- collection -----------------------------------------------------------------------
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """``@pytest.mark.llm_dataset(path, ...)`` parametrizes ``case`` with the file's rows."""
        marker = metafunc.definition.get_closest_marker("llm_dataset")
        if marker is None:
            return
        from ..datasets import load_cases

        if "case" not in metafunc.fixturenames:
            raise pytest.Collector.CollectError(
                f"{metafunc.definition.nodeid}: @pytest.mark.llm_dataset parametrizes an argument "
                "named `case`; add `case` to the test's parameters"
            )
        if len(marker.args) != 1:
            raise pytest.Collector.CollectError(
                f"{metafunc.definition.nodeid}: llm_dataset takes one path, e.g. "
                '@pytest.mark.llm_dataset("data/qa.jsonl"); got ' + repr(marker.args)
            )
        allowed = {"id_column", "sample", "seed", "required", "concurrent", "group_by"}
        unknown = set(marker.kwargs) - allowed
        if unknown:
            raise pytest.Collector.CollectError(
                f"{metafunc.definition.nodeid}: llm_dataset got unknown argument(s) "
                f"{', '.join(sorted(unknown))}; accepted: {', '.join(sorted(allowed))}"
            )
        try:
            options = {k: v for k, v in marker.kwargs.items() if k not in ("concurrent", "group_by")}
            cases = load_cases(marker.args[0], base_dir=metafunc.definition.path.parent, **options)
        except DatasetError as exc:
            raise pytest.Collector.CollectError(str(exc)) from None
        from ..report.texts import check_group_by

        problem = check_group_by(marker.kwargs.get("group_by"), cases)
        if problem:
            raise pytest.Collector.CollectError(
                f"{metafunc.definition.nodeid}: llm_dataset({marker.args[0]!r}): {problem}")
        metafunc.parametrize("case", cases, ids=[case.id for case in cases])

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """The default judge is checked (every conftest is loaded now); the results file's CSV
        header names every dataset column of the collected tests."""
        from ..report.texts import case_columns

        if not self.is_worker:  # xdist workers: the controller checked at session start
            self._check_default_judge(session.items)
        columns: dict[str, None] = {}
        for item in session.items:
            callspec = getattr(item, "callspec", None)
            params = callspec.params if callspec else {}
            case = case_columns(params.get("case"), keep_texts=self.settings.results_texts) if callspec else None
            columns.update(dict.fromkeys(case or ()))
        self.session.results.set_case_columns(list(columns))

    # -- running --------------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if report.when == "call":
            _attach(item, report)
        return report

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        item.stash[entries_key] = []  # a rerun (pytest-rerunfailures) starts with no verdicts

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        if not self.cases.in_flight:  # never while other cases hold their objects
            freeze_if_pending()  # between two tests: a judge SDK imported meanwhile leaves the GC's way

    @pytest.hookimpl(trylast=True)  # after pytest wrote the test's own line
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Controller: each verdict of a call report goes into the summary and to every reporter."""
        records = getattr(report, "llmjudge_records", None)
        if self.is_worker or not records or report.when != "call":
            return
        for record in records:
            self.summary.add(report.nodeid, record)
            row = {"test_id": report.nodeid, **record}
            for reporter in self.reporters:
                self._call(reporter, "verdict", row)
        if junit.junit_family(self.config) == "xunit2":
            junit.write_system_out(self.config, report, junit.per_test_properties(records))

    def pytest_report_teststatus(self, report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, str] | None:
        """With -v, each test line shows its scores."""
        records = getattr(report, "llmjudge_records", None)
        if not records or report.when != "call" or config.get_verbosity() <= 0 or hasattr(report, "wasxfail"):
            return None
        scores = " ".join(
            f"{r['metric']}=error" if r.get("error") else f"{r['metric']}={r['score']:.2f}" for r in records
        )
        # a plain word: pytest colours it by outcome; a (word, markup) pair is printed verbatim in
        # the short summary (-r) by pytest < 8.3
        if report.passed:
            return "passed", ".", f"PASSED [{scores}]"
        if report.failed:
            return "failed", "F", f"FAILED [{scores}]"
        return None

    # -- session start and finish ---------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and not self.is_worker:
            for line in separate_path_argument_warnings(self.config):
                reporter.write_line(line, yellow=True)
        self._print_cache_problems()
        if self.settings.judge is not None and not self.is_worker and self.config.pluginmanager.has_plugin("dsession"):
            self._check_default_judge(None)  # xdist: the controller collects nothing; check before workers run
        if self.settings.preflight is not None and not self.is_worker:
            self._preflight()

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Decide the gates and the baseline comparison, then let every reporter finish."""
        if self.is_worker:
            return
        summary = self.summary
        summary.gate_results = summary.gates(self.settings.min_pass_rates)
        if any(not gate.ok for gate in summary.gate_results) and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if self.baseline is not None:
            from ..analysis.regression import compare

            summary.comparison = compare(self.baseline, summary.records, tolerance=self.settings.regression_tolerance,
                                         group_by=summary.group_columns())
            if summary.comparison.regressed:
                if session.exitstatus == pytest.ExitCode.OK:
                    session.exitstatus = pytest.ExitCode.TESTS_FAILED
                if not summary.metrics:  # no llm judge summary section: say it anyway
                    self.report_errors.append("FAILED " + summary.comparison.summary_line())
        # each report on its own: one that cannot be written never stops the others (nor JUnit)
        for reporter in self.reporters:
            self._call(reporter, "finish", summary)
        summary.notes.extend(self.session.gates.notes())

    def _call(self, reporter: Any, method: str, argument: Any) -> None:
        """One reporter call; an exception becomes one error line at the end of the run."""
        try:
            getattr(reporter, method)(argument)
        except Exception as exc:  # noqa: BLE001 - reported as a line; the other reports still get written
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else f"{type(exc).__name__}: {exc}"
            option = getattr(reporter, "option", "") or type(reporter).__name__
            target = getattr(reporter, "target", None)
            where = f"could not write {target}" if target is not None else f"{method} failed"
            line = f"llmjudge: ERROR: {option}: {where}: {reason}"
            if line not in self.report_errors:
                self.report_errors.append(line)

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        self._print_cache_problems()
        for line in self.report_errors:
            terminalreporter.write_line(line, red=True, bold=True)
        cache = self.session.cache
        if self.settings.cache_stats and cache is not None:
            stats = cache.stats()
            terminalreporter.write_line(
                f"llmjudge cache: {stats['entries']} entries, {stats['bytes'] / 1024:.1f} KiB in {stats['path']}"
            )
        lines = self.terminal.lines() if self.terminal is not None else []
        if not lines:
            return
        terminalreporter.section("llm judge summary")
        for line in lines:
            if line.startswith("FAILED"):
                terminalreporter.write_line(line, red=True, bold=True)
            else:
                terminalreporter.write_line(line)

    # -- helpers --------------------------------------------------------------------------
    def _print_cache_problems(self) -> None:
        """Each verdict-cache warning line once: those found so far (at session start or the end)."""
        cache = self.session.cache
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if cache is None or reporter is None:
            return
        for line in cache.problems[self._cache_problems_printed:]:
            reporter.write_line(line, yellow=True)
        self._cache_problems_printed = len(cache.problems)

    def _check_default_judge(self, items: list[pytest.Item] | None) -> None:
        """Resolve the default judge's spec and model once, before any test runs, without loading
        the model: a problem is one usage error with the fix. An explicit ``--llm-judge`` is
        always checked; the implicit default only when a collected test judges (``items``)."""
        from ..judges.spec import spec_problem

        settings = self.settings
        explicit = settings.judge is not None
        if not explicit and items is not None and not any(
            JUDGING_FIXTURES.intersection(getattr(item, "fixturenames", ())) for item in items
        ):
            return
        spec = self.session.default_spec
        problem = spec_problem(spec, base_url=settings.base_url, require_key=settings.cache_mode != "replay")
        if problem is None:
            return
        # a conftest or plugin may build this spec itself (pytest_llmjudge_make_judge): ask them
        others = self.config.pluginmanager.subset_hook_caller("pytest_llmjudge_make_judge", remove_plugins=[self])
        judge = others(config=self.config, spec=spec)
        if judge is not None:
            self.session.adopt_judge(spec, judge)
            return
        where = "--llm-judge" if explicit else f"default judge {spec} (no --llm-judge given, no OPENAI_API_KEY set)"
        raise pytest.UsageError(f"{where}: {problem}")

    def _preflight(self) -> None:
        """Grade the labelled preflight set; stop the session when the judge disagrees too often."""
        from ..analysis.preflight import run_preflight

        settings = self.settings
        assert settings.preflight is not None
        self._check_default_judge(None)
        try:
            result = run_preflight(
                settings.preflight, self.session.judge(), threshold=settings.threshold,
                minimum=settings.preflight_min, workers=settings.concurrency, cache=self.session.cache,
            )
        except LLMJudgeError as exc:
            raise pytest.UsageError(f"--llm-preflight: {exc}") from None
        if not result.ok:
            raise pytest.UsageError(result.describe())  # printed once (pytest.exit printed it twice)
        self.summary.notes.append(result.describe())


def _attach(item: pytest.Item, call: pytest.TestReport) -> None:
    """Put the item's verdict records (those made up to the end of its body) on its call report."""
    entries = item_entries(item)
    if not entries:
        return
    records = [entry.as_record() for entry in entries]
    call.llmjudge_records = records  # type: ignore[attr-defined]
    if junit.junit_family(item.config) != "xunit2":
        # pytest's JUnit writer reads user_properties from the teardown report, built later
        # from item.user_properties
        item.user_properties.extend(junit.per_test_properties(records))
