"""The argparse pieces the commands share: a command's parser with IN and -o OUT, the model
and cache options of the commands that call a model, and the output options."""

from __future__ import annotations

import argparse
from typing import Any

from ..judges import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_S
from ..judging.cache import CACHE_MODES, DEFAULT_CACHE_DIR
from ..run.argtypes import non_negative_int, number_in, positive_int

#: model requests in flight at once, unless --concurrency says otherwise
DEFAULT_CONCURRENCY = 8


def command_parser(
    subparsers: Any, name: str, summary: str, description: str, epilog: str, *,
    input_help: str, output_help: str, input_metavar: str = "IN", output_metavar: str = "OUT",
) -> argparse.ArgumentParser:
    """Add command ``name`` (``summary`` in ``llmjudge --help``) with its IN argument and a required -o."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name, help=summary, description=description, epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", metavar=input_metavar, help=input_help)
    parser.add_argument("-o", "--output", metavar=output_metavar, required=True, help=output_help)
    return parser


def add_output_options(parser: argparse.ArgumentParser, *, resumable: bool = True) -> None:
    """--resume and --force (when ``resumable``), -q/--quiet."""
    group = parser.add_argument_group("output")
    if resumable:
        group.add_argument("--resume", action="store_true",
                           help="continue an interrupted run: rows already in OUT are not redone "
                                "(rows that failed are)")
        group.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    group.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def add_model_options(parser: argparse.ArgumentParser, *, flag: str = "--judge",
                      required: bool = False) -> None:
    """--judge/--model SPEC, --base-url, --timeout, --max-retries, --concurrency, cache options."""
    group = parser.add_argument_group("model and calls")
    if flag == "--judge":
        group.add_argument(
            "--judge", metavar="SPEC", required=required,
            help="judge backend: openai:MODEL, hf:MODEL or local:MODEL (default: openai:gpt-4o-mini "
                 "with OPENAI_API_KEY or a base URL, else local:smollm2-135m)",
        )
    else:
        group.add_argument(
            flag, dest="judge", metavar="SPEC", required=required,
            help="the model that answers: openai:MODEL, hf:MODEL or local:MODEL (any judge backend)",
        )
    group.add_argument("--base-url", metavar="URL",
                       help="OpenAI-compatible or TGI endpoint (default: OPENAI_BASE_URL); keys "
                            "come from OPENAI_API_KEY / HF_TOKEN, never from a flag")
    group.add_argument("--timeout", type=number_in(0.001), default=DEFAULT_TIMEOUT_S, metavar="S",
                       help=f"per-request timeout in seconds (default: {DEFAULT_TIMEOUT_S:g})")
    group.add_argument("--max-retries", type=non_negative_int, default=DEFAULT_MAX_RETRIES, metavar="N",
                       help=f"retries on 429/5xx/timeouts, with backoff (default: {DEFAULT_MAX_RETRIES})")
    group.add_argument("--concurrency", type=positive_int, default=DEFAULT_CONCURRENCY, metavar="N",
                       help=f"requests in flight at once (default: {DEFAULT_CONCURRENCY})")
    group.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR, metavar="DIR",
                       help=f"verdict cache directory (default: {DEFAULT_CACHE_DIR})")
    group.add_argument("--cache-mode", choices=CACHE_MODES, default="rw",
                       help="rw: read and write (default); ro: read only; refresh: call and "
                            "overwrite; replay: cached replies only, a miss fails the row; off")
