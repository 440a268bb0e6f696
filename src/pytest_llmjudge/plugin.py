"""The pytest11 entry point: options, fixtures, the ``llm_dataset`` marker and report hooks.

This module is wiring only; each responsibility lives in its own module.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import pytest

from . import hookspecs
from .assertion import assert_llm_score as _assert_llm_score, entries_key, item_entries
from .concurrent_cases import ConcurrentCases
from .errors import DatasetError, LLMJudgeError
from .heap import freeze_if_pending
from .judges import Judge, judge_options, make_judge
from .judges.retry import endpoint_notes
from .report import junit
from .report.collect import GateResult, RunSummary
from .report.terminal import summary_lines
from .session import LLMJudgeSession
from .settings import Settings, addoptions, check_output_paths, separate_path_argument_warnings

session_key = pytest.StashKey[LLMJudgeSession]()
summary_key = pytest.StashKey[RunSummary]()
gates_key = pytest.StashKey[list[GateResult]]()
extra_lines_key = pytest.StashKey[list[str]]()
cache_problems_key = pytest.StashKey[int]()
report_errors_key = pytest.StashKey[list[str]]()
baseline_key = pytest.StashKey[Any]()
comparison_key = pytest.StashKey[Any]()
CASES_PLUGIN = "llmjudge-cases"


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    addoptions(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "llm_dataset(path, *, id_column=None, sample=None, seed=None, required=None, group_by=None, concurrent=True): "
        "parametrize the test's `case` argument with the rows of a CSV/JSON/JSONL dataset; "
        "its cases run concurrently unless concurrent=False",
    )
    config.addinivalue_line(
        "markers",
        "llm_repeat(samples=None, *, min_passes=None): sample each verdict of the test `samples` "
        "times; with min_passes=k the test passes when at least k samples pass",
    )
    config.addinivalue_line(
        "markers",
        "llm_concurrent(enabled=True): run the cases of this parametrized test concurrently "
        "(up to --llm-concurrency at once); llm_dataset cases do by default",
    )
    settings = Settings.from_config(config)
    if not hasattr(config, "workerinput"):
        check_output_paths(settings)  # a usage error before any test runs, not a lost report after
    session = LLMJudgeSession(config, settings)
    config.stash[session_key] = session
    config.pluginmanager.register(ConcurrentCases(config, settings.concurrency), CASES_PLUGIN)
    if not hasattr(config, "workerinput"):
        from .report import pytest_html

        pytest_html.register(config)
        summary = config.stash[summary_key] = RunSummary()
        config.pluginmanager.register(SummaryCollector(config, summary), "llmjudge-summary")
        if config.get_verbosity() > 0:
            from .report.progress import VerdictProgress

            config.pluginmanager.register(VerdictProgress(config, summary), "llmjudge-progress")
        if settings.baseline is not None:
            from .regression import load_baseline

            try:  # a bad baseline is a usage error now, not a surprise after the run
                config.stash[baseline_key] = load_baseline(settings.baseline)
            except LLMJudgeError as exc:
                raise pytest.UsageError(f"--llm-baseline: {exc}") from None
    if session.cache is not None and not hasattr(config, "workerinput"):  # workers start after this
        if settings.cache_clear:
            session.cache.clear()  # removes the file: works on a corrupt cache too
        else:
            session.cache.check()  # a corrupt cache is set aside, with a warning at session start


def pytest_unconfigure(config: pytest.Config) -> None:
    cases = config.pluginmanager.getplugin(CASES_PLUGIN)
    if cases is not None:
        cases.close()
    session = config.stash.get(session_key, None)
    if session is not None:
        session.close()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist: workers share the controller's run id."""
    node.workerinput["llmjudge_run_id"] = node.config.stash[session_key].run_id


