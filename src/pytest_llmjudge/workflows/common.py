"""What the commands that call a model share at run time: the judge and the cache from their
options (declared in :mod:`pytest_llmjudge.cli.options`), and closing them."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import CLIError, ConfigError
from ..judges import Judge, default_judge_spec, judge_options, make_judge
from ..judging.cache import VerdictCache


def build_judge(args: argparse.Namespace) -> Judge:
    """The judge named by ``--judge``/``--model``; ConfigError/ImportError become CLIError."""
    spec = args.judge or default_judge_spec(args.base_url)
    options = judge_options(base_url=args.base_url, timeout=args.timeout, max_retries=args.max_retries,
                            batch_size=min(args.concurrency, 32), cache_mode=args.cache_mode)
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
