"""Issue 3: the ``llm_dataset`` marker, ``load_cases`` and the fixtures, through real pytest runs."""

from __future__ import annotations

import pytest
from conftest import QA_ROWS, write_jsonl

from pytest_llmjudge import load_cases

JUDGE_CONFTEST = """
from pytest_llmjudge.judges import FakeJudge

def pytest_llmjudge_make_judge(config, spec):
    if spec.startswith("fake:"):
        return FakeJudge(lambda request: {"reason": "fine", "score": 5}, name=spec)
"""


def collection_error(result: pytest.RunResult) -> list[str]:
    """The lines pytest printed for the collection error (between its header and the summary)."""
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if "ERROR collecting" in line)
    end = next(i for i in range(start, len(lines)) if "short test summary info" in lines[i])
    return [line for line in lines[start + 1:end] if line.strip()]


def run_fake(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """A run on an in-process FakeJudge (no HTTP)."""
    pytester.makeconftest(JUDGE_CONFTEST)
    return pytester.runpytest_inprocess("--llm-judge", "fake:five", "--llm-cache-mode", "off", *args)


def test_case_item_and_attribute_access_and_ids_from_id_column(pytester: pytest.Pytester) -> None:
    write_jsonl(pytester.path / "qa.jsonl", QA_ROWS)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llm_dataset("qa.jsonl", id_column="id")
        def test_qa(case, assert_llm_score):
            assert case["input"] == case.input
            assert case.expected_output == case["expected_output"]
            assert case["answer"]  # the row's other keys are kept as columns
            v = assert_llm_score(case["answer"], input=case.input, expected=case.expected_output)
            assert v.score == 1.0 and v.reason == "fine" and v.judge == "fake:five"
        """
    )
    result = run_fake(pytester, "-v")
    result.assert_outcomes(passed=len(QA_ROWS))
    for row in QA_ROWS:
        result.stdout.fnmatch_lines([f"*test_qa[[]{row['id']}[]] PASSED*"])


def test_default_ids_are_row_numbers(pytester: pytest.Pytester) -> None:
    rows = [{k: v for k, v in row.items() if k != "id"} for row in QA_ROWS[:3]]
    write_jsonl(pytester.path / "qa.jsonl", rows)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llm_dataset("qa.jsonl")
        def test_qa(case):
            pass
        """
    )
    result = run_fake(pytester, "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*test_qa[[]row1[]]", "*test_qa[[]row2[]]", "*test_qa[[]row3[]]"])


def test_path_is_relative_to_the_test_file(pytester: pytest.Pytester) -> None:
    sub = pytester.mkpydir("suite")
    (sub / "data").mkdir()
    write_jsonl(sub / "data" / "qa.jsonl", QA_ROWS[:2])
    (sub / "test_rel.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.llm_dataset('data/qa.jsonl', id_column='id')\n"
        "def test_rel(case):\n    assert case.input\n"
    )
    result = run_fake(pytester)
    result.assert_outcomes(passed=2)


def test_sample_with_seed_is_reproducible_and_matches_load_cases(pytester: pytest.Pytester) -> None:
    rows = [{"id": f"q{i}", "input": f"question {i}", "expected_output": f"answer {i}"} for i in range(30)]
    write_jsonl(pytester.path / "qa.jsonl", rows)
    pytester.makepyfile(
        """
        import pytest
        from pytest_llmjudge import load_cases

        @pytest.mark.llm_dataset("qa.jsonl", id_column="id", sample=5, seed=7)
        def test_sampled(case):
            pass

        @pytest.mark.parametrize("case", load_cases("qa.jsonl", id_column="id", sample=5, seed=7),
                                 ids=lambda c: c.id)
        def test_loaded(case):
            pass
        """
    )

    def collected() -> tuple[list[str], list[str]]:
        result = run_fake(pytester, "--collect-only", "-q")
        nodes = [line for line in result.outlines if "::test_" in line]
        ids = {kind: [n.split("[")[1].rstrip("]") for n in nodes if f"test_{kind}[" in n]
               for kind in ("sampled", "loaded")}
        return ids["sampled"], ids["loaded"]

    sampled, loaded = collected()
    assert len(sampled) == 5 and len(set(sampled)) == 5
    assert sampled == loaded  # the marker and load_cases draw the same rows
    assert collected() == (sampled, loaded)  # and every run draws them again
    other = [c.id for c in load_cases(pytester.path / "qa.jsonl", id_column="id", sample=5, seed=8)]
    assert other != sampled  # the seed matters


def test_required_columns_present_pass(pytester: pytest.Pytester) -> None:
    write_jsonl(pytester.path / "qa.jsonl", QA_ROWS[:2])
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llm_dataset("qa.jsonl", required=["input", "expected_output"])
        def test_req(case):
            assert case.input
        """
    )
    run_fake(pytester).assert_outcomes(passed=2)


def test_chat_form_rows(pytester: pytest.Pytester) -> None:
    rows = [
        {"id": "chat1", "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Paris."},
        ], "topic": "geo"},
    ]
    write_jsonl(pytester.path / "chat.jsonl", rows)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llm_dataset("chat.jsonl", id_column="id")
        def test_chat(case, assert_llm_score):
            assert case.input == "What is the capital of France?"
            assert case["expected_output"] == "Paris."
            assert case.system_prompt == "You are terse."
            assert case["topic"] == "geo"
            assert assert_llm_score("Paris", input=case.input, expected=case.expected_output).passed
        """
    )
    run_fake(pytester).assert_outcomes(passed=1)


