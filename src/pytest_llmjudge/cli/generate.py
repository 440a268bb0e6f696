"""``llmjudge generate``: its options and help; the work is :mod:`pytest_llmjudge.workflows.generate`."""

from __future__ import annotations

import argparse
from typing import Any

from ..run.argtypes import non_negative_int, number_in, positive_int
from ..workflows.generate import run
from .options import add_model_options, add_output_options, command_parser

HELP = "generate the application's answers to every prompt with a model, recording its sampling"
DESCRIPTION = """\
Answer every prompt of IN with a model -- any judge backend spec works as a generator
(openai:MODEL, hf:MODEL, local:MODEL) -- and write the dataset with the answer beside it,
so that a suite can then judge a fixed set of answers.

Prompts: a row's chat 'messages' (the conversation up to its last user turn), else its
'prompt'/'input' column, after its 'system_prompt' column if any. --system-prompt replaces
every row's system prompt.

Each row records what produced it: the answer (--output-column, default actual_output),
model, temperature, top_p, max_tokens, seed, system_prompt, generation_mode, finish_reason
(length = cut at --max-tokens) and latency_s. generation_mode is 'text' for a plain chat
completion (openai, hf, local) and 'json' for a backend that can only give structured
replies (the answer is then the "answer" field of a JSON object).

Answers are cached by model, messages and sampling (--cache-dir); use --cache-mode refresh
for fresh samples. Rows are written in input order as they finish; a failed row gets its
reason in the 'error' column (exit status 1 at the end) and the run goes on.
"""
EPILOG = """\
examples:
  llmjudge generate data/qa.jsonl -o answers.jsonl --model openai:gpt-4o-mini --temperature 0.2
  llmjudge generate chats.jsonl -o answers.csv --model hf:meta-llama/Llama-3.1-8B-Instruct \\
      --base-url http://tgi:8080 --max-tokens 300
  llmjudge generate qa.csv -o answers.csv --model local:smollm2-135m \\
      --system-prompt "You are a concise support agent." --resume
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = command_parser(
        subparsers, "generate", HELP, DESCRIPTION, EPILOG,
        input_help="dataset of prompts: .csv, .json or .jsonl",
        output_help="the dataset with answers (.csv, .json or .jsonl)",
    )
    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("--temperature", type=number_in(0.0, 2.0), default=0.0, metavar="T",
                          help="sampling temperature (default: 0)")
    sampling.add_argument("--top-p", type=number_in(0.0, 1.0), default=None, metavar="P",
                          help="nucleus sampling (default: the backend's)")
    sampling.add_argument("--max-tokens", type=positive_int, default=512, metavar="N",
                          help="token limit of each answer (default: 512)")
    sampling.add_argument("--seed", type=non_negative_int, default=None, metavar="S",
                          help="sampling seed, where the backend honours one")
    sampling.add_argument("--system-prompt", metavar="TEXT",
                          help="system prompt for every row (replaces the rows' own)")
    parser.add_argument("--output-column", default="actual_output", metavar="COLUMN",
                        help="column for the answers (default: actual_output)")
    parser.add_argument("--id-column", metavar="COLUMN",
                        help="column that identifies rows (default: 'id' when present)")
    add_model_options(parser, flag="--model", required=True)
    add_output_options(parser)
    return parser


__all__ = ["DESCRIPTION", "EPILOG", "HELP", "add_parser", "run"]
