"""Options shared by the commands that call a model: judge, retries, concurrency, cache."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..argtypes import non_negative_int, number_in as bounded_float, positive_int
from ..cache import VerdictCache
from ..errors import ConfigError
from ..judges import Judge, default_judge_spec, make_judge
from . import CLIError

CACHE_MODES = ("rw", "ro", "refresh", "replay", "off")
DEFAULT_CONCURRENCY = 8
DEFAULT_CACHE_DIR = ".llmjudge_cache"


def add_output_options(parser: argparse.ArgumentParser, *, resumable: bool = True) -> None:
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
    group.add_argument("--timeout", type=bounded_float(0.001), default=60.0, metavar="S",
                       help="per-request timeout in seconds (default: 60)")
    group.add_argument("--max-retries", type=non_negative_int, default=4, metavar="N",
                       help="retries on 429/5xx/timeouts, with backoff (default: 4)")
    group.add_argument("--concurrency", type=positive_int, default=DEFAULT_CONCURRENCY, metavar="N",
                       help=f"requests in flight at once (default: {DEFAULT_CONCURRENCY})")
    group.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR, metavar="DIR",
                       help=f"verdict cache directory (default: {DEFAULT_CACHE_DIR})")
    group.add_argument("--cache-mode", choices=CACHE_MODES, default="rw",
                       help="rw: read and write (default); ro: read only; refresh: call and "
                            "overwrite; replay: cached replies only, a miss fails the row; off")


def build_judge(args: argparse.Namespace) -> Judge:
    """The judge named by ``--judge``/``--model``; ConfigError/ImportError become CLIError."""
    spec = args.judge or default_judge_spec(args.base_url)
    options: dict[str, Any] = {
        "base_url": args.base_url,
        "timeout": args.timeout,
        "max_retries": args.max_retries,
        "batch_size": min(args.concurrency, 32),
        "require_key": args.cache_mode != "replay",
    }
    try:
        return make_judge(spec, **options)
    except ConfigError as exc:
        raise CLIError(str(exc)) from None
    except ImportError as exc:
        backend = spec.partition(":")[0]
        hint = " (install it with: pip install 'pytest-llmjudge[local]')" if backend == "local" else ""
        raise CLIError(f"judge {spec}: the {backend} backend cannot be loaded: {exc}{hint}") from None


def build_cache(args: argparse.Namespace) -> VerdictCache | None:
    if args.cache_mode == "off":
        return None
    cache = VerdictCache(Path(os.path.expanduser(args.cache_dir)), mode=args.cache_mode)
    cache.check()  # a corrupt cache is set aside, with a one-line warning
    for line in cache.problems:
        print(line, file=sys.stderr)
    return cache


def close_quietly(*things: Any) -> None:
    for thing in things:
        close = getattr(thing, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # noqa: BLE001 - best effort at exit
                pass
