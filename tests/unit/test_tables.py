"""Unit tests of pytest_llmjudge.datasets.tables, DataFrame input to load_cases, and read_results."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pytest_llmjudge import DatasetError, load_cases, read_results
from pytest_llmjudge.analysis.regression import BaselineError, save_baseline
from pytest_llmjudge.datasets import content_text
from pytest_llmjudge.datasets.tables import TableError, _pandas_problem, cell, csv_line, parse_csv, parse_rows
from pytest_llmjudge.judging.verdict import Verdict
from pytest_llmjudge.report.results_file import ResultsWriter

# --------------------------------------------------------------------------- pandas' messages


@pytest.mark.parametrize(
    ("text", "unclosed"),
    [('a,b\n1,2\n"3,4\n', True), ('a,b\n"x"y,2\n', False)],
)
def test_pandas_messages_are_mapped_in_one_place(text: str, unclosed: bool) -> None:
    """The words of pandas' ParserError this version gives are the ones _pandas_problem reads."""
    from pandas.errors import ParserError

    with pytest.raises(ParserError) as info:
        pd.read_csv(io.StringIO(text), header=None, dtype=str, engine="python")
    got_unclosed, problem = _pandas_problem(str(info.value))
    assert got_unclosed is unclosed
    assert ("never closed" in problem.problem) is unclosed
    assert "\n" not in problem.problem


def test_csv_rows_carry_their_start_lines_and_values_as_strings() -> None:
    rows, columns = parse_csv('\n \na,b\n\n"x\ny",NA\n,\n3,"q""uote"\n')
    assert columns == ["a", "b"]
    assert [(r.row, r.line, r.data) for r in rows] == [
        (1, 5, {"a": "x\ny", "b": "NA"}), (2, 7, {"a": "", "b": ""}), (3, 8, {"a": "3", "b": 'q"uote'})]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a,b\n1\n", "f.csv, line 2 (row 1): expected 2 fields like the header, found 1; write an empty"),
        ('a,b\n"1\n2",3,4\n', "f.csv, line 2 (row 1): expected 2 fields like the header, found 3; quote values"),
        ('a,b\n1,2\n\n"3,4\n', "f.csv, line 4: a quoted value is never closed"),
        ("a,a\n1,2\n", "f.csv, line 1: duplicate column name 'a'"),
        ('a,b\n1,2\n\n"x\ny"z,2\n3,4\n', "f.csv, line 4: malformed CSV: ',' expected after '\"'"),
    ],
)
def test_csv_problems_are_located(text: str, message: str) -> None:
    with pytest.raises(TableError) as info:
        parse_csv(text)
    assert info.value.message("f.csv").startswith(message)


def test_csv_lenient_width_and_torn_tail() -> None:
    rows, _ = parse_csv("a,b\n1\n2,3,4\n", exact_width=False)
    assert [r.data for r in rows] == [{"a": "1"}, {"a": "2", "b": "3"}]
    assert [r.data for r in parse_rows("a,b\n1,2\n3,", ".csv", torn_tail=True)[0]] == [{"a": "1", "b": "2"}]
    assert [r.data for r in parse_rows('a,b\n1,2\n"3,', ".csv", torn_tail=True)[0]] == [{"a": "1", "b": "2"}]
    assert [r.data for r in parse_rows('[{"a": 1}, {"a"', ".json", torn_tail=True)[0]] == [{"a": 1}]


def test_csv_line_round_trips_through_parse_csv() -> None:
    values: list[Any] = ["x,y\nz", 'q"uote', None, True, 1.5, [1, "a"]]
    text = csv_line([f"c{i}" for i in range(len(values))]) + csv_line(values)
    (row,), _ = parse_csv(text)
    assert list(row.data.values()) == [cell(v) for v in values]


# --------------------------------------------------------------------------- chat content


def test_content_text() -> None:
    assert content_text(None) is None and content_text("a") == "a"
    parts = [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {}}, "b"]
    assert content_text(parts) == "a\nb"
    for bad in (3, [1], {"type": "text"}):
        with pytest.raises(TypeError):
            content_text(bad)


# --------------------------------------------------------------------------- DataFrame in


def test_load_cases_accepts_a_dataframe() -> None:
    frame = pd.DataFrame({
        "input": ["q1", "q2"], "n": [1, 2], "score": [0.5, float("nan")],
        "messages": ["", json.dumps([{"role": "user", "content": "hi"}])],
    }, index=[10, 20])
    cases = load_cases(frame, id_column="input")
    assert [c.id for c in cases] == ["q1", "q2"]
    assert [c.row for c in cases] == [1, 2] and cases[0].line is None and cases[0].source is None
    assert cases[0]["n"] == 1 and type(cases[0]["n"]) is int and cases[1]["score"] is None
    assert cases[1]["messages"] == [{"role": "user", "content": "hi"}]
    with pytest.raises(DatasetError, match=r"DataFrame, row 2: required column 'score' is empty"):
        load_cases(frame, required=["score"])
    with pytest.raises(DatasetError, match="DataFrame: the dataset has no rows"):
        load_cases(frame.iloc[:0])


# --------------------------------------------------------------------------- read_results


def _results(path: Path) -> Path:
    writer = ResultsWriter(path, "run-1", {"judge": "fake"}, truncate=True)
    writer.set_case_columns(["topic"])
    writer.write("t::a", Verdict(metric="correctness", score=0.8, raw_score=4, scale=(0, 5), threshold=0.6,
                                 passed=True, judge="fake"),
                 {"input": "q", "case": {"id": "a", "topic": "geo"}})
    writer.write_error("t::b", "correctness", "fake", RuntimeError("down"))
    writer.write_run({"verdicts": 2})
    writer.close()
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_read_results_gives_a_dataframe_of_verdicts(tmp_path: Path, suffix: str) -> None:
    frame = read_results(_results(tmp_path / f"r{suffix}"))
    assert isinstance(frame, pd.DataFrame)
    assert list(frame["test_id"]) == ["t::a", "t::b"]
    assert frame["score"].iloc[0] == 0.8 and pd.isna(frame["score"].iloc[1])
    assert frame["case.topic"].iloc[0] == "geo" and frame["input"].iloc[0] == "q"
    assert frame["error"].iloc[1] == "RuntimeError: down"
    assert len(read_results(tmp_path / f"r{suffix}", run_records=True)) == 3


def test_read_results_reads_a_baseline(tmp_path: Path) -> None:
    path = save_baseline(tmp_path / "b.json", [
        {"test_id": "t::a", "metric": "m", "score": 0.5, "input": "q", "case": {"topic": "geo"}}])
    frame = read_results(path)
    assert list(frame["test_id"]) == ["t::a"] and frame["score"].iloc[0] == 0.5
    assert frame["input"].iloc[0] == "q" and frame["case.topic"].iloc[0] == "geo"


def test_read_results_bad_file_is_one_located_line(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text('test_id,metric,score\n"a,m,0.5\n', encoding="utf-8")
    with pytest.raises(BaselineError, match=r"r\.csv, line 2: a quoted value is never closed"):
        read_results(path)
    with pytest.raises(BaselineError, match="no such file"):
        read_results(tmp_path / "missing.json")
