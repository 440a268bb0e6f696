"""Shared fixtures: a fake judge server per test, and a helper that runs pytest on it.

Every plugin test runs a real pytest session (``pytester``) whose judge is the project's
fake OpenAI-compatible / TGI server driven by the real ``openai`` / ``huggingface_hub``
clients. Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import re
import signal
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_llmjudge.judges import retry
from pytest_llmjudge.report.results_file import read_result_rows
from pytest_llmjudge.testing.fake_server import FakeJudgeServer

# A run started in the background by a shell without job control (`cmd &` in a script) inherits
# SIGINT ignored, and so would every pytest these tests start, which then cannot be interrupted:
# the Ctrl-C tests need it delivered. A handler, unlike "ignored", is not inherited by children.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

#: A QA suite the fake server grades by word overlap: some answers right, some wrong.
QA_ROWS: list[dict[str, str]] = [
    {"id": "capital", "input": "What is the capital of France?",
     "expected_output": "Paris is the capital of France.",
     "answer": "The capital of France is Paris."},
    {"id": "boil", "input": "At what temperature does water boil at sea level?",
     "expected_output": "Water boils at 100 degrees Celsius at sea level.",
     "answer": "It boils when it is hot."},
    {"id": "planet", "input": "Which planet is the largest in the solar system?",
     "expected_output": "Jupiter is the largest planet in the solar system.",
     "answer": "Jupiter is the largest planet in our solar system."},
    {"id": "author", "input": "Who wrote Hamlet?",
     "expected_output": "William Shakespeare wrote Hamlet.",
     "answer": "Charles Dickens wrote it."},
    {"id": "speed", "input": "What is the speed of light?",
     "expected_output": "Light travels at about 300000 kilometres per second in vacuum.",
     "answer": "Light travels about 300000 kilometres per second in a vacuum."},
    {"id": "river", "input": "What is the longest river in Africa?",
     "expected_output": "The Nile is the longest river in Africa.",
     "answer": "The Amazon."},
]
QA_PASS = {"capital", "planet", "speed"}
QA_FAIL = {"boil", "author", "river"}

QA_TEST = '''
import pytest

@pytest.mark.llm_dataset("qa.jsonl", id_column="id")
def test_qa(case, assert_llm_score):
    v = assert_llm_score(case["answer"], metric="correctness", input=case["input"],
                         expected=case["expected_output"], threshold=0.6)
    assert v.reason
'''


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _warm_up_clients() -> None:
    """In-process pytester runs restore ``sys.modules`` afterwards: modules first imported
    inside a run are imported again by the next one. That breaks numpy (pandas loads it for
    CSV datasets) and the HTTP stacks (httpx2 maps the *first* httpcore2's exception classes,
    so a re-imported httpcore2.ConnectError escapes the openai client unmapped). So before the
    first pytester test, import all of it and take every client path once."""
    import huggingface_hub
    import openai
    import pandas  # noqa: F401

    with FakeJudgeServer() as srv:
        client = openai.OpenAI(base_url=srv.url, api_key="sk-warmup", max_retries=0, timeout=5)
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        hf = huggingface_hub.InferenceClient(base_url=srv.root_url, timeout=5)
        hf.chat_completion([{"role": "user", "content": "hi"}], max_tokens=5)
        srv.fail_next(500, 2)
        for call in (lambda: client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}]),
                     lambda: hf.chat_completion([{"role": "user", "content": "x"}], max_tokens=5)):
            try:
                call()
            except Exception:  # noqa: BLE001 - only the imports matter
                pass
        url, root = srv.url, srv.root_url
    for call in (lambda: openai.OpenAI(base_url=url, api_key="k", max_retries=0).models.list(),
                 lambda: huggingface_hub.InferenceClient(base_url=root).chat_completion(
                     [{"role": "user", "content": "x"}])):
        try:
            call()
        except Exception:  # noqa: BLE001 - connection refused, on purpose
            pass


@pytest.fixture(scope="session")
def _warm_clients() -> None:
    _warm_up_clients()


@pytest.fixture(autouse=True)
def _before_pytester(request: pytest.FixtureRequest) -> None:
    if "pytester" in request.fixturenames:  # before pytester snapshots sys.modules
        request.getfixturevalue("_warm_clients")


#: the pytest runs a test starts keep collection order and leave async tests alone unless the
#: test enables pytest-randomly / pytest-asyncio itself (``-p randomly``, ``-p asyncio``)
NEIGHBOURS_OFF = "-p no:randomly -p no:asyncio"


@pytest.fixture(autouse=True)
def _hermetic(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No real credentials or endpoints; no backend memory carried between tests."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN",
                 "LLMJUDGE_API_KEY", "PYTEST_ADDOPTS", "PYTEST_XDIST_AUTO_NUM_WORKERS", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
    if "pytester" in request.fixturenames:
        request.getfixturevalue("pytester")  # it clears PYTEST_ADDOPTS when it starts
        monkeypatch.setenv("PYTEST_ADDOPTS", NEIGHBOURS_OFF)
    # backoff without Retry-After sleeps up to BASE_DELAY_S * 2**attempt: keep it tiny
    monkeypatch.setattr(retry, "BASE_DELAY_S", 0.01)
    # endpoint gates belong to a run (or a judge built on its own): nothing to forget between tests
    yield


@pytest.fixture
def server() -> Iterator[FakeJudgeServer]:
    with FakeJudgeServer(latency=0.0) as srv:
        yield srv


class LLMRun:
    """Runs pytest (via pytester) against the fake judge server."""

    def __init__(self, pytester: pytest.Pytester, server: FakeJudgeServer) -> None:
        self.pytester = pytester
        self.server = server
        self.path = pytester.path

    # -- setup
    def qa_suite(self, rows: list[dict[str, Any]] | None = None, test: str = QA_TEST,
                 name: str = "test_qa.py") -> None:
        write_jsonl(self.path / "qa.jsonl", QA_ROWS if rows is None else rows)
        self.pytester.makepyfile(**{name.removesuffix(".py"): test})

    def makepyfile(self, source: str, name: str = "test_suite") -> Path:
        return self.pytester.makepyfile(**{name: textwrap.dedent(source)})

    # -- running
    def args(self, *extra: str, backend: str = "openai", cache: str | None = "off") -> list[str]:
        if backend == "hf":
            base = ["--llm-judge", "hf:fake", "--llm-base-url", self.server.root_url]
        else:
            base = ["--llm-judge", "openai:fake", "--llm-base-url", self.server.url]
        if cache is not None and not any(a.startswith("--llm-cache-mode") for a in extra):
            base += ["--llm-cache-mode", cache]
        return [*base, *extra]

    def run(self, *extra: str, backend: str = "openai", cache: str | None = "off") -> pytest.RunResult:
        return self.pytester.runpytest_inprocess(*self.args(*extra, backend=backend, cache=cache))

    def run_subprocess(self, *extra: str, timeout: float = 60, backend: str = "openai",
                       cache: str | None = "off") -> pytest.RunResult:
        return self.pytester.runpytest_subprocess(
            *self.args(*extra, backend=backend, cache=cache), timeout=timeout)

    # -- reading what a run left behind
    def results(self, name: str = "results.jsonl") -> list[dict[str, Any]]:
        return read_result_rows(self.path / name)

    def junit(self, name: str = "junit.xml") -> ET.Element:
        return ET.parse(self.path / name).getroot()


@pytest.fixture
def llm(pytester: pytest.Pytester, server: FakeJudgeServer) -> LLMRun:
    return LLMRun(pytester, server)


# -- helpers for reading pytest output ------------------------------------------------
def outcomes(result: pytest.RunResult) -> dict[str, set[str]]:
    """{"passed": {test ids}, "failed": {...}, ...} from a run's reports (in-process runs)."""
    out: dict[str, set[str]] = {}
    for report in result.reprec.getreports("pytest_runtest_logreport"):  # type: ignore[attr-defined]
        if report.when == "call" or report.outcome != "passed":
            out.setdefault(report.outcome, set()).add(short_id(report.nodeid))
    return out


