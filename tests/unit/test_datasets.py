"""Unit tests of pytest_llmjudge.datasets."""

from __future__ import annotations

import copy
import json
import pickle
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_llmjudge.datasets import SUPPORTED_EXTENSIONS, Case, case_id, load_cases
from pytest_llmjudge.errors import DatasetError, LLMJudgeError


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8", newline="")
    return path


def jsonl(rows: list[Any]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def load_error(path: Path | str, **kwargs: Any) -> str:
    with pytest.raises(DatasetError) as info:
        load_cases(path, **kwargs)
    message = str(info.value)
    assert "Traceback" not in message
    assert "\n" not in message
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ or info.value.__context__ is None
    return message


# --------------------------------------------------------------------------- formats


def test_csv(tmp_path: Path) -> None:
    path = write(tmp_path, "qa.csv", 'input,expected_output,n\nhi,hello,1\n"a, b","x\ny",\n')
    cases = load_cases(path)
    assert [dict(c) for c in cases] == [
        {"input": "hi", "expected_output": "hello", "n": "1"},
        {"input": "a, b", "expected_output": "x\ny", "n": ""},
    ]
    assert [c.id for c in cases] == ["row1", "row2"]
    assert [c.row for c in cases] == [1, 2]
    assert [c.line for c in cases] == [2, 3]
    assert cases[0].source == path


def test_csv_values_are_strings_and_na_strings_kept(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", "a,b,c\nNA,nan,007\n")
    case = load_cases(path)[0]
    assert dict(case) == {"a": "NA", "b": "nan", "c": "007"}


def test_csv_short_row_is_an_error_not_an_empty_value(tmp_path: Path) -> None:
    assert "expected 2 fields like the header, found 1" in load_error(write(tmp_path, "d.csv", "a,b\n1\n"))
    assert load_cases(write(tmp_path, "e.csv", "a,b\n1,\n"))[0]["b"] == ""


def test_csv_blank_lines_and_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", 'a,b\n\n1,2\n"multi\nline",3\n\n4,5\n')
    cases = load_cases(path)
    assert [c["a"] for c in cases] == ["1", "multi\nline", "4"]
    assert [c.row for c in cases] == [1, 2, 3]
    assert [c.line for c in cases] == [3, 4, 7]


def test_csv_crlf_and_bom(tmp_path: Path) -> None:
    path = write(tmp_path, "d.csv", b"\xef\xbb\xbfinput,x\r\nhi,1\r\n")
    case = load_cases(path)[0]
    assert list(case) == ["input", "x"]
    assert case.input == "hi"


def test_csv_extra_field_on_every_row_is_an_error(tmp_path: Path) -> None:
    # pandas would silently use the first column as the index
    message = load_error(write(tmp_path, "d.csv", "a,b\n1,2,3\n4,5,6\n"))
    assert "d.csv, line 2" in message
    assert "expected 2 fields" in message and "found 3" in message


def test_json(tmp_path: Path) -> None:
    rows = [{"input": "q1", "tags": ["a"], "n": 3}, {"input": "q2", "extra": None}]
    cases = load_cases(write(tmp_path, "d.json", json.dumps(rows, indent=2)))
    assert [dict(c) for c in cases] == rows
    assert cases[0].tags == ["a"]
    assert cases[0].n == 3
    assert cases[1].extra is None
    assert [c.line for c in cases] == [2, 9]


def test_json_wrapped_in_object(tmp_path: Path) -> None:
    text = '{\n  "cases": [\n    {"input": "a"},\n    {"input": "b"}\n  ]\n}\n'
    cases = load_cases(write(tmp_path, "d.json", text))
    assert [c.input for c in cases] == ["a", "b"]
    assert [c.line for c in cases] == [3, 4]


def test_json_bom(tmp_path: Path) -> None:
    path = write(tmp_path, "d.json", b'\xef\xbb\xbf[{"input": "x"}]')
    assert load_cases(path)[0].input == "x"


def test_json_nan_becomes_none(tmp_path: Path) -> None:
    case = load_cases(write(tmp_path, "d.json", '[{"input": "x", "v": NaN}]'))[0]
    assert case.v is None


def test_jsonl(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", '{"input": "a"}\n\n   \n{"input": "b\\u2028c"}\n')
    cases = load_cases(path)
    assert [c.input for c in cases] == ["a", "b\u2028c"]
    assert [c.row for c in cases] == [1, 2]
    assert [c.line for c in cases] == [1, 4]
    assert [c.id for c in cases] == ["row1", "row2"]


def test_jsonl_raw_line_separator_inside_string(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", '{"input": "b\u2028c"}\n{"input": "d"}\n')
    assert [c.input for c in load_cases(path)] == ["b\u2028c", "d"]


def test_extension_is_case_insensitive(tmp_path: Path) -> None:
    assert load_cases(write(tmp_path, "D.JSONL", '{"input": "a"}\n'))[0].input == "a"


def test_supported_extensions() -> None:
    assert set(SUPPORTED_EXTENSIONS) == {".csv", ".json", ".jsonl"}


def test_base_dir(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    write(tmp_path / "data", "d.jsonl", '{"input": "a"}\n')
    cases = load_cases("data/d.jsonl", base_dir=tmp_path)
    assert cases[0].source == tmp_path / "data" / "d.jsonl"
    # an absolute path ignores base_dir
    assert load_cases(tmp_path / "data" / "d.jsonl", base_dir="/nonexistent")[0].input == "a"


# --------------------------------------------------------------------------- chat form


CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello"},
    {"role": "user", "content": "Capital of France?"},
    {"role": "assistant", "content": "Paris"},
]


def test_chat_form_jsonl(tmp_path: Path) -> None:
    case = load_cases(write(tmp_path, "c.jsonl", jsonl([{"messages": CHAT, "topic": "geo"}])))[0]
    assert case.input == "Capital of France?"
    assert case.expected_output == "Paris"
    assert case.system_prompt == "Be brief."
    assert case.topic == "geo"
    assert case.messages == CHAT


def test_chat_form_last_assistant_when_none_follows(tmp_path: Path) -> None:
    messages = CHAT[:4]
    case = load_cases(write(tmp_path, "c.jsonl", jsonl([{"messages": messages}])))[0]
    assert case.input == "Capital of France?"
    assert case.expected_output == "Hello"


def test_chat_form_no_assistant_no_system(tmp_path: Path) -> None:
    rows = [{"messages": [{"role": "user", "content": "q"}]}]
    case = load_cases(write(tmp_path, "c.json", json.dumps(rows)))[0]
    assert (case.input, case.expected_output, case.system_prompt) == ("q", None, None)


def test_chat_form_content_parts(tmp_path: Path) -> None:
    msg = {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    case = load_cases(write(tmp_path, "c.jsonl", jsonl([{"messages": [msg]}])))[0]
    assert case.input == "a\nb"


def test_chat_form_explicit_columns_win(tmp_path: Path) -> None:
    rows = [{"messages": CHAT, "expected_output": "Paris, France"}]
    case = load_cases(write(tmp_path, "c.jsonl", jsonl(rows)))[0]
    assert case.expected_output == "Paris, France"
    assert case.input == "Capital of France?"


def test_chat_form_csv(tmp_path: Path) -> None:
    cell = json.dumps(CHAT).replace('"', '""')
    path = write(tmp_path, "c.csv", f'id,messages\nq1,"{cell}"\nq2,\n')
    cases = load_cases(path, id_column="id")
    assert cases[0].input == "Capital of France?"
    assert cases[0].expected_output == "Paris"
    assert cases[0].system_prompt == "Be brief."
    assert cases[0].messages == CHAT  # decoded
    assert cases[1].messages == "" and "input" not in cases[1]


def test_chat_form_csv_invalid_json(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "c.csv", 'id,messages\nq1,[]\nq2,"[{""role"": "\n'))
    assert "c.csv" in message
    assert "line 2 (row 1)" in message and "no user turn" in message


def test_chat_form_csv_malformed_messages_cell(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "c.csv", "id,messages\nq1,not json\n"))
    assert "c.csv, line 2 (row 1)" in message
    assert "'messages' is not valid JSON" in message


@pytest.mark.parametrize(
    ("messages", "problem"),
    [
        ("hello", r"'messages' must be a list .* got a string"),
        ([["user", "hi"]], r"messages\[0\] is a list"),
        ([{"role": "user"}], r"messages\[0\] is keys role"),
        ([{"content": "x"}], r"messages\[0\] is keys content"),
        ([{"role": "user", "content": 3}], r"messages\[0\]\.content must be a string"),
        ([{"role": "assistant", "content": "x"}], r"no user turn"),
    ],
)
def test_chat_form_errors(tmp_path: Path, messages: Any, problem: str) -> None:
    text = jsonl([{"input": "ok"}, {"input": "ok"}]) + json.dumps({"messages": messages}) + "\n"
    message = load_error(write(tmp_path, "bad.jsonl", text))
    assert "bad.jsonl, line 3 (row 3)" in message
    assert re.search(problem, message), message


# --------------------------------------------------------------------------- aliases


def test_aliases(tmp_path: Path) -> None:
    rows = [
        {"prompt": "p", "completion": "c"},
        {"prompt": "p", "input": "i", "completion": "c", "expected_output": "e"},
    ]
    a, b = load_cases(write(tmp_path, "a.jsonl", jsonl(rows)))
    assert (a.input, a.expected_output, a.prompt, a.completion) == ("p", "c", "p", "c")
    assert (b.input, b.expected_output) == ("i", "e")


def test_aliases_csv_fill_empty_target(tmp_path: Path) -> None:
    a, b = load_cases(write(tmp_path, "a.csv", "input,prompt\n,p\ni,p2\n"))
    assert a.input == "p"
    assert b.input == "i"


def test_alias_satisfies_required(tmp_path: Path) -> None:
    cases = load_cases(write(tmp_path, "a.jsonl", jsonl([{"prompt": "p"}])), required=["input"])
    assert cases[0].input == "p"


# --------------------------------------------------------------------------- Case


def test_case_mapping_and_attributes(tmp_path: Path) -> None:
    case = load_cases(write(tmp_path, "d.jsonl", jsonl([{"input": "q", "k": 1}])))[0]
    assert isinstance(case, Case)
    assert case["input"] == case.input == case.get("input") == "q"
    assert case.get("missing") is None
    assert "k" in case and "zz" not in case
    assert len(case) == 2 and list(case) == ["input", "k"]
    assert dict(case) == {"input": "q", "k": 1}
    assert case == {"input": "q", "k": 1}
    assert case_id(case) == "row1"
    assert case_id("other") is None
    assert "k" in dir(case)


def test_case_unknown_attribute_lists_columns(tmp_path: Path) -> None:
    case = load_cases(write(tmp_path, "d.jsonl", jsonl([{"input": "q", "k": 1}])))[0]
    with pytest.raises(AttributeError, match=r"'nope'.*input, k"):
        _ = case.nope
    with pytest.raises(KeyError):
        _ = case["nope"]
    assert not hasattr(case, "nope")
    assert not hasattr(case, "__array__")


def test_case_is_immutable() -> None:
    case = Case({"input": "q"}, id="x")
    with pytest.raises(AttributeError):
        case.input = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        case.id = "y"  # type: ignore[misc]
    with pytest.raises(TypeError):
        case["input"] = "other"  # type: ignore[index]
    data = {"input": "q"}
    case = Case(data, id="x")
    data["input"] = "changed"
    assert case.input == "q"


def test_case_repr_is_short() -> None:
    case = Case({"input": "x" * 500, "other": "y" * 500}, id="row7")
    text = repr(case)
    assert text.startswith("Case(id='row7', input='xxx")
    assert len(text) < 80
    assert repr(Case({"a": 1}, id="r")) == "Case(id='r', columns=['a'])"


def test_case_pickle_copy_hash(tmp_path: Path) -> None:
    case = load_cases(write(tmp_path, "d.jsonl", jsonl([{"input": "q"}])))[0]
    for clone in (pickle.loads(pickle.dumps(case)), copy.copy(case), copy.deepcopy(case)):
        assert clone == case
        assert (clone.id, clone.row, clone.line, clone.source) == ("row1", 1, 1, case.source)
        assert hash(clone) == hash(case)


def test_id_column_shadows_attribute(tmp_path: Path) -> None:
    case = load_cases(write(tmp_path, "d.jsonl", jsonl([{"id": 17, "input": "q"}])), id_column="id")[0]
    assert case.id == "17"
    assert case["id"] == 17


# --------------------------------------------------------------------------- sampling


@pytest.fixture
def fifty(tmp_path: Path) -> Path:
    return write(tmp_path, "fifty.jsonl", jsonl([{"input": f"q{i}"} for i in range(50)]))


def test_sample_reproducible(fifty: Path) -> None:
    a = load_cases(fifty, sample=10, seed=1)
    b = load_cases(fifty, sample=10, seed=1)
    c = load_cases(fifty, sample=10, seed=2)
    assert len(a) == 10
    assert [x.id for x in a] == [x.id for x in b]
    assert [x.id for x in a] != [x.id for x in c]
    # file order, and ids are the original row numbers
    assert [x.row for x in a] == sorted(x.row for x in a)
    assert all(x.id == f"row{x.row}" and x.input == f"q{x.row - 1}" for x in a)


def test_sample_default_seed_is_fixed(fifty: Path) -> None:
    assert [x.id for x in load_cases(fifty, sample=5)] == [x.id for x in load_cases(fifty, sample=5)]


def test_sample_string_seed(fifty: Path) -> None:
    assert [x.id for x in load_cases(fifty, sample=5, seed="abc")] == [
        x.id for x in load_cases(fifty, sample=5, seed="abc")
    ]


def test_sample_larger_than_dataset(fifty: Path) -> None:
    assert len(load_cases(fifty, sample=500)) == 50
    assert len(load_cases(fifty, sample=50)) == 50


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "3"])
def test_sample_invalid(fifty: Path, bad: Any) -> None:
    message = load_error(fifty, sample=bad)
    assert "fifty.jsonl" in message and "sample must be a positive integer" in message


# --------------------------------------------------------------------------- ids


def test_id_column(tmp_path: Path) -> None:
    cases = load_cases(write(tmp_path, "d.csv", "qid,input\n a1 ,x\nb2,y\n"), id_column="qid")
    assert [c.id for c in cases] == ["a1", "b2"]


def test_id_column_duplicates(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "dup.csv", "qid,input\na,x\nb,y\na,z\n"), id_column="qid")
    assert "dup.csv" in message
    assert "duplicate id 'a'" in message
    assert "line 2 (row 1)" in message and "line 4 (row 3)" in message


