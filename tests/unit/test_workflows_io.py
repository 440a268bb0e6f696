"""Workflow I/O: reading raw rows, incremental writing, torn outputs, resume planning, progress."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from pytest_llmjudge.errors import DatasetError
from pytest_llmjudge.workflows import CLIError
from pytest_llmjudge.workflows.io import (
    RowWriter,
    Unit,
    cell,
    plan_resume,
    read_partial,
    read_table,
    table_format,
)
from pytest_llmjudge.workflows.progress import Progress


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_read_table_keeps_raw_columns_and_derives_the_case_view(tmp_path):
    path = write(tmp_path, "d.csv", "prompt,completion,topic\nHi?,Hello.,greet\n")
    table = read_table(path)
    (row,) = table.rows
    assert row.data == {"prompt": "Hi?", "completion": "Hello.", "topic": "greet"}
    assert table.columns == ["prompt", "completion", "topic"]
    assert row.get("input") == "Hi?" and row.get("expected_output") == "Hello."
    assert row.id == "row1" and row.line == 2 and table.where(row) == f"{path}, line 2 (row 1)"


def test_read_table_chat_rows(tmp_path):
    chat = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"},
                         {"role": "assistant", "content": "A"}], "tag": 1}
    table = read_table(write(tmp_path, "c.jsonl", json.dumps(chat) + "\n"))
    row = table.rows[0]
    assert row.data == chat
    assert (row.get("input"), row.get("expected_output"), row.get("system_prompt")) == ("Q", "A", "S")


def test_read_table_auto_id_and_explicit_id(tmp_path):
    path = write(tmp_path, "d.jsonl", '{"id": "a", "input": "x"}\n{"id": "b", "input": "y"}\n')
    assert [r.id for r in read_table(path).rows] == ["a", "b"]
    assert [r.id for r in read_table(path, auto_id=False).rows] == ["row1", "row2"]
    dup = write(tmp_path, "dup.jsonl", '{"id": "a", "input": "x"}\n{"id": "a", "input": "y"}\n')
    assert [r.id for r in read_table(dup).rows] == ["row1", "row2"]  # not unique: positional
    with pytest.raises(DatasetError, match="duplicate id 'a'"):
        read_table(dup, id_column="id")


def test_read_table_errors_are_located(tmp_path):
    with pytest.raises(DatasetError, match=r"bad\.jsonl, line 2, column \d+: invalid JSON"):
        read_table(write(tmp_path, "bad.jsonl", '{"input": "x"}\n{"input": \n'))


def test_cell_formats():
    assert [cell(v) for v in (None, "a", True, False, 3, 0.5, [1, "x"], {"k": "é"})] == [
        "", "a", "true", "false", "3", "0.5", '[1, "x"]', '{"k": "é"}']


def test_table_format():
    assert table_format("x.JSONL") == ".jsonl"
    with pytest.raises(CLIError, match=r"out\.txt: unsupported output format \('\.txt'\)"):
        table_format("out.txt")


@pytest.mark.parametrize("ext", [".csv", ".json", ".jsonl"])
def test_row_writer_file_is_valid_after_every_row(tmp_path, ext):
    path = tmp_path / f"out{ext}"
    rows = [{"a": "1", "b": [1, 2]}, {"a": "x,y\nz", "b": None}, {"a": 'q"uote', "b": {"k": 1}}]
    with RowWriter(path, ["a", "b"]) as writer:
        assert read_partial(path) == []
        for n, row in enumerate(rows, start=1):
            writer.write(row)
            got = read_partial(path)
            assert len(got) == n
            if ext == ".json":
                assert json.loads(path.read_text()) == got  # always a closed JSON list
    got = read_partial(path)
    if ext == ".csv":
        assert got[1] == {"a": "x,y\nz", "b": ""} and got[0]["b"] == "[1, 2]"
    else:
        assert got == rows


def test_row_writer_keep_rows_replace_the_file(tmp_path):
    path = write(tmp_path, "out.jsonl", '{"old": 1}\n{"old": 2}\n{"old": 3}\n')
    with RowWriter(path, ["old"], keep=[{"old": 1}]) as writer:
        writer.write({"old": 9})
    assert read_partial(path) == [{"old": 1}, {"old": 9}]


def test_read_partial_drops_a_torn_last_record(tmp_path):
    assert read_partial(write(tmp_path, "a.jsonl", '{"a": 1}\n{"a": 2}\n{"a": ')) == [{"a": 1}, {"a": 2}]
    assert read_partial(write(tmp_path, "b.csv", "a,b\n1,2\n3,")) == [{"a": "1", "b": "2"}]
    assert read_partial(write(tmp_path, "c.json", '[\n{"a": 1},\n{"a": 2},\n{"a"')) == [{"a": 1}, {"a": 2}]
    with pytest.raises(CLIError, match=r"d\.jsonl, line 1: cannot resume: invalid JSON"):
        read_partial(write(tmp_path, "d.jsonl", '{"a": \n{"a": 2}\n'))


def _units(tmp_path: Path, n: int) -> list[Unit]:
    lines = "".join(json.dumps({"id": f"r{i}", "input": f"q{i}"}) + "\n" for i in range(n))
    table = read_table(write(tmp_path, "in.jsonl", lines))
    return [Unit(index=i, row=row, expect={"id": row.data["id"]}) for i, row in enumerate(table.rows)]


def test_plan_resume_keeps_finished_rows_and_redoes_failed_ones(tmp_path):
    units = _units(tmp_path, 5)
    out = write(tmp_path, "out.jsonl", "".join(json.dumps(r) + "\n" for r in [
        {"id": "r0", "error": ""}, {"id": "r1", "error": "boom"}, {"id": "r2", "error": ""},
    ]))
    plan = plan_resume(out, units)
    assert [r["id"] for r in plan.keep] == ["r0"]
    assert list(plan.done) == [2] and plan.redo == 1 and plan.found == 3 and plan.skipped == 2


def test_plan_resume_refuses_a_different_input(tmp_path):
    units = _units(tmp_path, 2)
    out = write(tmp_path, "out.jsonl", '{"id": "other", "error": ""}\n')
    with pytest.raises(CLIError, match="does not match row 1 .*--force"):
        plan_resume(out, units)
    out = write(tmp_path, "out2.jsonl", '{"id": "r0"}\n{"id": "r1"}\n{"id": "r2"}\n')
    with pytest.raises(CLIError, match="has 3 rows but the input makes only 2"):
        plan_resume(out, units)


class _TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_only_on_a_terminal():
    quiet_stream = io.StringIO()
    bar = Progress(3, "work", stream=quiet_stream)
    bar.advance()
    bar.message("note")
    bar.close()
    assert quiet_stream.getvalue() == "note\n"  # messages always, no bar

    tty = _TTY()
    bar = Progress(4, "work", stream=tty)
    for _ in range(3):
        bar.advance(failed=False, cached=True)
    bar.advance(failed=True)
    bar.close()
    text = tty.getvalue()
    assert "\r" in text and "4/4" in text and "1 failed" in text and "3 cached" in text and "ETA" in text

    silenced = _TTY()
    bar = Progress(2, "work", stream=silenced, quiet=True)
    bar.advance()
    bar.close()
    assert silenced.getvalue() == ""


def test_progress_line_shape():
    bar = Progress(10, "generate", stream=io.StringIO())
    bar.done = 5
    line = bar.line()
    assert line.startswith("generate [") and "5/10" in line and "ETA" in line


def test_csv_writer_output_reads_back_with_the_csv_module(tmp_path):
    path = tmp_path / "o.csv"
    with RowWriter(path, ["x", "y"]) as writer:
        writer.write({"x": "a", "y": True, "ignored": 1})
    with open(path, newline="") as handle:
        assert list(csv.reader(handle)) == [["x", "y"], ["a", "true"]]
