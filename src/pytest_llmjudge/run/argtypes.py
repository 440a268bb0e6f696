"""argparse ``type=`` checkers shared by the pytest options and the ``llmjudge`` commands."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _number(text: str, kind: type[float] | type[int]) -> float | None:
    try:
        value = kind(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def positive_int(text: str) -> int:
    value = _number(text, int)
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(value)


def non_negative_int(text: str) -> int:
    value = _number(text, int)
    if value is None or value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return int(value)


def positive_float(text: str) -> float:
    value = _number(text, float)
    if value is None or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return float(value)


def number_in(low: float, high: float | None = None) -> Callable[[str], float]:
    """A checker for a number >= ``low`` (and <= ``high``)."""

    def parse(text: str) -> float:
        value = _number(text, float)
        if value is None or value < low or (high is not None and value > high):
            expected = f"between {low:g} and {high:g}" if high is not None else f">= {low:g}"
            raise argparse.ArgumentTypeError(f"expected a number {expected}, got {text!r}")
        return float(value)

    return parse


unit_float = number_in(0.0, 1.0)
non_negative_float = number_in(0.0)


def on_off(text: str) -> str:
    """``on`` or ``off``."""
    value = text.strip().lower()
    if value not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"expected on or off, got {text!r}")
    return value