def test_id_column_duplicates_after_str(tmp_path: Path) -> None:
    message = load_error(
        write(tmp_path, "dup.jsonl", jsonl([{"i": 1}, {"i": "1"}])), id_column="i"
    )
    assert "duplicate id '1'" in message and "line 1 (row 1)" in message and "line 2 (row 2)" in message


def test_id_column_absent(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "d.csv", "a,input\n1,x\n"), id_column="qid")
    assert "d.csv" in message and "'qid' not found" in message and "a, input" in message


def test_id_column_empty_or_missing(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "d.csv", "qid,input\na,x\n ,y\n"), id_column="qid")
    assert "d.csv, line 3 (row 2)" in message and "'qid' is empty" in message
    message = load_error(
        write(tmp_path, "d.jsonl", jsonl([{"qid": "a"}, {"input": "b"}])), id_column="qid"
    )
    assert "d.jsonl, line 2 (row 2)" in message and "'qid' is empty" in message


# --------------------------------------------------------------------------- required


def test_required_ok(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", jsonl([{"input": "a", "ctx": ["x"]}]))
    assert len(load_cases(path, required=["input", "ctx"])) == 1
    assert len(load_cases(path, required="input")) == 1  # type: ignore[arg-type]


def test_required_absent_from_file(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "d.csv", "input,answer\nx,y\n"), required=["context"])
    assert "d.csv" in message
    assert "'context' is absent" in message and "input, answer" in message