@pytest.hookimpl(trylast=True)
def pytest_llmjudge_make_judge(config: pytest.Config, spec: str) -> Judge:
    settings = config.stash[session_key].settings
    return make_judge(spec, **judge_options(
        base_url=settings.base_url, timeout=settings.timeout, max_retries=settings.max_retries,
        batch_size=settings.batch_size, cache_mode=settings.cache_mode, concurrency=settings.concurrency,
    ))


# -- dataset marker ---------------------------------------------------------------------
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("llm_dataset")
    if marker is None:
        return
    from .datasets import load_cases

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
    from .report.texts import check_group_by

    problem = check_group_by(marker.kwargs.get("group_by"), cases)
    if problem:
        raise pytest.Collector.CollectError(f"{metafunc.definition.nodeid}: llm_dataset({marker.args[0]!r}): {problem}")
    metafunc.parametrize("case", cases, ids=[case.id for case in cases])


def pytest_collection_finish(session: pytest.Session) -> None:
    """The default judge is checked (every conftest is loaded now); the results file's CSV
    header names every dataset column of the collected tests."""
    from .report.texts import case_columns

    if not hasattr(session.config, "workerinput"):  # xdist workers: the controller checked at session start
        _check_default_judge(session.config, session.items)
    llm = session.config.stash[session_key]
    columns: dict[str, None] = {}
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        case = case_columns(callspec.params.get("case"), keep_texts=llm.settings.results_texts) if callspec else None
        columns.update(dict.fromkeys(case or ()))
    llm.results.set_case_columns(list(columns))


# -- fixtures ---------------------------------------------------------------------------
@pytest.fixture(scope="session")
def llm_judge(pytestconfig: pytest.Config) -> Judge:
    """The configured default judge (``--llm-judge``), built once per session."""
    return pytestconfig.stash[session_key].judge()


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
    session = request.config.stash[session_key]
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


# -- running and reporting --------------------------------------------------------------
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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        _attach(item, report)
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[entries_key] = []  # a rerun (pytest-rerunfailures) starts with no verdicts


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    cases = item.config.pluginmanager.getplugin(CASES_PLUGIN)
    if cases is None or not cases.in_flight:  # never while other cases hold their objects
        freeze_if_pending()  # between two tests: a judge SDK imported meanwhile leaves the GC's way


class SummaryCollector:
    """Aggregates the verdict records of test reports; registered on the controller only."""

    def __init__(self, config: pytest.Config, summary: RunSummary) -> None:
        self.config = config
        self.summary = summary

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        records = getattr(report, "llmjudge_records", None)
        if not records or report.when != "call":
            return
        for record in records:
            self.summary.add(report.nodeid, record)
        if junit.junit_family(self.config) == "xunit2":
            junit.write_system_out(self.config, report, junit.per_test_properties(records))


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    llm = config.stash[session_key]
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and not hasattr(config, "workerinput"):
        for line in separate_path_argument_warnings(config):
            reporter.write_line(line, yellow=True)
    _print_cache_problems(config)
    if (llm.settings.judge is not None and not hasattr(config, "workerinput")
            and config.pluginmanager.has_plugin("dsession")):
        _check_default_judge(config, None)  # xdist: the controller collects nothing; check before workers run
    if llm.settings.preflight is not None and not hasattr(config, "workerinput"):
        _preflight(config, llm)


def _print_cache_problems(config: pytest.Config) -> None:
    """Each verdict-cache warning line once: those found so far (at session start or the end)."""
    cache = config.stash[session_key].cache
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if cache is None or reporter is None:
        return
    printed = config.stash.get(cache_problems_key, 0)
    for line in cache.problems[printed:]:
        reporter.write_line(line, yellow=True)
    config.stash[cache_problems_key] = len(cache.problems)


#: a test using one of these fixtures needs the default judge
JUDGING_FIXTURES = frozenset({"assert_llm_score", "llm_judge"})


