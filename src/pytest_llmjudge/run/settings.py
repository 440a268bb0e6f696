"""Options: declared once (CLI flag + same-named ini key), resolved once into Settings."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ..judges.retry import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT_S
from ..judging.cache import CACHE_MODES, DEFAULT_CACHE_DIR
from ..judging.repeats import RepeatPlan
from ..report.reporters import REPORT_OPTIONS
from ..secrets import safe_url
from .argtypes import non_negative_float, non_negative_int, on_off, positive_float, positive_int, unit_float


def parse_pass_rate(value: str) -> tuple[str, float]:
    """``METRIC=RATE`` (``*`` for every metric), RATE in [0, 1] or a percentage."""
    metric, sep, rate = value.partition("=")
    try:
        number = float(rate.rstrip("%")) / (100.0 if rate.endswith("%") else 1.0)
    except ValueError:
        number = -1.0
    if not sep or not metric or not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(
            f"invalid --llm-min-pass-rate {value!r}: use METRIC=RATE, e.g. correctness=0.9 or '*=80%'"
        )
    return metric.strip(), number


def parse_price(line: str) -> tuple[str, tuple[float, float]]:
    """``MODEL = INPUT_PER_1M OUTPUT_PER_1M`` (prices per million prompt/completion tokens)."""
    model, sep, rest = line.partition("=")
    numbers = rest.split()
    try:
        prices = tuple(float(n) for n in numbers)
    except ValueError:
        prices = ()
    if not sep or not model.strip() or len(prices) != 2 or any(not 0 <= p < float("inf") for p in prices):
        raise argparse.ArgumentTypeError(
            f"invalid llm_prices line {line!r}: use MODEL = INPUT_PER_1M OUTPUT_PER_1M, "
            "e.g. gpt-4o-mini = 0.15 0.60"
        )
    return model.strip(), (prices[0], prices[1])


def repeat_count(value: str) -> str:
    """``--llm-repeat``: a positive integer or ``auto``."""
    if value == "auto":
        return value
    positive_int(value)
    return value


def cache_mode(value: str) -> str:
    if value not in CACHE_MODES:
        raise argparse.ArgumentTypeError(f"invalid cache mode {value!r}: use one of {', '.join(CACHE_MODES)}")
    return value


# name, type, default, help  (help: capitalised phrase, no final period)
OPTIONS: list[tuple[str, Any, Any, str]] = [
    ("--llm-judge", str, None, "Default judge, e.g. openai:gpt-4o-mini, hf:MODEL, local:smollm2-135m"),
    ("--llm-base-url", str, None, "Base URL of an OpenAI-compatible server or TGI endpoint (else OPENAI_BASE_URL)"),
    ("--llm-threshold", unit_float, 0.5, "Default pass threshold on the 0-1 score (default 0.5)"),
    ("--llm-results", str, None, "Write one row per verdict to this .jsonl or .csv file"),
    ("--llm-results-texts", on_off, "on",
     "Results rows carry the judged texts and dataset columns (on, default) or only the case id (off)"),
    ("--llm-max-retries", non_negative_int, DEFAULT_MAX_RETRIES,
     f"Retries per judge request on 429/5xx/timeouts (default {DEFAULT_MAX_RETRIES})"),
    ("--llm-timeout", positive_float, DEFAULT_TIMEOUT_S,
     f"Per-request judge timeout in seconds (default {DEFAULT_TIMEOUT_S:g})"),
    ("--llm-concurrency", positive_int, 16,
     "Cases of an llm_dataset (or @pytest.mark.llm_concurrent test) run at once; 1 runs one at a time (default 16)"),
    ("--llm-batch-size", positive_int, 8, "Batch size of a local judge (default 8)"),
    ("--llm-cache-mode", cache_mode, "rw", "Verdict cache: rw, ro, refresh, off or replay (default rw)"),
    ("--llm-cache-dir", str, None, f"Verdict cache directory (default {DEFAULT_CACHE_DIR} at the rootdir)"),
    ("--llm-repeat", repeat_count, "1", "Sample each verdict K times (mean score), or 'auto' for adaptive repeats"),
    ("--llm-repeat-max", positive_int, 5, "Most samples per verdict with --llm-repeat auto (default 5)"),
    ("--llm-repeat-temperature", non_negative_float, 0.7, "Judge temperature of repeated samples (default 0.7)"),
    ("--llm-noise-floor", non_negative_int, 0,
     "Re-judge N identical answers per metric 3 times to show the judge's own spread"),
    ("--llm-baseline", str, None, "Compare this run against a saved baseline (paired test per metric)"),
    ("--llm-regression-tolerance", non_negative_float, 0.0,
     "A metric regressed when its whole difference interval is below -TOLERANCE (default 0)"),
    ("--llm-preflight", str, None, "Labelled dataset the judge must grade before any test runs"),
    ("--llm-preflight-min", unit_float, 0.8, "Minimum judge agreement on the preflight set (default 0.8)"),
    # the reports' own file options (report/reporters.py)
    *((option, str, None, help_text) for option, help_text in REPORT_OPTIONS),
]
FLAGS: list[tuple[str, str]] = [
    ("--llm-soft", "A below-threshold case is reported but does not fail its test; pass-rate gates decide"),
]


def ini_name(option: str) -> str:
    return option.lstrip("-").replace("-", "_")


def addoptions(parser: pytest.Parser) -> None:
    """Declare every option as a CLI flag plus an ini key of the same name."""
    group = parser.getgroup("llmjudge", "LLM judge (pytest-llmjudge)")
    for option, kind, _default, help_text in OPTIONS:
        name = ini_name(option)
        parser.addini(name, help=help_text, default=None)
        group.addoption(option, dest=name, type=kind, default=None, metavar="VALUE", help=help_text)
    for option, help_text in FLAGS:
        name = ini_name(option)
        parser.addini(name, help=help_text, type="bool", default=False)
        group.addoption(option, dest=name, action="store_true", default=None, help=help_text)
    parser.addini("llm_min_pass_rate", help="Pass-rate gates, METRIC=RATE per line", type="linelist", default=[])
    group.addoption(
        "--llm-min-pass-rate", dest="llm_min_pass_rate", action="append", type=parse_pass_rate,
        default=None, metavar="METRIC=RATE",
        help="Fail the session when METRIC's pass rate is below RATE ('*' for every metric; repeatable)",
    )
    parser.addini("llm_group_by", help="Dataset columns to break results down by, one per line",
                  type="linelist", default=[])
    group.addoption(
        "--llm-group-by", dest="llm_group_by", action="append", default=None, metavar="COLUMN",
        help="Break pass rate and mean score down by this dataset column (repeatable)",
    )
    parser.addini("llm_prices", help="Judge prices, 'MODEL = INPUT_PER_1M OUTPUT_PER_1M' per line (USD per "
                  "million prompt/completion tokens)", type="linelist", default=[])
    group.addoption("--llm-cache-clear", action="store_true", default=False, help="Empty the verdict cache first")
    group.addoption("--llm-cache-stats", action="store_true", default=False,
                    help="Print verdict cache entries and size")


#: ini name -> (parser, default) of each valued option
_DEFAULTS: dict[str, tuple[Any, Any]] = {ini_name(option): (kind, default) for option, kind, default, _ in OPTIONS}


def _value(config: pytest.Config, name: str) -> Any:
    """CLI over ini over default; ini strings are checked with the option's own parser."""
    cli = config.getoption(name, default=None)
    if cli is not None:
        return cli
    kind, default = _DEFAULTS[name]
    raw = config.getini(name)
    if raw in (None, "", []):
        return default
    try:
        return kind(raw) if kind is not str else raw
    except argparse.ArgumentTypeError as exc:
        raise pytest.UsageError(f"ini option {name}: {exc}") from None