def test_required_missing_in_a_row(tmp_path: Path) -> None:
    rows = [{"input": "a", "ctx": "c"}, {"input": "b"}, {"input": "c"}]
    message = load_error(write(tmp_path, "d.jsonl", jsonl(rows)), required=["ctx"])
    assert "d.jsonl, line 2 (row 2)" in message and "'ctx' is missing" in message


@pytest.mark.parametrize("value", ["", "   ", None, [], {}])
def test_required_empty_value_jsonl(tmp_path: Path, value: Any) -> None:
    rows = [{"input": "a"}, {"input": "b"}, {"input": value}]
    message = load_error(write(tmp_path, "d.jsonl", jsonl(rows)), required=["input"])
    assert "d.jsonl, line 3 (row 3)" in message and "'input' is empty" in message


def test_required_empty_value_csv(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "e.csv", "input,out\na,b\n\nc,\n"), required=["out"])
    assert "e.csv, line 4 (row 2)" in message and "'out' is empty" in message


# --------------------------------------------------------------------------- file errors


def test_missing_file(tmp_path: Path) -> None:
    message = load_error("nope/missing.csv", base_dir=tmp_path)
    assert "nope/missing.csv" in message and "not found" in message
    assert str(tmp_path) in message


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "dir.csv").mkdir()
    message = load_error(tmp_path / "dir.csv")
    assert "dir.csv" in message and "directory" in message