def _check_default_judge(config: pytest.Config, items: list[pytest.Item] | None) -> None:
    """Resolve the default judge's spec and model once, before any test runs, without loading
    the model: a problem is one usage error with the fix. An explicit ``--llm-judge`` is
    always checked; the implicit default only when a collected test judges (``items``)."""
    import sys

    from .judges.spec import spec_problem

    llm = config.stash[session_key]
    settings = llm.settings
    explicit = settings.judge is not None
    if not explicit and items is not None and not any(
        JUDGING_FIXTURES.intersection(getattr(item, "fixturenames", ())) for item in items
    ):
        return
    spec = llm.default_spec
    problem = spec_problem(spec, base_url=settings.base_url, require_key=settings.cache_mode != "replay")
    if problem is None:
        return
    # a conftest or plugin may build this spec itself (pytest_llmjudge_make_judge): ask them
    others = config.pluginmanager.subset_hook_caller(
        "pytest_llmjudge_make_judge", remove_plugins=[sys.modules[__name__]]
    )
    judge = others(config=config, spec=spec)
    if judge is not None:
        llm.adopt_judge(spec, judge)
        return
    where = "--llm-judge" if explicit else f"default judge {spec} (no --llm-judge given, no OPENAI_API_KEY set)"
    raise pytest.UsageError(f"{where}: {problem}")


def _preflight(config: pytest.Config, llm: LLMJudgeSession) -> None:
    """Grade the labelled preflight set; stop the session when the judge disagrees too often."""
    from .preflight import run_preflight

    settings = llm.settings
    assert settings.preflight is not None
    _check_default_judge(config, None)
    try:
        result = run_preflight(
            settings.preflight, llm.judge(), threshold=settings.threshold,
            minimum=settings.preflight_min, workers=settings.concurrency, cache=llm.cache,
        )
    except LLMJudgeError as exc:
        raise pytest.UsageError(f"--llm-preflight: {exc}") from None
    if not result.ok:
        raise pytest.UsageError(result.describe())  # printed once (pytest.exit printed it twice)
    config.stash.setdefault(extra_lines_key, []).append(result.describe())


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, Any] | None:
    """With -v, each test line shows its scores."""
    records = getattr(report, "llmjudge_records", None)
    if not records or report.when != "call" or config.get_verbosity() <= 0 or hasattr(report, "wasxfail"):
        return None
    scores = " ".join(
        f"{r['metric']}=error" if r.get("error") else f"{r['metric']}={r['score']:.2f}" for r in records
    )
    if report.passed:
        return "passed", ".", (f"PASSED [{scores}]", {"green": True})
    if report.failed:
        return "failed", "F", (f"FAILED [{scores}]", {"red": True})
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    summary = config.stash.get(summary_key, None)
    if summary is None:
        return
    gates = summary.gates(config.stash[session_key].settings.min_pass_rates)
    config.stash[gates_key] = gates
    if any(not gate.ok for gate in gates) and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    settings = config.stash[session_key].settings
    comparison = _compare_with_baseline(config, summary, settings)
    if comparison is not None and comparison.regressed and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    # each report on its own: one that cannot be written never stops the others (nor JUnit)
    baseline = settings.save_baseline
    if baseline is not None and summary.records:
        from .regression import save_baseline

        if _write_report(config, "--llm-save-baseline", baseline,
                         lambda: save_baseline(baseline, summary.records, settings.public())):
            config.stash.setdefault(extra_lines_key, []).append(f"baseline saved to {baseline}")
    if settings.html is not None:
        html = settings.html

        def write_html() -> None:
            from .report.groups import group_rows
            from .report.html import render_html

            html.parent.mkdir(parents=True, exist_ok=True)
            html.write_text(
                render_html(summary.records, comparison=comparison, settings=settings.public(),
                            usage=summary.usage.as_dict(settings.prices), breakdown=group_rows(summary)),
                encoding="utf-8",
            )

        if _write_report(config, "--llm-html", html, write_html):
            config.stash.setdefault(extra_lines_key, []).append(f"HTML report written to {html}")
    _write_report(config, "--llm-markdown", settings.markdown or "$GITHUB_STEP_SUMMARY",
                  lambda: _write_markdown(config, summary, gates, comparison, settings))
    totals = {"verdicts": len(summary.records), **summary.usage.as_dict(settings.prices)}
    _write_report(config, "--llm-results", settings.results,
                  lambda: config.stash[session_key].results.write_run(totals))
    xml = junit.log_xml(config)
    if xml is not None and summary.metrics:
        for name, value in junit.suite_properties(summary, settings.prices):
            xml.add_global_property(name, value)