def test_csv_dataset(pytester: pytest.Pytester) -> None:
    (pytester.path / "qa.csv").write_text("id,input,expected_output\na,Q1,A1\nb,Q2,A2\n")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llm_dataset("qa.csv", id_column="id")
        def test_csv(case):
            assert case.input.startswith("Q")
        """
    )
    result = run_fake(pytester, "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_csv[[]a[]] PASSED*", "*test_csv[[]b[]] PASSED*"])


def test_llm_judge_fixture_is_the_configured_session_judge(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_one(llm_judge, assert_llm_score):
            assert llm_judge.name == "fake:five"
            assert assert_llm_score("x", expected="x", judge=llm_judge).judge == "fake:five"

        def test_two(llm_judge, request):
            assert llm_judge is request.getfixturevalue("llm_judge")
        """
    )
    run_fake(pytester).assert_outcomes(passed=2)


# -- every dataset problem is a one-line collection error, no traceback ------------------
BAD_DATASETS = [
    # (file name, bytes, marker kwargs, expected fragments of the error)
    ("missing.jsonl", None, {}, ["missing.jsonl", "not found"]),
    ("qa.txt", b"hello\n", {}, ["qa.txt", "unsupported dataset format"]),
    ("bad.jsonl", b'{"input": "a"}\n{"input": "b", oops}\n', {}, ["bad.jsonl", "line 2"]),
    ("bad.json", b'[{"input": "a"},\n {"input": }\n]', {}, ["bad.json", "line 2"]),
    ("bad.csv", b'input,expected_output\n"a,b\n', {}, ["bad.csv", "line 2"]),
    ("ragged.csv", b"input,expected_output\na,b\nc,d,e\n", {}, ["ragged.csv", "line 3"]),
    ("req.jsonl", b'{"input": "a", "expected_output": "x"}\n{"input": "b"}\n',
     {"required": ["expected_output"]}, ["req.jsonl", "line 2", "expected_output"]),
    ("reqempty.jsonl", b'{"input": "a", "expected_output": "x"}\n{"input": "b", "expected_output": ""}\n',
     {"required": ["expected_output"]}, ["reqempty.jsonl", "line 2", "expected_output"]),
    ("nocol.csv", b"input\na\n", {"required": ["expected_output"]}, ["nocol.csv", "expected_output"]),
    ("empty.jsonl", b"", {}, ["empty.jsonl", "empty"]),
    ("headeronly.csv", b"input,expected_output\n", {}, ["headeronly.csv", "no data rows"]),
    ("latin1.jsonl", b'{"input": "ok"}\n{"input": "caf\xe9"}\n', {}, ["latin1.jsonl", "line 2", "UTF-8"]),
    ("dupid.jsonl", b'{"id": "a"}\n{"id": "a"}\n', {"id_column": "id"}, ["dupid.jsonl", "line 2"]),
]


@pytest.mark.parametrize("name,data,kwargs,fragments", BAD_DATASETS, ids=[b[0] for b in BAD_DATASETS])
def test_dataset_problem_is_a_located_collection_error_without_traceback(
    pytester: pytest.Pytester, name: str, data: bytes | None, kwargs: dict, fragments: list[str]
) -> None:
    if data is not None:
        (pytester.path / name).write_bytes(data)
    args = "".join(f", {k}={v!r}" for k, v in kwargs.items())
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.llm_dataset({name!r}{args})
        def test_data(case):
            pass
        """
    )
    result = run_fake(pytester)
    assert result.ret == pytest.ExitCode.INTERRUPTED  # collection errors stop the run
    result.assert_outcomes(errors=1)
    out = result.stdout.str()
    assert "Traceback" not in out
    assert "pandas" not in out and "json/decoder.py" not in out and "JSONDecodeError" not in out
    error_lines = collection_error(result)
    assert len(error_lines) == 1, out  # one line: file, line/row and what is wrong
    for fragment in fragments:
        assert fragment in error_lines[0], (fragment, error_lines[0])


def test_marker_misuse_is_a_clear_collection_error(pytester: pytest.Pytester) -> None:
    write_jsonl(pytester.path / "qa.jsonl", QA_ROWS[:1])
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llm_dataset("qa.jsonl")
        def test_no_case_arg():
            pass
        """
    )
    result = run_fake(pytester)
    assert "Traceback" not in result.stdout.str()
    assert collection_error(result) == [
        "test_marker_misuse_is_a_clear_collection_error.py::test_no_case_arg: @pytest.mark.llm_dataset "
        "parametrizes an argument named `case`; add `case` to the test's parameters"
    ]
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llm_dataset("qa.jsonl", idcolumn="id")
        def test_bad_kwarg(case):
            pass
        """
    )
    result = run_fake(pytester)
    assert "Traceback" not in result.stdout.str()
    [line] = collection_error(result)
    assert "unknown argument(s) idcolumn" in line and "id_column" in line.split("accepted:")[1]


def test_sampling_bad_value_is_an_error(pytester: pytest.Pytester) -> None:
    write_jsonl(pytester.path / "qa.jsonl", QA_ROWS[:2])
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.llm_dataset("qa.jsonl", sample=0)
        def test_x(case):
            pass
        """
    )
    result = run_fake(pytester)
    result.assert_outcomes(errors=1)
    assert collection_error(result) == ["qa.jsonl: sample must be a positive integer, got 0"]