def test_unknown_extension(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "d.txt", "x"))
    assert "d.txt" in message and "'.txt'" in message and ".csv, .json, .jsonl" in message
    message = load_error(write(tmp_path, "noext", "x"))
    assert "no extension" in message


@pytest.mark.parametrize("name", ["e.csv", "e.json", "e.jsonl"])
@pytest.mark.parametrize("text", ["", "  \n\n"])
def test_empty_file(tmp_path: Path, name: str, text: str) -> None:
    message = load_error(write(tmp_path, name, text))
    assert name in message and "empty" in message


@pytest.mark.parametrize(("name", "text"), [("h.csv", "a,b\n"), ("h.json", "[]"), ("h.json", '{"cases": []}')])
def test_no_rows(tmp_path: Path, name: str, text: str) -> None:
    message = load_error(write(tmp_path, name, text))
    assert name in message
    assert ("no data rows" if name.endswith(".csv") else "no rows") in message


@pytest.mark.parametrize("name", ["u.csv", "u.json", "u.jsonl"])
def test_not_utf8(tmp_path: Path, name: str) -> None:
    body = {"u.csv": b"input\nok\ncaf\xe9\n", "u.json": b'[\n{"input": "ok"},\n{"input": "caf\xe9"}]',
            "u.jsonl": b'{"input": "ok"}\n\n{"input": "caf\xe9"}\n'}[name]
    message = load_error(write(tmp_path, name, body))
    offset = body.index(b"\xe9")
    assert f"{name}, line 3" in message
    assert f"offset {offset}" in message and "0xe9" in message
    assert "UTF-8" in message


