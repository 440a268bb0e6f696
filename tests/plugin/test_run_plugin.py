"""The run's plugin object (issue 12: it owns the run state) and the reporter protocol
(issue 17 items 4, 5): a user's reporter gets start/verdict/finish; one summary feeds every
report; the -v words render on every pytest we support."""

from __future__ import annotations

import json

import pytest
from conftest import QA_FAIL, QA_PASS, LLMRun, short_id

from pytest_llmjudge.run.run_plugin import PLUGIN_NAME, LLMJudgeRun

USER_REPORTER = """
import json
import pytest

class Recorder:
    def start(self, run):
        self.events = [("start", type(run).__name__, run.settings.threshold)]

    def verdict(self, row):
        self.events.append(("verdict", row["test_id"].split("[")[-1].rstrip("]"), row["metric"], row["passed"]))

    def finish(self, summary):
        self.events.append(("finish", summary.verdicts, sorted(summary.metrics)))
        summary.notes.append("recorder saw %d verdicts" % summary.verdicts)
        with open("events.json", "w") as handle:
            json.dump(self.events, handle)

class Broken:
    option = "--my-report"
    target = "nowhere.txt"

    def start(self, run):
        pass

    def verdict(self, row):
        pass

    def finish(self, summary):
        raise OSError(13, "Permission denied")

def pytest_llmjudge_reporters(config):
    return [Recorder(), Broken()]
"""


def test_a_user_reporter_gets_start_each_verdict_and_finish(llm: LLMRun) -> None:
    llm.qa_suite()
    llm.pytester.makeconftest(USER_REPORTER)
    result = llm.run("--llm-concurrency", "1", "--llm-threshold", "0.6")
    events = [tuple(e) if isinstance(e, list) else e for e in json.loads((llm.path / "events.json").read_text())]
    assert events[0] == ("start", "LLMJudgeRun", 0.6)
    verdicts = [e for e in events if e[0] == "verdict"]
    assert {e[1] for e in verdicts if e[3]} == QA_PASS and {e[1] for e in verdicts if not e[3]} == QA_FAIL
    assert all(e[2] == "correctness" for e in verdicts)
    assert events[-1] == ("finish", 6, ["correctness"])
    # a note in the summary section; a reporter that cannot write is one error line, the others still run
    result.stdout.fnmatch_lines(["*recorder saw 6 verdicts*"])
    result.stdout.fnmatch_lines(["llmjudge: ERROR: --my-report: could not write nowhere.txt: Permission denied"])
    assert result.ret == 1  # three cases fail; the broken reporter changes nothing


def test_a_reporter_without_the_protocol_is_a_usage_error(llm: LLMRun) -> None:
    llm.qa_suite()
    llm.pytester.makeconftest("def pytest_llmjudge_reporters(config):\n    return [object()]\n")
    result = llm.run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*pytest_llmjudge_reporters returned <object object at *>: a reporter needs the "
                                 "methods start(run), verdict(row) and finish(summary)"])


def test_user_reporters_run_on_the_xdist_controller_only(llm: LLMRun) -> None:
    pytest.importorskip("xdist")
    llm.qa_suite()
    llm.pytester.makeconftest(USER_REPORTER)
    llm.run_subprocess("-n", "2", "-p", "xdist")
    events = json.loads((llm.path / "events.json").read_text())
    assert [e[0] for e in events].count("start") == 1
    assert sum(1 for e in events if e[0] == "verdict") == 6 and events[-1][1] == 6


def test_the_run_is_one_registered_plugin_object_per_config(pytester: pytest.Pytester) -> None:
    config = pytester.parseconfigure("--llm-judge", "openai:fake", "--llm-base-url", "http://127.0.0.1:9/v1")
    run = config.pluginmanager.get_plugin(PLUGIN_NAME)
    assert isinstance(run, LLMJudgeRun) and run.settings.judge == "openai:fake"
    assert config.pluginmanager.get_plugin("llmjudge-cases") is run.cases
    other = pytester.parseconfigure("--llm-threshold", "0.7")
    assert other.pluginmanager.get_plugin(PLUGIN_NAME) is not run  # several configs in one process
    config._ensure_unconfigure()
    assert config.pluginmanager.get_plugin(PLUGIN_NAME) is None
    assert config.pluginmanager.get_plugin("llmjudge-cases") is None
    other._ensure_unconfigure()


def test_verbose_words_are_plain_strings(llm: LLMRun) -> None:
    """pytest < 8.3 prints the word of pytest_report_teststatus verbatim in the short summary:
    a (word, markup) pair showed as ``('PASSED [correctness=0.92]', {'green': True})``."""
    llm.qa_suite()
    result = llm.run("-v", "-rA", "--llm-concurrency", "1")
    assert not any("('PASSED" in line or "('FAILED" in line for line in result.outlines)
    result.stdout.fnmatch_lines(["PASSED [[]correctness=0.9*[]] test_qa.py::test_qa[[]capital[]]"])
    config = llm.pytester.parseconfigure(*llm.args("-v"))
    reports = [r for r in result.reprec.getreports("pytest_runtest_logreport") if r.when == "call"]
    words = {short_id(r.nodeid): config.hook.pytest_report_teststatus(report=r, config=config)[2] for r in reports}
    assert all(isinstance(word, str) for word in words.values())
    assert words["capital"].startswith("PASSED [correctness=") and words["boil"].startswith("FAILED [correctness=")
    config._ensure_unconfigure()


def test_a_report_declares_its_own_file_option(pytester: pytest.Pytester) -> None:
    """Issue 17 item 5: a report's class names its option; flag, ini key, path checks follow."""
    from pytest_llmjudge.report.reporters import REPORT_OPTIONS, HtmlReport
    from pytest_llmjudge.run.settings import OPTIONS, PATH_OPTIONS

    declared = {option for option, _ in REPORT_OPTIONS}
    assert declared == {"--llm-html", "--llm-markdown", "--llm-save-baseline"}
    assert declared <= {row[0] for row in OPTIONS} and declared <= set(PATH_OPTIONS)
    assert (HtmlReport.option, HtmlReport.help) in REPORT_OPTIONS
    config = pytester.parseconfigure("--llm-html=out/r.html", "-o", "llm_markdown=summary.md")
    settings = config.pluginmanager.get_plugin(PLUGIN_NAME).settings
    assert settings.report_path("--llm-html") == pytester.path / "out" / "r.html"
    assert settings.markdown == pytester.path / "summary.md" and settings.save_baseline is None
    config._ensure_unconfigure()
    with pytest.raises(pytest.UsageError, match="--llm-html=.*is a directory"):
        pytester.parseconfigure(f"--llm-html={pytester.path}")


def test_endpoint_notes_belong_to_their_run(llm: LLMRun) -> None:
    """Issue 17 item 8: the endpoint gates hang on the run: a second run in the same process
    (pytester, a long-lived worker) does not report the first one's 429s."""
    llm.qa_suite()
    llm.server.fail_next(429, 2, retry_after=0.01)
    first = llm.run("--llm-concurrency", "1")
    first.stdout.fnmatch_lines(["*judge endpoint *: 2 rate-limited requests (429) waited out and retried*"])
    second = llm.run("--llm-concurrency", "1")
    assert not any("rate-limited requests" in line for line in second.outlines)