def short_id(nodeid: str) -> str:
    """``test_qa.py::test_qa[capital]`` -> ``capital``; ``test_x.py::test_one`` -> ``test_one``."""
    name = nodeid.split("::")[-1]
    return name.split("[", 1)[1][:-1] if name.endswith("]") and "[" in name else name


def failure_messages(result: pytest.RunResult) -> dict[str, str]:
    """test id -> the ``E   ...`` lines of its failure (the message, not the traceback)."""
    messages = {}
    for report in result.reprec.getreports("pytest_runtest_logreport"):  # type: ignore[attr-defined]
        if report.failed:
            text = report.longreprtext
            lines = [line for line in text.splitlines() if line.startswith("E   ")]
            messages[report.nodeid] = "\n".join(lines)
    return messages


def summary_section(result: pytest.RunResult) -> list[str]:
    """The lines of the ``llm judge summary`` section."""
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if "llm judge summary" in line)
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"^={5,}", lines[i])), len(lines))
    return lines[start + 1:end]


def summary_table(result: pytest.RunResult) -> dict[str, dict[str, str]]:
    """metric -> {column header: cell} of the summary's per-metric table.

    Columns are found by header name, so added columns do not break the tests; a column is
    looked up by the start of its header (``row["pass rate"]`` finds ``pass rate [95% CI]``).
    """
    lines = summary_section(result)
    start = next(i for i, line in enumerate(lines) if line.startswith("metric "))
    header = re.split(r"\s{2,}", lines[start].strip())
    table: dict[str, dict[str, str]] = {}
    for line in lines[start + 1:]:
        if not line.strip() or line.startswith(("(", " ")):
            break
        cells = re.split(r"\s{2,}", line.strip())
        assert len(cells) == len(header), (header, cells)
        table[cells[0]] = _PrefixDict(zip(header, cells))
    return table