def test_not_utf8_offset_counts_bom(tmp_path: Path) -> None:
    body = b"\xef\xbb\xbfinput\n\xff\n"
    message = load_error(write(tmp_path, "b.csv", body))
    assert "b.csv, line 2" in message and "offset 9" in message


# --------------------------------------------------------------------------- CSV errors


def test_csv_ragged_row(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "bad.csv", "input,out\na,b\nc,d\ne,f,g\n"))
    assert "bad.csv, line 4" in message
    assert "expected 2 fields" in message and "found 3" in message
    assert "ParserError" not in message and "C error" not in message


def test_csv_ragged_row_after_multiline_value(tmp_path: Path) -> None:
    # pandas counts records here; the message gives the physical line
    message = load_error(write(tmp_path, "bad.csv", 'input,out\n"a\nb\nc",d\ne,f,g\n'))
    assert "bad.csv, line 5" in message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('input,out\na,b\n\n"c,d\ne,f\n', 4),
        ('input,out\n"a\nb\nc",d\n"e,f\n', 5),
        ('input,out\n\n\n1,2\n"z,1\n', 5),
    ],
)
def test_csv_unclosed_quote(tmp_path: Path, text: str, line: int) -> None:
    message = load_error(write(tmp_path, "bad.csv", text))
    assert f"bad.csv, line {line}:" in message and "never closed" in message