@dataclass(frozen=True)
class Settings:
    """Every llmjudge option, resolved."""

    judge: str | None = None
    base_url: str | None = None
    threshold: float = 0.5
    results: Path | None = None
    max_retries: int = DEFAULT_MAX_RETRIES
    timeout: float = DEFAULT_TIMEOUT_S
    concurrency: int = 16
    batch_size: int = 8
    cache_mode: str = "rw"
    cache_dir: Path | None = None
    soft: bool = False
    min_pass_rates: dict[str, float] = field(default_factory=dict)
    cache_clear: bool = False
    cache_stats: bool = False
    repeat: str = "1"
    repeat_max: int = 5
    repeat_temperature: float = 0.7
    noise_floor: int = 0
    baseline: Path | None = None
    regression_tolerance: float = 0.0
    preflight: Path | None = None
    preflight_min: float = 0.8
    results_texts: bool = True
    #: the file of each report option given (``--llm-html`` -> path), see :data:`REPORT_OPTIONS`
    report_paths: dict[str, Path] = field(default_factory=dict)
    group_by: tuple[str, ...] = ()
    #: judge model (``gpt-4o-mini`` or ``openai:gpt-4o-mini``) -> (input, output) USD per 1M tokens
    prices: dict[str, tuple[float, float]] = field(default_factory=dict)

    def report_path(self, option: str) -> Path | None:
        """The file a report writes, e.g. ``report_path("--llm-html")`` (None when not asked for)."""
        return self.report_paths.get(option)

    @property
    def html(self) -> Path | None:
        return self.report_path("--llm-html")

    @property
    def markdown(self) -> Path | None:
        return self.report_path("--llm-markdown")

    @property
    def save_baseline(self) -> Path | None:
        return self.report_path("--llm-save-baseline")

    def repeat_plan(self, min_passes: int | None = None, samples: int | None = None) -> RepeatPlan:
        """The repeat plan of one assertion (its own ``min_passes``/``samples`` win)."""
        adaptive = self.repeat == "auto" and samples is None
        count = samples if samples is not None else (1 if adaptive else int(self.repeat))
        return RepeatPlan(
            samples=count, adaptive=adaptive, max_samples=self.repeat_max,
            temperature=self.repeat_temperature, min_passes=min_passes,
        )

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        rootdir = Path(config.rootpath)
        results = _value(config, "llm_results")
        gates = config.getoption("llm_min_pass_rate", default=None)
        if gates is None:
            try:
                gates = [parse_pass_rate(line) for line in config.getini("llm_min_pass_rate")]
            except argparse.ArgumentTypeError as exc:
                raise pytest.UsageError(f"ini option llm_min_pass_rate: {exc}") from None
        soft = config.getoption("llm_soft", default=None)
        if results and Path(results).suffix not in (".jsonl", ".csv"):
            raise pytest.UsageError(f"--llm-results {results}: use a .jsonl or .csv file name")
        return cls(
            judge=_value(config, "llm_judge"),
            base_url=_value(config, "llm_base_url"),
            threshold=_value(config, "llm_threshold"),
            results=_path(config, "llm_results"),
            max_retries=_value(config, "llm_max_retries"),
            timeout=_value(config, "llm_timeout"),
            concurrency=_value(config, "llm_concurrency"),
            batch_size=_value(config, "llm_batch_size"),
            cache_mode=_value(config, "llm_cache_mode"),
            cache_dir=_path(config, "llm_cache_dir") or rootdir / DEFAULT_CACHE_DIR,
            soft=bool(soft if soft is not None else config.getini("llm_soft")),
            min_pass_rates=dict(gates or []),
            cache_clear=bool(config.getoption("llm_cache_clear", default=False)),
            cache_stats=bool(config.getoption("llm_cache_stats", default=False)),
            repeat=_value(config, "llm_repeat"),
            repeat_max=_value(config, "llm_repeat_max"),
            repeat_temperature=_value(config, "llm_repeat_temperature"),
            noise_floor=_value(config, "llm_noise_floor"),
            baseline=_path(config, "llm_baseline"),
            regression_tolerance=_value(config, "llm_regression_tolerance"),
            preflight=_path(config, "llm_preflight"),
            preflight_min=_value(config, "llm_preflight_min"),
            results_texts=_value(config, "llm_results_texts") == "on",
            report_paths={option: path for option, _ in REPORT_OPTIONS
                          if (path := _path(config, ini_name(option))) is not None},
            group_by=tuple(config.getoption("llm_group_by", default=None) or config.getini("llm_group_by")),
            prices=_prices(config),
        )

    def public(self) -> dict[str, Any]:
        """The settings as plain values for results files (no credentials live here)."""
        return {
            "judge": self.judge, "base_url": safe_url(self.base_url), "threshold": self.threshold,
            "max_retries": self.max_retries, "timeout": self.timeout, "concurrency": self.concurrency,
            "cache_mode": self.cache_mode, "soft": self.soft, "min_pass_rates": self.min_pass_rates,
            "repeat": self.repeat, "repeat_max": self.repeat_max,
            "repeat_temperature": self.repeat_temperature,
        }