class _PrefixDict(dict):
    def __getitem__(self, key: str) -> str:
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        matches = [k for k in self if k.startswith(key)]
        if len(matches) != 1:
            raise KeyError(key)
        return dict.__getitem__(self, matches[0])


def case_properties(root: ET.Element) -> dict[str, dict[str, str]]:
    """xunit1: testcase name -> its ``<properties>``."""
    out = {}
    for case in root.iter("testcase"):
        out[case.get("name", "")] = {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
    return out


def case_system_out(root: ET.Element) -> dict[str, dict[str, str]]:
    """xunit2: testcase name -> the ``llm.*=value`` lines of its ``<system-out>``."""
    out = {}
    for case in root.iter("testcase"):
        values: dict[str, str] = {}
        for node in case.iter("system-out"):
            for line in (node.text or "").splitlines():
                name, sep, value = line.partition("=")
                if sep and name.startswith("llm."):
                    values[name] = value
        out[case.get("name", "")] = values
    return out


def suite_props(root: ET.Element) -> dict[str, str]:
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None
    props = suite.find("properties")
    return {} if props is None else {p.get("name", ""): p.get("value", "") for p in props.iter("property")}


def normalize_row(row: dict[str, Any]) -> dict[str, Any]:
    """A results-file row without what differs between equal runs."""
    return {k: v for k, v in row.items() if k not in ("run_id", "timestamp", "latency_s", "settings")}


os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")


def readme_install_commands() -> tuple[list[str], list[str]]:
    """(plugin-only commands, local-judge commands) from the README's "Install in your project"."""
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Install in your project", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    assert len(blocks) == 2, blocks
    plugin_only, local = ([line for line in block.splitlines() if line.strip()] for block in blocks)
    return plugin_only, local