def test_csv_duplicate_header(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "bad.csv", "a,b,a\n1,2,3\n"))
    assert "bad.csv, line 1" in message and "duplicate column name 'a'" in message


# --------------------------------------------------------------------------- JSON errors


def test_json_malformed(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "bad.json", '[\n  {"input": "a"},\n  {"input": "b",}\n]'))
    assert "bad.json, line 3, column" in message and "invalid JSON" in message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('"just a string"', "got a string"),
        ('\n\n{"input": "a", "tags": ["x"]}', "line 3.*got an object with keys input, tags.*wrap"),
        ('{"a": [], "b": []}', "got an object with keys a, b"),
        ('{"a": 1}', "got an object with keys a"),
        ("42", "got a number"),
    ],
)
def test_json_top_level_not_a_list(tmp_path: Path, text: str, problem: str) -> None:
    message = load_error(write(tmp_path, "top.json", text))
    assert "top.json" in message and "must be a list of objects" in message
    assert re.search(problem, message), message


def test_json_element_not_an_object(tmp_path: Path) -> None:
    text = '[\n  {"input": "a"},\n  {"input": "b"},\n  "c"\n]'
    message = load_error(write(tmp_path, "el.json", text))
    assert "el.json, line 4" in message and "list element 2" in message and "got a string" in message


def test_json_element_not_an_object_in_wrapper(tmp_path: Path) -> None:
    text = '{"cases": [\n {"input": "a"},\n [1, 2]]}'
    message = load_error(write(tmp_path, "el.json", text))
    assert "el.json, line 3" in message and "list element 1" in message and "got a list" in message


def test_jsonl_malformed_line(tmp_path: Path) -> None:
    text = '{"input": "a"}\n\n{"input": "b"\n{"input": "c"}\n'
    message = load_error(write(tmp_path, "bad.jsonl", text))
    assert "bad.jsonl, line 3, column" in message and "invalid JSON" in message


def test_jsonl_pretty_printed_object(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "bad.jsonl", '{\n "input": "a"\n}\n'))
    assert "bad.jsonl, line 1" in message and "one complete object per line" in message


def test_jsonl_line_not_an_object(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, "bad.jsonl", '{"input": "a"}\n{"input": "b"}\n["c"]\n'))
    assert "bad.jsonl, line 3" in message and "expected a JSON object, got a list" in message


# --------------------------------------------------------------------------- misc


def test_dataset_error_is_llmjudge_error() -> None:
    assert issubclass(DatasetError, LLMJudgeError)


def test_import_does_not_load_pandas() -> None:
    code = "import sys, pytest_llmjudge.datasets; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- issue 15 item 10


@pytest.mark.parametrize(
    ("body", "line", "row", "found"),
    [
        ("input,expected_output\nq1,a1\nq2\nq3,a3\n", 3, 2, 1),  # a missing trailing field
        ("input,expected_output\nq1,a1\nq2,a2\nq3,a3,extra\n", 4, 3, 3),  # an extra field
    ],
)
def test_item10_csv_row_with_wrong_field_count_names_file_row_and_counts(
    tmp_path: Path, body: str, line: int, row: int, found: int
) -> None:
    message = load_error(write(tmp_path, "qa.csv", body))
    assert f"qa.csv, line {line} (row {row}): expected 2 fields like the header, found {found}" in message