def _prices(config: pytest.Config) -> dict[str, tuple[float, float]]:
    try:
        return dict(parse_price(line) for line in config.getini("llm_prices") if line.strip())
    except argparse.ArgumentTypeError as exc:
        raise pytest.UsageError(f"ini option llm_prices: {exc}") from None


def _path(config: pytest.Config, name: str) -> Path | None:
    """A path option: relative to the current directory on the command line (like --junitxml),
    relative to the rootdir in an ini file (like cache_dir)."""
    cli = config.getoption(name, default=None)
    if cli:
        return Path(config.invocation_params.dir) / cli
    value = _value(config, name)
    return Path(config.rootpath) / value if value else None


def check_output_paths(settings: Settings) -> None:
    """Before any test runs: every output file can be written, else a usage error naming the
    option and the path. Nothing is created: the probe file lives in an existing directory.
    (pytest's own --junitxml is checked by pytest.)"""
    for option, path in [("--llm-results", settings.results), *settings.report_paths.items()]:
        if path is not None:
            problem = output_path_problem(path)
            if problem is not None:
                raise pytest.UsageError(f"{option}={path}: {problem}")


def output_path_problem(path: Path) -> str | None:
    """Why ``path`` cannot be written (created with its missing parent directories), or None."""
    import tempfile

    if path.is_dir():
        return "is a directory; give a file name"
    if path.exists():
        try:
            with path.open("a", encoding="utf-8"):
                return None
        except OSError as exc:
            return f"cannot write this file ({exc.strerror or exc})"
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is not a directory"
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            return None
    except OSError as exc:
        return f"cannot write in {ancestor} ({exc.strerror or exc})"


#: options whose value is a path (pytest may mistake it for a test path while finding the rootdir)
PATH_OPTIONS = ("--llm-baseline", "--llm-results", "--llm-cache-dir", "--llm-preflight",
                *(option for option, _ in REPORT_OPTIONS))


def separate_path_argument_warnings(config: pytest.Config) -> list[str]:
    """One warning line per path option written ``--llm-x PATH`` (not ``--llm-x=PATH``) whose
    PATH exists outside the invocation directory: pytest reads unknown options' values as test
    paths while it looks for the rootdir, before plugins load, so the rootdir (node ids, ini
    file, and with them baseline pairing) can move."""
    args = [str(arg) for arg in config.invocation_params.args]
    here = Path(config.invocation_params.dir).resolve()
    lines = []
    for option, value in zip(args, args[1:]):
        if option not in PATH_OPTIONS:
            continue
        path = (here / value).resolve()
        if path.exists() and not path.is_relative_to(here):
            lines.append(
                f"llmjudge: warning: `{option} {value}` (a separate argument, outside {here}) can move pytest's "
                f"rootdir and with it the test ids and the ini file; write `{option}={value}`"
            )
    return lines
