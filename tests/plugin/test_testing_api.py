"""The README's "Testing your judge wiring" example runs as written (pytest_llmjudge.testing)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Testing your judge wiring"):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the section has a python example"
    return match.group(1)


def test_readme_example_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_wiring=_example())
    result = pytester.runpytest_subprocess("-p", "pytester", "-p", "no:randomly", timeout=240)
    result.assert_outcomes(passed=2)