def _write_report(config: pytest.Config, option: str, path: Any, write: Callable[[], object]) -> bool:
    """Run one report writer; an OSError becomes one error line at the end of the run."""
    try:
        write()
    except Exception as exc:  # noqa: BLE001 - reported as a line; the other reports still get written
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else f"{type(exc).__name__}: {exc}"
        config.stash.setdefault(report_errors_key, []).append(
            f"llmjudge: ERROR: {option}: could not write {path}: {reason}"
        )
        return False
    return True


def _write_markdown(config: pytest.Config, summary: RunSummary, gates: list[GateResult], comparison: Any,
                    settings: Settings) -> None:
    """``--llm-markdown PATH``, and an appended copy in ``$GITHUB_STEP_SUMMARY`` when a test judged."""
    import os

    from .report.markdown import environment_summary_path, markdown_summary, write_markdown

    step_summary = environment_summary_path(os.environ) if summary.metrics else None
    if settings.markdown is None and step_summary is None:
        return
    from .report.groups import markdown_block

    text = markdown_summary(summary, gates, comparison=comparison, prices=settings.prices,
                            groups=[markdown_block(summary)] if summary.groups else None)
    if settings.markdown is not None:
        write_markdown(text, settings.markdown, append=False)
        config.stash.setdefault(extra_lines_key, []).append(f"markdown summary written to {settings.markdown}")
    if step_summary is not None:
        write_markdown(text, step_summary, append=True)


def _compare_with_baseline(config: pytest.Config, summary: RunSummary, settings: Settings) -> Any:
    baseline = config.stash.get(baseline_key, None)
    if baseline is None:
        return None
    from .regression import compare

    comparison = compare(baseline, summary.records, tolerance=settings.regression_tolerance,
                         group_by=summary.group_columns())
    config.stash[comparison_key] = comparison
    if comparison.regressed and not summary.metrics:  # no llm judge summary section: say it anyway
        config.stash.setdefault(report_errors_key, []).append("FAILED " + comparison.summary_line())
    return comparison


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    summary = config.stash.get(summary_key, None)
    session = config.stash[session_key]
    _print_cache_problems(config)
    for line in config.stash.get(report_errors_key, []):
        terminalreporter.write_line(line, red=True, bold=True)
    if session.settings.cache_stats and session.cache is not None:
        stats = session.cache.stats()
        terminalreporter.write_line(
            f"llmjudge cache: {stats['entries']} entries, {stats['bytes'] / 1024:.1f} KiB in {stats['path']}"
        )
    if summary is None or not summary.metrics:
        return
    terminalreporter.section("llm judge summary")
    calls = sum(int(r.get("judge_calls") or 0) for _, r in summary.records)
    settings = session.settings
    adaptive = settings.repeat_max if settings.repeat == "auto" else None
    extra = [*config.stash.get(extra_lines_key, []), *endpoint_notes()]
    for line in summary_lines(summary, config.stash.get(gates_key, []), judge_calls=calls,
                              adaptive_budget=adaptive, extra=extra, prices=settings.prices,
                              verbose=config.get_verbosity() > 0,
                              comparison=config.stash.get(comparison_key, None)):
        if line.startswith("FAILED"):
            terminalreporter.write_line(line, red=True, bold=True)
        else:
            terminalreporter.write_line(line)
