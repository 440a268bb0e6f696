"""The ``llmjudge`` command line (also ``python -m pytest_llmjudge``).

One module per command in this package (``sample``, ``convert``, ``augment``, ``generate``,
``calibrate``, ``compare``): its help, its options (shared pieces in :mod:`.options`) and its
``run(args) -> int`` (the dataset workflows themselves live in :mod:`pytest_llmjudge.workflows`),
plus the commands registered with :func:`add_subcommand`.

Registering a command::

    def add_parser(subparsers):            # subparsers: argparse's _SubParsersAction
        parser = subparsers.add_parser("mine", help="...", epilog="examples: ...")
        parser.add_argument("input")
        return parser

    def run(args) -> int:                 # the exit status
        ...

    add_subcommand("mine", add_parser, run)

A parser added by ``add_parser(subparsers)`` may instead call ``parser.set_defaults(func=run)``
itself (``run(args) -> int``).

Errors: bad input or usage prints one line, ``llmjudge: error: FILE, line N (row K): what is
wrong``, and exits with status 2 -- never a traceback. Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from ..errors import JudgeError, LLMJudgeError

PROG = "llmjudge"

AddParser = Callable[[Any], "argparse.ArgumentParser | None"]
Run = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Subcommand:
    name: str
    add_parser: AddParser
    run: Run | None = None


#: registered commands, in the order ``llmjudge --help`` lists them
SUBCOMMANDS: dict[str, Subcommand] = {}


def add_subcommand(name: str, add_parser: AddParser, run: Run | None = None) -> None:
    """Register a command: ``add_parser(subparsers)`` builds it, ``run(args)`` runs it.

    ``run`` may be None when ``add_parser`` sets ``func`` on its parser (``set_defaults``).
    Registering a name again replaces the earlier command.
    """
    SUBCOMMANDS[name] = Subcommand(name, add_parser, run)


def _register_builtin() -> None:
    from . import augment, calibrate, compare, convert, generate, sample

    for module in (sample, convert, augment, generate, calibrate, compare):
        name = module.__name__.rpartition(".")[2]
        if name not in SUBCOMMANDS:
            add_subcommand(name, module.add_parser, module.run)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``llmjudge sample: error: ... (see --help)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    _register_builtin()
    parser = _Parser(
        prog=PROG,
        description="Dataset workflows for LLM regression tests judged by pytest-llmjudge: "
                    "sample, convert, augment and answer datasets, and calibrate a judge "
                    "against human labels.",
        epilog="examples:\n"
               "  llmjudge sample data/qa.jsonl -n 50 --seed 1 -o qa_50.jsonl\n"
               "  llmjudge generate qa_50.jsonl -o answers.jsonl --model openai:gpt-4o-mini\n"
               "  llmjudge calibrate labelled.csv -o report.md --label-column human\n\n"
               "Files are CSV, JSON or JSONL by extension. augment, generate and calibrate (--rows)\n"
               "call a model concurrently, write each row as it finishes and --resume an interrupted\n"
               "run; sample and convert are instant.\n\n"
               "exit status: 0 ok; 1 some rows failed (see their 'error' column) or a calibrate gate\n"
               "was missed; 2 bad input or usage; 130 interrupted.\n\n"
               "'llmjudge COMMAND --help' shows a command's options and examples.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for command in SUBCOMMANDS.values():
        sub = command.add_parser(subparsers)
        if command.run is not None:
            target = sub if isinstance(sub, argparse.ArgumentParser) else subparsers.choices.get(command.name)
            if target is not None:
                target.set_defaults(_run=command.run)
    return parser


def _fail(message: str) -> int:
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 failed rows/gates, 2 bad input)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(args_list)
        except SystemExit as exc:  # --help, --version, usage errors
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        run = getattr(args, "_run", None) or getattr(args, "func", None)
        if run is None:
            parser.print_help(sys.stderr)
            return 2
        status = run(args)
        return int(status or 0)
    except JudgeError as exc:
        print(f"{PROG}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    except LLMJudgeError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `llmjudge ... | head`
        return 1
    except OSError as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        return _fail(f"{where}{exc.strerror or exc}")
